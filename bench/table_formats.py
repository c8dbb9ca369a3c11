"""The lake's own protocol against Delta Lake (``deltalake``), on the pipeline's writes.

Issue 13 asks whether an existing table format serves a multi-host lake better than
bucket files published with ``os.replace`` under a per-table lock. This measures the
three writes the pipeline does and the read an analyst does, on the same daily bars
(``ingest_throughput.chunks``: 2,000 symbols x business days from 1990):

* backfill: every row into an empty table (ours: ``Lake.upsert`` chunk by chunk, as a
  backfill lands; Delta: ``write_deltalake`` of the same chunks, partitioned by month as
  our buckets are);
* nightly: one new day for every symbol (one bucket);
* re-pull: new values for 1% of the rows spread over every month (every bucket), the
  shape of a provider correcting its history;
* read: average close per symbol over one year (1991), by DuckDB (ours: ``read_parquet`` over the
  files, as the warehouse's views do; Delta: DuckDB over ``DeltaTable.to_pyarrow_dataset``,
  the only way here: DuckDB's ``delta`` extension is downloaded on first use, and this
  machine has no internet).

Both upserts are by key (symbol, date): Delta's is ``merge`` with
``when_matched_update_all``/``when_not_matched_insert_all``. Each side runs in its own
subprocess (its peak RSS is its own). Needs ``pip install -r bench/requirements.txt``.

    .venv/bin/python bench/table_formats.py [--rows 2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import peak_rss_mib, print_table, write_result
from ingest_throughput import chunks

HERE = Path(__file__).resolve()
SYMBOLS = 2000
KEY = ("symbol", "date")


def batches(rows: int) -> tuple[list[pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """The backfill's chunks, the nightly day and the 1% re-pull (same for both sides)."""
    backfill = list(chunks(rows, SYMBOLS))
    last = backfill[-1]
    nightly = last[last["date"] == last["date"].max()].copy()
    next_day = np.busday_offset(last["date"].max().to_datetime64().astype("datetime64[D]"), 1,
                                roll="forward")
    nightly["date"] = next_day.astype("datetime64[s]")
    everything = pd.concat(backfill, ignore_index=True)
    repull = everything.sample(frac=0.01, random_state=3).copy()
    repull["close"] = repull["close"] * 1.01
    repull["vwap"] = repull["close"]
    return backfill, nightly, repull


def timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


READ_SQL = ("select symbol, avg(close) from {source} where date >= DATE '1991-01-01' "
            "and date < DATE '1992-01-01' group by symbol")


def run_ours(rows: int, root: Path) -> dict[str, Any]:
    import duckdb

    from dashtam_pipeline.storage.lake import Lake

    backfill, nightly, repull = batches(rows)
    lake = Lake(root / "lake")
    out = {"backfill_s": timed(lambda: [lake.upsert("market.daily_bars", c) for c in backfill])}
    out["nightly_s"] = timed(lambda: lake.upsert("market.daily_bars", nightly))
    out["repull_s"] = timed(lambda: lake.upsert("market.daily_bars", repull))
    glob = lake.glob("market.daily_bars")
    con = duckdb.connect()
    source = f"read_parquet('{glob}')"
    out["read_s"] = timed(lambda: con.execute(READ_SQL.format(source=source)).fetchall())
    out["rows"] = con.execute(f"select count(*) from {source}").fetchone()[0]
    out["files"] = len(list((root / "lake").rglob("*.parquet")))
    return out


def run_delta(rows: int, root: Path) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    backfill, nightly, repull = batches(rows)
    path = str(root / "delta")

    def with_month(frame: pd.DataFrame) -> pa.Table:
        frame = frame.assign(month=pd.to_datetime(frame["date"]).dt.strftime("%Y-%m"))
        frame["date"] = pd.to_datetime(frame["date"]).dt.date
        return pa.Table.from_pandas(frame, preserve_index=False)

    def merge(frame: pd.DataFrame) -> None:
        (DeltaTable(path).merge(with_month(frame), predicate=(
            "t.symbol = s.symbol AND t.date = s.date AND t.month = s.month"),
            source_alias="s", target_alias="t")
         .when_matched_update_all().when_not_matched_insert_all().execute())

    def load() -> None:
        for chunk in backfill:  # a backfill lands chunk by chunk, and may repeat keys
            if DeltaTable.is_deltatable(path):
                merge(chunk)
            else:
                write_deltalake(path, with_month(chunk), partition_by=["month"])

    out = {"backfill_s": timed(load)}
    out["nightly_s"] = timed(lambda: merge(nightly))
    out["repull_s"] = timed(lambda: merge(repull))
    con = duckdb.connect()
    con.register("dataset", DeltaTable(path).to_pyarrow_dataset())
    out["read_s"] = timed(lambda: con.execute(READ_SQL.format(source="dataset")).fetchall())
    out["rows"] = con.execute("select count(*) from dataset").fetchone()[0]
    out["files"] = len(list((root / "delta").rglob("*.parquet")))
    out["versions"] = DeltaTable(path).version() + 1
    return out


def child(side: str, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_ours if side == "ours" else run_delta)(rows, Path(tmp))
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--side", choices=("ours", "delta"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args.side, args.rows)
        return
    results = {}
    for side in ("ours", "delta"):
        done = subprocess.run([sys.executable, str(HERE), "--side", side, "--rows",
                               str(args.rows)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    headers = ["side", "rows", "files", "backfill_s", "nightly_s", "repull_s", "read_s",
               "peak_rss_mib"]
    print_table(headers, [[side, *(round(r.get(h), 3) if isinstance(r.get(h), float)
                                   else r.get(h) for h in headers[1:])]
                          for side, r in results.items()])
    ratios = {f"delta_over_ours_{k}": round(results["delta"][k] / results["ours"][k], 2)
              for k in ("backfill_s", "nightly_s", "repull_s", "read_s")}
    print(ratios)
    name = "table_formats" if args.rows == 2_000_000 else f"table_formats_{args.rows}"
    write_result(name, {"rows": args.rows, "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
