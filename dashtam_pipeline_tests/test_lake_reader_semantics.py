"""What an analyst's query sees while an upsert is half done (``docs/lake.md``).

An upsert publishes one bucket file at a time (``os.replace``, in label order). A reader
between two publishes is pinned here, through the warehouse's own view, not assumed:

- each file is entirely old or entirely new (never half a file, never a temp file);
- each key is in exactly one file, so a key shows once, old or new, never twice or not at all;
- across files there is no snapshot: the buckets already published show the new rows,
  the others the old ones. A query spanning buckets can mix the two upserts; a query
  within one bucket (one month of quotes, one hashed group of series) cannot;
- the one exception to "a key once": the upsert that moves a table to a new bucket layout
  (an upgrade) publishes the merged files before deleting the old ones, and in between a
  moved key shows twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dashtam_pipeline.storage import lake as lake_module
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.warehouse import Warehouse
from dashtam_pipeline_tests.test_lake import (
    OBS,
    observations_frame,
    per_value_layout,
    quotes_frame,
)

OCT, NOV = dt.date(2026, 10, 30), dt.date(2026, 11, 20)
SYMBOLS = ["AAPL", "MSFT", "NVDA"]


QUOTES_SQL = "select quote_date, symbol, price from market.quotes order by quote_date, symbol"


def read_mid_upsert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upsert: Callable[[Lake], object],
    sql: str = QUOTES_SQL,
) -> list[list[tuple[object, ...]]]:
    """Run ``upsert`` and, after each bucket file it publishes, run ``sql`` on the
    warehouse's views (by default the ``(quote_date, symbol, price)`` rows of quotes)."""
    warehouse = Warehouse(tmp_path / "warehouse.duckdb", tmp_path / "lake")
    warehouse.ensure_views()
    seen: list[list[tuple[object, ...]]] = []
    real_publish = lake_module._publish  # the step under observation

    def publish_then_read(temp: Path, path: Path) -> None:
        real_publish(temp, path)
        seen.append(warehouse.query(sql)[1])

    monkeypatch.setattr(lake_module, "_publish", publish_then_read)
    upsert(warehouse.lake)
    return seen


def test_a_reader_sees_each_bucket_old_or_new_and_no_key_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.upsert("market.quotes", quotes_frame(SYMBOLS, OCT, price=10.0))
    lake.upsert("market.quotes", quotes_frame(SYMBOLS, NOV, price=10.0))

    def second_upsert(lake: Lake) -> None:  # both months repriced in one upsert
        lake.upsert("market.quotes", pd.concat([quotes_frame(SYMBOLS, OCT, price=20.0),
                                                quotes_frame(SYMBOLS, NOV, price=20.0)]))

    seen = read_mid_upsert(tmp_path, monkeypatch, second_upsert)
    assert len(seen) == 2  # two buckets (2026-10, 2026-11): two publishes
    middle, end = seen
    # between the publishes: October new, November still old; each key exactly once
    assert middle == (
        [(OCT, s, 20.0) for s in SYMBOLS] + [(NOV, s, 10.0) for s in SYMBOLS])
    assert end == [(OCT, s, 20.0) for s in SYMBOLS] + [(NOV, s, 20.0) for s in SYMBOLS]
    assert not list((tmp_path / "lake").rglob("*.tmp-*"))


def test_within_one_bucket_a_reader_sees_one_upsert_or_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of one bucket flips at one instant: a month's quotes are never a mix."""
    lake = Lake(tmp_path / "lake")
    lake.upsert("market.quotes", quotes_frame(SYMBOLS, NOV, price=10.0))
    seen = read_mid_upsert(
        tmp_path, monkeypatch,
        lambda lake: lake.upsert("market.quotes", quotes_frame(SYMBOLS, NOV, price=30.0)))
    assert seen == [[(NOV, s, 30.0) for s in SYMBOLS]]


def test_an_upgrade_to_a_new_bucket_layout_shows_a_moved_key_twice_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.upsert(per_value_layout(), observations_frame(["GDP", "UNRATE"], value=1.0))
    counts = "select series_id, count(*) from macro.fred_observations group by 1 order by 1"
    seen = read_mid_upsert(
        tmp_path, monkeypatch,
        lambda lake: lake.upsert(OBS, observations_frame(["GDP"], value=2.0)), counts)
    # GDP's and UNRATE's hashed files published one by one, the old files still there
    assert seen[0] in ([("GDP", 2), ("UNRATE", 1)], [("GDP", 1), ("UNRATE", 2)])
    assert seen[-1] == [("GDP", 2), ("UNRATE", 2)]  # the last publish, before the delete
    _, after = Warehouse(tmp_path / "warehouse.duckdb", tmp_path / "lake").query(counts)
    assert after == [("GDP", 1), ("UNRATE", 1)]  # the upsert's end removed the old files
