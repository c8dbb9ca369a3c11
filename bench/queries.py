"""Analyst queries: the warehouse's views over the Parquet lake vs native DuckDB tables.

Three questions analysts ask, each run on the warehouse's views (``macro.fred_latest``,
``macro.fred_as_of``, ``brokerage.positions``, all over the lake's Parquet files) and on a
native DuckDB table holding the same rows (copied from the views, so "same rows" holds by
construction; the run also compares the answers):

1. ``latest``: the latest value of each of 1,000 series (``macro.fred_latest``).
2. ``as_of``: ``macro.fred_as_of`` on a date, summarised, across every observation.
3. ``portfolio``: one user's portfolio value per day over five years
   (``brokerage.positions``).

Rows: ``--series`` series x ``--rows`` observation rows in total (each date with two
vintages: a first release and a revision a month later), written with ``Lake.upsert``
as the pipeline writes them; 50 users x 20 symbols x five years of business days of
positions. Each query runs once to warm, then ``--repeat`` times; the median counts.
Target: views ≤ 1.5x native for each. Peak RSS is this process's.

    python bench/queries.py                      # 1,000 series, 2,500,000 rows
    python bench/queries.py --rows 25000000      # the issue's 25 million
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _common import peak_rss_mib, print_table, write_result

OPEN_END = dt.date(9999, 12, 31)
START = dt.date(2000, 1, 3)


def observations(series: int, rows: int, chunk_series: int) -> Any:
    """Chunks of ``chunk_series`` series' rows (pyarrow tables), each date with a first
    release and a revision 30 days later: ``rows / series / 2`` dates per series."""
    dates_per = max(1, rows // series // 2)
    days = np.arange(dates_per, dtype=np.int32) + np.int32((START - dt.date(1970, 1, 1)).days)
    rng = np.random.default_rng(7)
    for first in range(0, series, chunk_series):
        ids = [f"S{i:05d}" for i in range(first, min(series, first + chunk_series))]
        n = len(ids)
        date = np.tile(np.repeat(days, 2), n)
        release = date + 1
        revision = date + 31
        start = np.where(np.arange(date.size) % 2 == 0, release, revision)
        end = np.where(np.arange(date.size) % 2 == 0, revision - 1,
                       np.int32((OPEN_END - dt.date(1970, 1, 1)).days))
        values = rng.standard_normal(date.size).cumsum()
        yield pa.table({
            "series_id": pa.array(np.repeat(ids, dates_per * 2)),
            "date": pa.array(date, pa.int32()).cast(pa.date32()),
            "value": pa.array(values),
            "realtime_start": pa.array(start, pa.int32()).cast(pa.date32()),
            "realtime_end": pa.array(end, pa.int32()).cast(pa.date32()),
        })


def positions(columns: list[str]) -> pa.Table:
    """50 users x 20 symbols x five years of business days, one account each; only the
    ``columns`` the contract table has on this branch (``user_id`` and ``connection_id``
    come with the multi-user work)."""
    days = np.arange(np.datetime64("2020-01-01"), np.datetime64("2025-01-01"))
    days = days[np.is_busday(days)]
    users = [f"00000000-0000-4000-8000-{i:012d}" for i in range(50)]
    symbols = [f"SYM{i}" for i in range(20)]
    n = len(users) * len(symbols) * len(days)
    rng = np.random.default_rng(11)
    user = np.repeat(users, len(symbols) * len(days))
    return pa.table({
        "user_id": pa.array(user),
        "connection_id": pa.array(np.char.add("conn-", user.astype(str))),
        "provider": pa.array(["alpaca"] * n),
        "account_id": pa.array(np.repeat([f"****{i:04d}" for i in range(50)],
                                         len(symbols) * len(days))),
        "symbol": pa.array(np.tile(np.repeat(symbols, len(days)), len(users))),
        "asset_class": pa.array(["equity"] * n),
        "quantity": pa.array(rng.integers(1, 100, n).astype(float)),
        "market_value": pa.array(rng.uniform(100, 10_000, n)),
        "average_cost": pa.array(rng.uniform(10, 500, n)),
        "as_of_date": pa.array(np.tile(days, len(users) * len(symbols))).cast(pa.date32()),
    }).select(columns)


QUERIES = {
    "latest": ("SELECT series_id, arg_max(value, date) AS value FROM {latest} "
               "GROUP BY series_id ORDER BY series_id"),
    "as_of": "SELECT count(*), round(sum(value), 3) FROM {as_of}('2010-06-30')",
    "portfolio": ("SELECT as_of_date, round(sum(market_value), 3) FROM {positions} "
                  "WHERE {owner} "
                  "AND as_of_date >= DATE '2020-01-01' GROUP BY 1 ORDER BY 1"),
}


def timed(con: Any, sql: str, repeat: int) -> tuple[float, list[Any]]:
    answer = con.execute(sql).fetchall()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--label", default="", help="suffix of the result file")
    args = parser.parse_args()

    import duckdb

    from dashtam_pipeline.storage.lake import Lake
    from dashtam_pipeline.storage.warehouse import Warehouse

    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        root = Path(tmp)
        lake = Lake(root / "lake")
        started = time.perf_counter()
        chunk = max(1, args.series // 20)
        for table in observations(args.series, args.rows, chunk):
            lake.upsert("macro.fred_observations", table)
        from dashtam_pipeline.schemas.base import column_names
        from dashtam_pipeline.schemas.brokerage import PositionSchema

        position_columns = column_names(PositionSchema)
        lake.upsert("brokerage.positions", positions(position_columns))
        owner = ("user_id = '00000000-0000-4000-8000-000000000007'"
                 if "user_id" in position_columns else "account_id = '****0007'")
        Warehouse(root / "warehouse.duckdb", root / "lake").ensure_views()
        load_seconds = time.perf_counter() - started
        files = len(list((root / "lake").rglob("*.parquet")))

        con = duckdb.connect(str(root / "warehouse.duckdb"))
        con.execute("CREATE SCHEMA native")
        con.execute("CREATE TABLE native.obs AS SELECT * FROM macro.fred_observations")
        con.execute("CREATE TABLE native.positions AS SELECT * FROM brokerage.positions")
        con.execute("CREATE VIEW native.latest AS SELECT series_id, date, value FROM native.obs "
                    "WHERE realtime_end = DATE '9999-12-31'")
        con.execute("CREATE MACRO native.as_of(as_of) AS TABLE SELECT series_id, date, value "
                    "FROM native.obs WHERE realtime_start <= CAST(as_of AS DATE) "
                    "AND CAST(as_of AS DATE) <= realtime_end")
        total = con.execute("SELECT count(*) FROM native.obs").fetchone()[0]  # type: ignore[index]
        rows_out = []
        results: dict[str, Any] = {}
        for name, sql in QUERIES.items():
            views, view_answer = timed(con, sql.format(
                latest="macro.fred_latest", as_of="macro.fred_as_of",
                positions="brokerage.positions", owner=owner), args.repeat)
            native, native_answer = timed(con, sql.format(
                latest="native.latest", as_of="native.as_of", positions="native.positions",
                owner=owner),
                args.repeat)
            same = view_answer == native_answer
            results[name] = {"views_seconds": views, "native_seconds": native,
                             "ratio": views / native, "same_answer": same}
            rows_out.append([name, views * 1000, native * 1000, views / native, same])
        con.close()
    print_table(["query", "views ms", "native ms", "ratio", "same answer"], rows_out)
    print(f"{total:,} observation rows in {args.series} series; {files} lake files; load "
          f"{load_seconds:.1f} s; peak RSS {peak_rss_mib():.0f} MiB; target ratio <= 1.5")
    write_result(
        f"queries_{args.rows}{args.label}",
        {"series": args.series, "observation_rows": total, "lake_files": files,
         "load_seconds": load_seconds, "repeat": args.repeat, "results": results,
         "peak_rss_mib": peak_rss_mib(), "target_ratio": 1.5},
    )


if __name__ == "__main__":
    main()
