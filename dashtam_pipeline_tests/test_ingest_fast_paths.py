"""The ingest fast paths give the same answers as the slow ones: checks evaluated once per
distinct value quarantine the same rows with the same reasons, dates coerced per distinct
value are the same dates, a bucket written without the merge's aggregation (no file yet)
still drops duplicate keys, last row winning, and an upsert that fails in one month file
leaves every file whole (old or new)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandera.engines import pandas_engine

from dashtam_pipeline.schemas.base import CalendarDate, arrow_schema
from dashtam_pipeline.schemas.distinct import MIN_ROWS, evaluate_per_distinct, factorize_exact
from dashtam_pipeline.schemas.market import DailyBarSchema
from dashtam_pipeline.storage import lake as lake_module
from dashtam_pipeline.storage.lake import Lake, merge_by_key
from dashtam_pipeline.validation import validate
from dashtam_pipeline_tests.test_lake import BAR_KEY, BARS, bars_frame

SYMBOL_CHECK = r"symbol: str_matches('^[A-Z0-9.\-^]+$') failed"
DAYS = [dt.date(2025, 1, 2) + dt.timedelta(days=i) for i in range(10)]
SYMBOLS = [f"S{i}" for i in range(200)]


def big_bars() -> pd.DataFrame:
    """2,000 valid rows (200 symbols x 10 days): enough repeats for the per-distinct path."""
    frame = bars_frame(SYMBOLS, DAYS)
    assert len(frame) >= MIN_ROWS
    return frame


def reasons_by_row(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    result = validate("daily_bars", frame, provider="p", table=BARS)
    return {
        (json.loads(r.record)["symbol"], json.loads(r.record)["date"]): r.reason
        for r in result.quarantined
    }


# --- validation ------------------------------------------------------------------------
def test_symbol_regex_per_distinct_value_quarantines_exactly_the_bad_rows() -> None:
    frame = big_bars()
    frame.loc[[20, 1999], "symbol"] = "bad sym"  # the same bad value on two rows
    frame.loc[[500], "symbol"] = "lower"
    frame.loc[[21], "symbol"] = None

    result = validate("daily_bars", frame, provider="p", table=BARS)

    reasons = sorted(r.reason for r in result.quarantined)
    assert reasons == sorted(
        [
            f"{SYMBOL_CHECK} (value 'bad sym')",
            f"{SYMBOL_CHECK} (value 'bad sym')",
            f"{SYMBOL_CHECK} (value 'lower')",
            "symbol: not_nullable failed (value nan)",
        ]
    )
    assert len(result.valid) == len(frame) - 4
    assert not result.valid["symbol"].isin(["bad sym", "lower"]).any()
    assert result.failures_by_check[SYMBOL_CHECK.removesuffix(" failed")] == 3


def test_per_distinct_reasons_match_a_small_frame_checked_row_by_row() -> None:
    """Below ``MIN_ROWS`` every check runs on every row; the big frame's bad rows must get
    the very same reasons."""
    big = big_bars()
    big["date"] = big["date"].astype(str)
    big.loc[[9, 1500], "date"] = "1700-01-01"
    big.loc[[11], "date"] = None
    big.loc[[30], "symbol"] = "x!"
    small = big.loc[[0, 9, 11, 30, 1500]]
    assert len(small) < MIN_ROWS

    assert reasons_by_row(big) == reasons_by_row(small)
    assert reasons_by_row(big)[("S0", "1700-01-01")] == (
        "date: date_in_range failed (value 1700-01-01)"
    )


def test_dates_coerced_per_distinct_value_equal_row_by_row_coercion() -> None:
    values = ["2025-01-02", "2025-01-03", None, "9999-12-31", "2025-01-02"] * 400
    series = pd.Series(values, dtype=object)

    fast = CalendarDate().coerce(series)
    slow = CalendarDate()._coerce(series, pandas_dtype="datetime64[s]")

    assert fast.dtype == object
    assert fast.tolist()[:5] == [
        dt.date(2025, 1, 2),
        dt.date(2025, 1, 3),
        pd.NaT,
        dt.date(9999, 12, 31),
        dt.date(2025, 1, 2),
    ]
    assert fast.isna().tolist() == slow.isna().tolist()
    assert fast.dropna().tolist() == slow.dropna().tolist()


def test_an_unparseable_date_still_fails_coercion() -> None:
    series = pd.Series(["2025-01-02"] * 10 + ["not-a-date"], dtype=object)
    with pytest.raises(Exception):  # noqa: B017 -- whatever pandas raises, as before
        CalendarDate().coerce(series)


def test_vectorized_date_dtype_check_matches_pandera_rule() -> None:
    """NULL or exactly ``datetime.date``: a datetime (a date subclass) or a string fails."""
    values = [
        dt.date(2025, 1, 2),
        None,
        pd.NaT,
        dt.datetime(2025, 1, 2),
        "2025-01-02",
        float("nan"),
        dt.date(1990, 5, 1),
    ]
    series = pd.Series(values, dtype=object)
    rule = CalendarDate()

    fast = rule.check(rule, series)
    slow = pandas_engine.Date.check(rule, rule, series)

    assert fast.tolist() == list(slow) == [True, True, True, False, False, True, True]


def test_per_distinct_evaluation_falls_back_where_values_would_collide() -> None:
    """``True`` and ``1`` hash alike; a mixed object column is checked row by row."""
    series = pd.Series([True, 1] * MIN_ROWS, dtype=object)
    calls: list[int] = []

    def is_bool(values: pd.Series) -> pd.Series:
        calls.append(len(values))
        return values.map(lambda v: type(v) is bool).astype(bool)

    answer = evaluate_per_distinct(is_bool, series)

    assert calls == [len(series)]
    assert answer.tolist() == [True, False] * MIN_ROWS


def test_values_that_compare_equal_but_differ_are_never_merged() -> None:
    """One instant in two time zones is ``==`` (and hashes alike), and ``infer_dtype`` calls
    dates mixed with datetimes "date": such columns are not factorized at all."""
    utc = dt.datetime(2025, 1, 2, 5, tzinfo=dt.UTC)
    eastern = dt.datetime(2025, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert utc == eastern

    assert factorize_exact(pd.Series([utc, eastern], dtype=object)) is None
    assert factorize_exact(pd.Series([dt.date(2025, 1, 1), utc, eastern], dtype=object)) is None
    codes, distinct = factorize_exact(pd.Series(["a", None, "a", "b"], dtype=object))
    assert codes.tolist() == [0, -1, 0, 1] and distinct.tolist() == ["a", "b"]


def test_per_distinct_evaluation_answers_nulls_with_the_check_itself() -> None:
    series = pd.Series(["A", None, "b"] * MIN_ROWS, dtype="str")
    answer = evaluate_per_distinct(lambda v: v.str.match("^[A-Z]+$", na=False), series)
    expected = series.str.match("^[A-Z]+$", na=False)
    assert answer.tolist() == expected.tolist()
    assert answer.index.equals(series.index)


# --- lake ------------------------------------------------------------------------------
def test_fresh_bucket_still_drops_duplicate_keys_last_wins(tmp_path: Path) -> None:
    """Lake.upsert may be called without validate: its own input dedup must hold even
    when the bucket file does not exist yet."""
    lake = Lake(tmp_path / "lake")
    frame = pd.concat(
        [
            bars_frame(["MSFT", "AAPL"], DAYS[:3], close=1.0),
            bars_frame(["AAPL"], DAYS[:1], close=2.0),
            bars_frame(["AAPL"], DAYS[:1], close=3.0),
        ]
    )

    result = lake.upsert(BARS, frame)

    rows = lake.read(BARS).to_pylist()
    assert len(rows) == 6
    assert result.duplicates_dropped == 2
    assert (result.rows_written, result.rows_inserted, result.rows_replaced) == (6, 6, 0)
    closes = {(r["symbol"], r["date"]): r["close"] for r in rows}
    assert closes[("AAPL", DAYS[0])] == 3.0
    assert [(r["symbol"], r["date"]) for r in rows] == sorted(closes)  # file sorted by key


def test_fresh_bucket_file_is_the_file_the_full_merge_writes(tmp_path: Path) -> None:
    shuffled = bars_frame(SYMBOLS[:50], DAYS).sample(frac=1.0, random_state=3)
    incoming = pa.Table.from_pandas(shuffled, preserve_index=False).cast(
        arrow_schema(DailyBarSchema)
    )
    empty = arrow_schema(DailyBarSchema).empty_table()

    fast, fast_counts = merge_by_key(None, incoming, tuple(BAR_KEY))
    full, full_counts = merge_by_key(empty, incoming, tuple(BAR_KEY))

    assert fast.equals(full)
    assert fast_counts == full_counts


def test_a_rerun_over_a_fresh_bucket_changes_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    frame = bars_frame(SYMBOLS[:30], DAYS).sample(frac=1.0, random_state=5)
    lake.upsert(BARS, frame)  # fresh: sort only
    before = {p.name: p.read_bytes() for p in lake.files(BARS)}

    again = lake.upsert(BARS, frame)  # existing file: full merge

    assert {p.name: p.read_bytes() for p in lake.files(BARS)} == before
    assert (again.rows_inserted, again.rows_replaced) == (0, len(frame))


def test_floats_are_not_dictionary_encoded_but_text_is(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.upsert(BARS, bars_frame(SYMBOLS[:5], DAYS, close=float(np.pi)))
    (path,) = lake.files(BARS)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)
    }

    assert "RLE_DICTIONARY" in encodings["symbol"]
    assert "RLE_DICTIONARY" not in encodings["close"]
    assert pq.read_table(path).num_rows == 50


def test_a_failure_in_one_bucket_leaves_every_file_old_or_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed publish of one month raises, leaves that file as it was and no temp file
    behind; every other file is its old or its new version, whole (a re-run completes it)."""
    lake = Lake(tmp_path / "lake")
    months = [dt.date(2024, m, 3) for m in range(1, 13)]
    lake.upsert(BARS, bars_frame(["AAPL", "MSFT"], months, close=100.0))
    before = {p.name: p.read_bytes() for p in lake.files(BARS)}
    real_publish = lake_module._publish

    def publish_or_crash(temp: Path, target: Path) -> None:
        if target.name == "2024-06.parquet":
            raise OSError("disk pulled out mid-write")
        real_publish(temp, target)

    monkeypatch.setattr(lake_module, "_publish", publish_or_crash)
    with pytest.raises(OSError, match="disk pulled"):
        lake.upsert(BARS, bars_frame(["AAPL", "MSFT"], months, close=999.0))

    assert (lake.table_dir(BARS) / "2024-06.parquet").read_bytes() == before["2024-06.parquet"]
    for path in lake.files(BARS):
        closes = set(pq.read_table(path).column("close").to_pylist())
        assert closes in ({100.0}, {999.0}), path.name
    leftovers = [p.name for p in lake.table_dir(BARS).iterdir() if ".tmp-" in p.name]
    assert leftovers == []

    monkeypatch.undo()
    lake.upsert(BARS, bars_frame(["AAPL", "MSFT"], months, close=999.0))
    assert set(lake.read(BARS).column("close").to_pylist()) == {999.0}
    assert lake.read(BARS).num_rows == 24


def test_bucket_rows_are_in_key_order_whatever_the_text(tmp_path: Path) -> None:
    """Text keys are sorted by their rank among distinct values: the order must be the
    plain string order (UTF-8 bytes, i.e. code points), the one the full merge writes."""
    lake = Lake(tmp_path / "lake")
    symbols = ["b", "B", "AA", "A-", "A", "Ä", "a", "^GSPC", "BRK.B", "10"]
    frame = bars_frame(symbols, DAYS[:3]).sample(frac=1.0, random_state=11)

    lake.upsert(BARS, frame)

    (path,) = lake.files(BARS)
    keys = [(r["symbol"], r["date"]) for r in pq.read_table(path).to_pylist()]
    assert keys == sorted(keys)
    assert len(keys) == 30
