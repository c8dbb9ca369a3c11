"""The Parquet lake: idempotent upserts by key, month buckets, exact Arrow types, atomic
publication, cross-process locking, and the quarantine table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import re
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashtam_pipeline.schemas.base import arrow_schema
from dashtam_pipeline.schemas.market import DailyBarSchema, QuoteSchema
from dashtam_pipeline.schemas.news import NewsArticleSchema
from dashtam_pipeline.storage import lake as lake_module
from dashtam_pipeline.storage.lake import (
    EMPTY_BUCKET,
    Lake,
    LakeError,
    bucket_label,
)
from dashtam_pipeline.storage.locks import LockTimeout, exclusive_lock
from dashtam_pipeline.validation import QuarantineRecord

BARS = "market.daily_bars"
BAR_KEY = ["symbol", "date"]


def bars_frame(symbols: list[str], days: list[dt.date], *, close: float = 100.0) -> pd.DataFrame:
    """Valid ``market.daily_bars`` rows, one per symbol and day, typed as validation
    leaves them."""
    rows = [
        {
            "symbol": s,
            "date": d,
            "open": close - 1,
            "high": close + 1,
            "low": close - 2,
            "close": close,
            "volume": 1000.0,
            "vwap": close,
            "provider": "fmp",
        }
        for s in symbols
        for d in days
    ]
    return pd.DataFrame(rows)


def quotes_frame(symbols: list[str], day: dt.date, *, price: float = 10.0) -> pd.DataFrame:
    """Valid ``market.quotes`` rows (exercises BIGINT, TIMESTAMPTZ and BOOLEAN)."""
    quoted_at = pd.Timestamp(dt.datetime.combine(day, dt.time(21)), tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": symbols,
            "quote_date": [day] * len(symbols),
            "price": [price] * len(symbols),
            "open": [price] * len(symbols),
            "day_high": [price + 1] * len(symbols),
            "day_low": [price - 1] * len(symbols),
            "previous_close": [price] * len(symbols),
            "change": [0.0] * len(symbols),
            "change_pct": [0.0] * len(symbols),
            "volume": pd.array([123_456_789_012] * len(symbols), dtype="Int64"),
            "market_cap": [1e12] * len(symbols),
            "exchange": ["NASDAQ"] * len(symbols),
            "quoted_at": [quoted_at] * len(symbols),
            "provider": ["fmp"] * len(symbols),
            "is_stale": [False] * len(symbols),
        }
    )
    frame["quoted_at"] = frame["quoted_at"].astype("datetime64[us, UTC]")
    return frame


JAN = [dt.date(2025, 1, d) for d in (2, 3, 6)]
FEB = [dt.date(2025, 2, d) for d in (3, 4)]


def sorted_rows(table: pa.Table, key: list[str]) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in key]).to_pylist()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def test_same_frame_twice_leaves_identical_files(lake: Lake) -> None:
    frame = bars_frame(["AAPL", "MSFT"], JAN + FEB)
    first = lake.upsert(BARS, frame)
    contents = {p.name: p.read_bytes() for p in lake.files(BARS)}
    second = lake.upsert(BARS, frame)

    assert {p.name: p.read_bytes() for p in lake.files(BARS)} == contents
    assert lake.read(BARS).num_rows == len(frame) == 10
    assert (first.rows_inserted, first.rows_replaced) == (10, 0)
    assert (second.rows_inserted, second.rows_replaced, second.rows_written) == (0, 10, 10)


def test_new_row_replaces_same_key_and_keeps_the_others(lake: Lake) -> None:
    lake.upsert(BARS, bars_frame(["AAPL", "MSFT"], JAN, close=100.0))
    result = lake.upsert(BARS, bars_frame(["AAPL"], JAN[:1], close=250.0))

    rows = {(r["symbol"], r["date"]): r["close"] for r in lake.read(BARS).to_pylist()}
    assert rows[("AAPL", JAN[0])] == 250.0
    assert rows[("AAPL", JAN[1])] == 100.0
    assert all(rows[("MSFT", d)] == 100.0 for d in JAN)
    assert len(rows) == lake.read(BARS).num_rows == 6
    assert (result.rows_inserted, result.rows_replaced) == (0, 1)


def test_rows_land_in_one_file_per_month(lake: Lake) -> None:
    result = lake.upsert(BARS, bars_frame(["AAPL"], JAN + FEB))

    assert sorted(Path(f).name for f in result.files) == ["2025-01.parquet", "2025-02.parquet"]
    january = pq.read_table(lake.table_dir(BARS) / "2025-01.parquet")
    assert set(january.column("date").to_pylist()) == set(JAN)
    # a later upsert of February only rewrites February
    before = (lake.table_dir(BARS) / "2025-01.parquet").stat().st_mtime_ns
    later = lake.upsert(BARS, bars_frame(["MSFT"], FEB))
    assert [Path(f).name for f in later.files] == ["2025-02.parquet"]
    assert (lake.table_dir(BARS) / "2025-01.parquet").stat().st_mtime_ns == before


def test_duplicate_keys_within_a_frame_keep_the_last(lake: Lake) -> None:
    frame = pd.concat(
        [bars_frame(["AAPL"], JAN, close=1.0), bars_frame(["AAPL"], JAN[:1], close=2.0)]
    )
    result = lake.upsert(BARS, frame)

    assert result.duplicates_dropped == 1
    assert result.rows_written == 3
    closes = {r["date"]: r["close"] for r in lake.read(BARS).to_pylist()}
    assert closes[JAN[0]] == 2.0


def test_files_have_exactly_the_contract_arrow_types(lake: Lake) -> None:
    lake.upsert("market.quotes", quotes_frame(["AAPL"], JAN[0]))
    (path,) = lake.files("market.quotes")
    schema = pq.read_schema(path)

    assert schema.equals(arrow_schema(QuoteSchema), check_metadata=False)
    assert schema.field("quote_date").type == pa.date32()
    assert schema.field("quoted_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("volume").type == pa.int64()
    assert lake.read("market.quotes").column("volume").to_pylist() == [123_456_789_012]


def test_a_column_that_does_not_fit_is_refused_before_writing(lake: Lake) -> None:
    frame = bars_frame(["AAPL"], JAN)
    frame["close"] = ["not a number"] * len(frame)

    with pytest.raises(LakeError, match=r"market\.daily_bars\.close"):
        lake.upsert(BARS, frame)
    assert lake.files(BARS) == []


def test_null_key_parts_match_each_other(lake: Lake) -> None:
    """A news article found by a non-symbol query has symbol NULL; re-running must
    replace it, not add a second row."""
    article = {
        "article_id": "ab" * 16,
        "symbol": None,
        "query": "inflation",
        "published_at": pd.Timestamp("2025-01-02T10:00:00Z"),
        "source_name": "Wire",
        "author": None,
        "title": "Prices",
        "description": None,
        "url": "https://example.com/a",
        "content": None,
        "sentiment": 0.1,
        "provider": "newsapi",
    }
    frame = pd.DataFrame([article])
    lake.upsert("news.articles", frame, NewsArticleSchema)
    lake.upsert("news.articles", frame.assign(sentiment=0.5), NewsArticleSchema)

    table = lake.read("news.articles")
    assert table.num_rows == 1
    assert table.column("sentiment").to_pylist() == [0.5]
    assert [p.name for p in lake.files("news.articles")] == ["_null.parquet"]


def test_bucket_labels_are_safe_file_names() -> None:
    assert bucket_label("BRK.B") == "BRK.B"
    assert bucket_label("sandbox:fmp") == "sandbox_fmp"
    assert bucket_label("../etc") == "v.._etc"
    assert bucket_label("_empty") != EMPTY_BUCKET
    assert bucket_label(None) == "_null"
    long = bucket_label("X" * 300)
    assert len(long) < 120 and long != bucket_label("X" * 301)


def test_a_failed_publish_leaves_the_old_file_and_no_temp_file(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.upsert(BARS, bars_frame(["AAPL"], JAN, close=100.0))
    (path,) = lake.files(BARS)
    before = path.read_bytes()

    def crash(temp: Path, target: Path) -> None:
        assert temp.exists() and temp.stat().st_size > 0  # the new file was fully written
        raise OSError("disk pulled out mid-write")

    monkeypatch.setattr(lake_module, "_publish", crash)
    with pytest.raises(OSError, match="disk pulled"):
        lake.upsert(BARS, bars_frame(["AAPL"], JAN, close=999.0))

    assert path.read_bytes() == before
    assert [p.name for p in lake.table_dir(BARS).iterdir() if p.name != ".lock"] == [path.name]


def test_a_killed_writers_temp_file_is_invisible_and_cleaned_up(lake: Lake) -> None:
    lake.upsert(BARS, bars_frame(["AAPL"], JAN))
    (path,) = lake.files(BARS)
    leftover = path.with_name(f".{path.name}.tmp-99999-deadbeef")
    leftover.write_bytes(b"half a parquet file")

    assert lake.files(BARS) == [path]  # the views' *.parquet glob does not match it
    assert lake.read(BARS).num_rows == 3
    lake.upsert(BARS, bars_frame(["MSFT"], JAN))
    assert not leftover.exists()


def test_upsert_waits_for_the_table_lock_and_times_out_clearly(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake", lock_timeout=0.3)
    lock = lake.table_dir(BARS) / ".lock"
    with exclusive_lock(lock), pytest.raises(LockTimeout, match=r"market\.daily_bars"):
        lake.upsert(BARS, bars_frame(["AAPL"], JAN))
    assert lake.upsert(BARS, bars_frame(["AAPL"], JAN)).rows_written == 3


def _upsert_symbol(root: str, symbol: str, go: Event) -> None:
    """Worker for the multiprocess test: many small upserts into the same bucket files,
    started together so the read-merge-writes really interleave."""
    lake = Lake(Path(root))
    go.wait(60)
    for _ in range(3):
        for day in JAN + FEB:
            lake.upsert(BARS, bars_frame([symbol], [day]))


def test_concurrent_upserts_from_several_processes_keep_every_row(lake: Lake) -> None:
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "JPM"]
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    workers = [
        context.Process(target=_upsert_symbol, args=(str(lake.root), s, go)) for s in symbols
    ]
    for worker in workers:
        worker.start()
    time.sleep(2)  # let the interpreters start and import, then release them at once
    go.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * len(symbols)

    frame = lake.read_frame(BARS)
    assert len(frame) == len(symbols) * len(JAN + FEB)
    assert not frame.duplicated(subset=BAR_KEY).any()
    assert set(frame["symbol"]) == set(symbols)


def test_empty_table_file_has_the_schema_and_no_rows(lake: Lake) -> None:
    path = lake.ensure_table(BARS)
    assert pq.read_schema(path).equals(arrow_schema(DailyBarSchema), check_metadata=False)
    assert lake.read(BARS).num_rows == 0

    lake.upsert(BARS, bars_frame(["AAPL"], JAN))
    mtime = path.stat().st_mtime_ns
    lake.ensure_table(BARS)
    assert path.stat().st_mtime_ns == mtime  # unchanged schema: not rewritten
    assert lake.read(BARS).num_rows == 3


def test_files_written_before_a_column_was_added_read_it_as_null(lake: Lake) -> None:
    frame = bars_frame(["AAPL"], JAN).drop(columns=["vwap"])
    old = pa.Table.from_pandas(frame, preserve_index=False)
    directory = lake.table_dir(BARS)
    directory.mkdir(parents=True)
    pq.write_table(old, directory / "2025-01.parquet")

    lake.upsert(BARS, bars_frame(["MSFT"], JAN[:1]))
    rows = lake.read(BARS).to_pylist()
    assert len(rows) == 4
    assert {r["symbol"]: r["vwap"] for r in rows if r["date"] == JAN[0]} == {
        "AAPL": None,
        "MSFT": 100.0,
    }


def quarantine_records(reason: str = "price: greater_than(0) failed (value -2.0)") -> list:
    return [
        QuarantineRecord(
            provider="fmp",
            dataset="market.quotes",
            partition_key="2025-01-02",
            reason=reason,
            record=f'{{"symbol": "{s}", "price": -2.0}}',
        )
        for s in ("AAPL", "MSFT")
    ]


def test_quarantining_the_same_bad_input_twice_does_not_duplicate(lake: Lake) -> None:
    assert lake.quarantine(quarantine_records()) == 2
    assert lake.quarantine(quarantine_records()) == 2
    assert lake.read("ops.quarantine").num_rows == 2

    lake.quarantine(quarantine_records(reason="another reason"))
    table = lake.read("ops.quarantine")
    assert table.num_rows == 4
    assert set(table.column("dataset").to_pylist()) == {"market.quotes"}
    assert [p.name for p in lake.files("ops.quarantine")] == ["market.quotes.parquet"]
    assert lake.quarantine([]) == 0


# --- hashed buckets (series and symbols) --------------------------------------------------
OBS = "macro.fred_observations"


def observations_frame(series: list[str], *, value: float) -> pd.DataFrame:
    """One open-ended vintage of one date per series."""
    return pd.DataFrame(
        {
            "series_id": series,
            "date": [dt.date(2024, 1, 1)] * len(series),
            "value": [value] * len(series),
            "realtime_start": [dt.date(2024, 2, 1)] * len(series),
            "realtime_end": [dt.date(9999, 12, 31)] * len(series),
        }
    )


def per_value_layout() -> lake_module.TableLayout:
    """``macro.fred_observations`` as earlier versions stored it: one file per series."""
    return dataclasses.replace(lake_module.table_layout(OBS), buckets=None)


def test_a_thousand_series_land_in_sixteen_row_grouped_snappy_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    series = [f"S{i:04d}" for i in range(1000)]
    lake.upsert(OBS, observations_frame(series, value=1.0))

    names = sorted(p.name for p in lake.files(OBS))
    assert len(names) == 16
    assert all(re.fullmatch(r"hash16-\d{3}\.parquet", name) for name in names)
    table = lake.read(OBS)
    assert sorted(table.column("series_id").to_pylist()) == series
    metadata = pq.ParquetFile(lake.files(OBS)[0]).metadata
    assert metadata.row_group(0).column(0).compression == "SNAPPY"


def test_a_series_always_hashes_to_the_same_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    first = lake.upsert(OBS, observations_frame(["GDP"], value=1.0))
    again = lake.upsert(OBS, observations_frame(["GDP"], value=2.0))
    assert first.files == again.files
    assert again.rows_replaced == 1
    assert lake.read(OBS).column("value").to_pylist() == [2.0]


def test_files_of_the_per_value_layout_are_merged_into_the_hashed_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    old = ["GDP", "UNRATE", "DGS10"]
    lake.upsert(per_value_layout(), observations_frame(old, value=1.0))
    assert sorted(p.name for p in lake.files(OBS)) == [
        "DGS10.parquet", "GDP.parquet", "UNRATE.parquet"
    ]

    lake.upsert(OBS, observations_frame(["GDP", "CPIAUCSL"], value=2.0))

    names = [p.name for p in lake.files(OBS)]
    assert all(name.startswith("hash16-") for name in names), names
    values = dict(
        zip(*lake.read(OBS).select(["series_id", "value"]).to_pydict().values(), strict=True)
    )
    # the new GDP row wins, rows only the old files held are kept, nothing twice
    assert values == {"GDP": 2.0, "UNRATE": 1.0, "DGS10": 1.0, "CPIAUCSL": 2.0}
    assert lake.read(OBS).num_rows == 4


def test_an_old_file_left_by_a_crash_after_the_merge_loses_to_the_merged_rows(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    lake.upsert(per_value_layout(), observations_frame(["GDP"], value=1.0))
    (stale,) = lake.files(OBS)
    kept = stale.read_bytes()
    lake.upsert(OBS, observations_frame(["GDP"], value=2.0))
    stale.write_bytes(kept)  # the crash: the merged bucket was published, this not removed

    lake.upsert(OBS, observations_frame(["UNRATE"], value=3.0))

    assert not stale.exists()
    rows = sorted(zip(*lake.read(OBS).select(["series_id", "value"]).to_pydict().values(),
                      strict=True))
    assert rows == [("GDP", 2.0), ("UNRATE", 3.0)]
