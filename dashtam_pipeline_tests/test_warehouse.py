"""The warehouse: views with exactly the contract's DuckDB types, empty tables queryable,
read-only queries that work beside writers and refuse writes, the FRED vintage view and
macro, the duplicate-key query, and ensure_views never failing because of a reader."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import re
import shutil
import threading
from multiprocessing.synchronize import Event
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from dashtam_pipeline.storage.lake import TABLE_LAYOUTS, Lake
from dashtam_pipeline.storage.locks import exclusive_lock
from dashtam_pipeline.storage.warehouse import (
    Warehouse,
    WarehouseError,
    lake_connection,
    write_mart,
)
from dashtam_pipeline_tests.test_lake import JAN, bars_frame, quotes_frame

#: The column lists of CONTRACT.md's warehouse table, verbatim but for the notes.
CONTRACT_COLUMNS = {
    "market.quotes": "symbol VARCHAR, quote_date DATE, price DOUBLE, open DOUBLE, day_high "
    "DOUBLE, day_low DOUBLE, previous_close DOUBLE, change DOUBLE, change_pct DOUBLE, volume "
    "BIGINT, market_cap DOUBLE, exchange VARCHAR, quoted_at TIMESTAMPTZ, provider VARCHAR, "
    "is_stale BOOLEAN",
    "market.daily_bars": "symbol VARCHAR, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, "
    "close DOUBLE, volume DOUBLE, vwap DOUBLE, provider VARCHAR",
    "market.fundamentals": "symbol VARCHAR, period_end DATE, period VARCHAR, fiscal_year "
    "INTEGER, reported_currency VARCHAR, filing_date DATE, revenue DOUBLE, gross_profit DOUBLE, "
    "operating_income DOUBLE, net_income DOUBLE, eps DOUBLE, eps_diluted DOUBLE, "
    "weighted_shares_diluted DOUBLE, total_assets DOUBLE, total_liabilities DOUBLE, "
    "total_equity DOUBLE, cash_and_equivalents DOUBLE, provider VARCHAR",
    "market.earnings": "symbol VARCHAR, report_date DATE, eps_actual DOUBLE, eps_estimate "
    "DOUBLE, revenue_actual DOUBLE, revenue_estimate DOUBLE, provider VARCHAR",
    "market.options_chain": "contract VARCHAR, underlying VARCHAR, contract_type VARCHAR, "
    "strike DOUBLE, expiration DATE, as_of_date DATE, volume DOUBLE, open_interest DOUBLE, "
    "implied_volatility DOUBLE, delta DOUBLE, gamma DOUBLE, theta DOUBLE, vega DOUBLE, "
    "last_price DOUBLE, provider VARCHAR",
    "macro.fred_series": "series_id VARCHAR, title VARCHAR, frequency VARCHAR, units VARCHAR, "
    "seasonal_adjustment VARCHAR, observation_start DATE, observation_end DATE, last_updated "
    "TIMESTAMPTZ, notes VARCHAR",
    "macro.fred_observations": "series_id VARCHAR, date DATE, value DOUBLE, realtime_start "
    "DATE, realtime_end DATE",
    "macro.fred_latest": "series_id VARCHAR, date DATE, value DOUBLE",
    "news.articles": "article_id VARCHAR, symbol VARCHAR, query VARCHAR, published_at "
    "TIMESTAMPTZ, source_name VARCHAR, author VARCHAR, title VARCHAR, description VARCHAR, url "
    "VARCHAR, content VARCHAR, sentiment DOUBLE, provider VARCHAR",
    # issue 11: the brokerage tables say whose a row is (user_id, connection_id)
    "brokerage.accounts": "user_id VARCHAR, connection_id VARCHAR, "
    "provider VARCHAR, account_id VARCHAR, account_type VARCHAR, cash "
    "DOUBLE, equity DOUBLE, as_of_date DATE",
    "brokerage.positions": "user_id VARCHAR, connection_id VARCHAR, "
    "provider VARCHAR, account_id VARCHAR, symbol VARCHAR, asset_class "
    "VARCHAR, quantity DOUBLE, market_value DOUBLE, average_cost DOUBLE, as_of_date DATE",
    "brokerage.transactions": "user_id VARCHAR, connection_id VARCHAR, "
    "provider VARCHAR, account_id VARCHAR, transaction_id VARCHAR, "
    "occurred_at TIMESTAMPTZ, trade_date DATE, type VARCHAR, symbol VARCHAR, quantity DOUBLE, "
    "price DOUBLE, amount DOUBLE, currency VARCHAR, description VARCHAR, source_file VARCHAR",
    "ops.quarantine": "quarantine_id VARCHAR, provider VARCHAR, dataset VARCHAR, partition_key "
    "VARCHAR, reason VARCHAR, record VARCHAR, quarantined_at TIMESTAMPTZ, user_id VARCHAR",
}
#: How DuckDB's DESCRIBE spells the contract's type names.
DESCRIBED = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


def contract_columns(table: str) -> list[tuple[str, str]]:
    pairs = (re.match(r"(\w+) (\w+)", part.strip()) for part in CONTRACT_COLUMNS[table].split(","))
    return [(m[1], DESCRIBED.get(m[2], m[2])) for m in pairs if m]


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "warehouse.duckdb", tmp_path / "lake"


@pytest.fixture
def warehouse(paths: tuple[Path, Path]) -> Warehouse:
    warehouse = Warehouse(*paths)
    assert warehouse.ensure_views() is True
    return warehouse


@pytest.mark.parametrize("table", sorted(CONTRACT_COLUMNS))
def test_views_have_exactly_the_contract_types(warehouse: Warehouse, table: str) -> None:
    _, rows = warehouse.query(f"DESCRIBE {table}")
    assert [(name, kind) for name, kind, *_ in rows] == contract_columns(table)


def test_every_contract_table_is_queryable_before_any_data(warehouse: Warehouse) -> None:
    counts = warehouse.row_counts()
    assert set(counts) == {*TABLE_LAYOUTS, "macro.fred_latest"}  # no mart built yet
    assert set(counts.values()) == {0}
    assert warehouse.query("SELECT * FROM macro.fred_as_of(DATE '2025-01-01')") == (
        ["series_id", "date", "value"],
        [],
    )


def test_data_written_to_the_lake_shows_without_touching_the_warehouse(
    warehouse: Warehouse,
) -> None:
    mtime = warehouse.path.stat().st_mtime_ns
    warehouse.lake.upsert("market.quotes", quotes_frame(["AAPL", "MSFT"], JAN[0]))
    warehouse.lake.upsert("market.daily_bars", bars_frame(["AAPL"], JAN))

    assert warehouse.row_counts()["market.quotes"] == 2
    assert warehouse.row_counts()["market.daily_bars"] == 3
    columns, rows = warehouse.query(
        "SELECT symbol, volume, quoted_at, is_stale FROM market.quotes WHERE symbol = ?",
        ["AAPL"],
    )
    assert columns == ["symbol", "volume", "quoted_at", "is_stale"]
    assert rows == [("AAPL", 123_456_789_012, dt.datetime(2025, 1, 2, 21, tzinfo=dt.UTC), False)]
    assert warehouse.ensure_views() is True
    assert warehouse.path.stat().st_mtime_ns == mtime  # nothing changed: never reopened


def test_query_df_returns_a_frame(warehouse: Warehouse) -> None:
    warehouse.lake.upsert("market.daily_bars", bars_frame(["AAPL", "MSFT"], JAN))
    frame = warehouse.query_df(
        "SELECT symbol, count(*) AS n FROM market.daily_bars GROUP BY symbol ORDER BY symbol"
    )
    assert frame.to_dict("records") == [{"symbol": "AAPL", "n": 3}, {"symbol": "MSFT", "n": 3}]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO ops._views VALUES ('x', 'y', now())",
        "CREATE TABLE market.mine AS SELECT 1",
        "DROP VIEW market.quotes",
        "COPY (SELECT 1) TO 'out.csv'",
        "SELECT 1; DELETE FROM ops._views",
    ],
)
def test_writes_are_refused_with_a_clear_message(warehouse: Warehouse, sql: str) -> None:
    with pytest.raises(WarehouseError, match="read-only through dashtam query"):
        warehouse.query(sql)
    assert warehouse.row_counts()["market.quotes"] == 0


def test_bad_sql_carries_duckdbs_message(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="syntax error"):
        warehouse.query("SELEC 1")
    with pytest.raises(WarehouseError, match="no_such_table"):
        warehouse.query("SELECT * FROM market.no_such_table")


def test_missing_warehouse_says_how_to_create_it(paths: tuple[Path, Path]) -> None:
    with pytest.raises(WarehouseError, match="make demo"):
        Warehouse(*paths).query("SELECT 1")


def _hold_lake_lock(lock: str, held: Event, release: Event) -> None:
    with exclusive_lock(Path(lock)):
        held.set()
        release.wait(60)


def test_query_works_while_another_process_writes_the_lake(warehouse: Warehouse) -> None:
    warehouse.lake.upsert("market.daily_bars", bars_frame(["AAPL"], JAN))
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    lock = warehouse.lake.table_dir("market.daily_bars") / ".lock"
    writer = context.Process(target=_hold_lake_lock, args=(str(lock), held, release))
    writer.start()
    try:
        assert held.wait(60)
        assert warehouse.row_counts()["market.daily_bars"] == 3
    finally:
        release.set()
        writer.join(60)


def _hold_warehouse(path: str, read_only: bool, held: Event, release: Event) -> None:
    con = duckdb.connect(path, read_only=read_only)
    held.set()
    release.wait(60)
    con.close()


def _holding(path: Path, *, read_only: bool):
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    process = context.Process(target=_hold_warehouse, args=(str(path), read_only, held, release))
    process.start()
    assert held.wait(60)
    return process, release


def test_ensure_views_gives_up_with_a_warning_while_an_analyst_has_the_file(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    analyst, release = _holding(warehouse.path, read_only=True)
    try:
        assert warehouse.ensure_views() is True  # nothing changed: no write needed
        write_mart(warehouse.lake, "new_mart", pa.table({"x": [1]}))
        with caplog.at_level(logging.WARNING):
            assert warehouse.ensure_views() is False
        assert "views will be updated by the next run" in caplog.text
    finally:
        release.set()
        analyst.join(60)
    assert warehouse.ensure_views() is True
    assert warehouse.query("SELECT x FROM marts.new_mart") == (["x"], [(1,)])


def test_query_waits_for_a_brief_writer(warehouse: Warehouse) -> None:
    writer, release = _holding(warehouse.path, read_only=False)
    letting_go = threading.Timer(1.0, release.set)  # lets go while query is retrying
    try:
        with pytest.raises(duckdb.IOException):
            duckdb.connect(str(warehouse.path), read_only=True)
        letting_go.start()
        assert warehouse.query("SELECT 42") == (["42"], [(42,)])
    finally:
        letting_go.cancel()
        release.set()
        writer.join(60)


def fred_vintages() -> pd.DataFrame:
    """GDP for two quarters, each revised once; Q2 first published later than Q1."""
    d = dt.date
    rows = [
        # (date, value, realtime_start, realtime_end)
        (d(2024, 1, 1), 100.0, d(2024, 4, 25), d(2024, 5, 29)),
        (d(2024, 1, 1), 101.0, d(2024, 5, 30), d(9999, 12, 31)),
        (d(2024, 4, 1), 200.0, d(2024, 7, 25), d(2024, 8, 28)),
        (d(2024, 4, 1), 202.0, d(2024, 8, 29), d(9999, 12, 31)),
    ]
    return pd.DataFrame(
        [
            {"series_id": "GDP", "date": a, "value": v, "realtime_start": s, "realtime_end": e}
            for a, v, s, e in rows
        ]
    )


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("2024-04-24", []),
        ("2024-05-01", [(dt.date(2024, 1, 1), 100.0)]),
        ("2024-05-29", [(dt.date(2024, 1, 1), 100.0)]),
        ("2024-05-30", [(dt.date(2024, 1, 1), 101.0)]),
        ("2024-08-01", [(dt.date(2024, 1, 1), 101.0), (dt.date(2024, 4, 1), 200.0)]),
        ("2025-01-01", [(dt.date(2024, 1, 1), 101.0), (dt.date(2024, 4, 1), 202.0)]),
    ],
)
def test_fred_as_of_returns_the_vintage_known_that_day(
    warehouse: Warehouse, as_of: str, expected: list
) -> None:
    warehouse.lake.upsert("macro.fred_observations", fred_vintages())
    columns, rows = warehouse.query(
        "SELECT * FROM macro.fred_as_of(CAST(? AS DATE)) ORDER BY date", [as_of]
    )
    assert columns == ["series_id", "date", "value"]
    assert [(date, value) for _, date, value in rows] == expected


def test_fred_latest_is_the_current_vintage(warehouse: Warehouse) -> None:
    warehouse.lake.upsert("macro.fred_observations", fred_vintages())
    _, rows = warehouse.query("SELECT date, value FROM macro.fred_latest ORDER BY date")
    assert rows == [(dt.date(2024, 1, 1), 101.0), (dt.date(2024, 4, 1), 202.0)]


def test_duplicate_keys_finds_a_duplicate_written_around_upsert(warehouse: Warehouse) -> None:
    lake: Lake = warehouse.lake
    lake.upsert("market.daily_bars", bars_frame(["AAPL", "MSFT"], JAN))
    key = ["symbol", "date"]
    assert warehouse.duplicate_keys("market.daily_bars", key) == 0

    (january,) = [p for p in lake.files("market.daily_bars") if p.name == "2025-01.parquet"]
    shutil.copy(january, january.with_name("stray-copy.parquet"))

    assert warehouse.duplicate_keys("market.daily_bars", key) == 6


def test_marts_are_computed_over_the_lake_and_exposed_as_views(warehouse: Warehouse) -> None:
    warehouse.lake.upsert("market.daily_bars", bars_frame(["AAPL", "MSFT"], JAN))
    with lake_connection(warehouse.lake.root) as con:
        table = con.sql(
            "SELECT symbol, max(close) AS top FROM market.daily_bars GROUP BY symbol"
        ).to_arrow_table()
    path = write_mart(warehouse.lake, "top_close", table)

    assert path.name == "top_close.parquet"
    assert warehouse.ensure_views() is True
    _, rows = warehouse.query("SELECT symbol, top FROM marts.top_close ORDER BY symbol")
    assert rows == [("AAPL", 100.0), ("MSFT", 100.0)]


def test_register_view_adds_a_view(warehouse: Warehouse) -> None:
    warehouse.lake.upsert("market.daily_bars", bars_frame(["AAPL"], JAN))
    assert warehouse.register_view(
        "marts.bar_days", "SELECT symbol, count(*) AS days FROM market.daily_bars GROUP BY 1"
    )
    assert warehouse.query("SELECT * FROM marts.bar_days") == (["symbol", "days"], [("AAPL", 3)])


def test_lake_connection_works_on_an_empty_lake(tmp_path: Path) -> None:
    with lake_connection(tmp_path / "nothing-yet") as con:
        assert con.execute("SELECT count(*) FROM brokerage.positions").fetchone() == (0,)
    assert not (tmp_path / "nothing-yet").exists()
