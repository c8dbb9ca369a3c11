"""What an analyst's query sees while an upsert is half done (``docs/lake.md``).

An upsert publishes one bucket file at a time (``os.replace``, in label order). A reader
between two publishes is pinned here, through the warehouse's own view, not assumed:

- each file is entirely old or entirely new (never half a file, never a temp file);
- each key is in exactly one file, so a key shows once, old or new, never twice or not at all;
- across files there is no snapshot: the buckets already published show the new rows,
  the others the old ones. A query spanning buckets can mix the two upserts; a query
  within one bucket (one month of quotes, one hashed group of series) cannot.
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
from dashtam_pipeline_tests.test_lake import quotes_frame

OCT, NOV = dt.date(2026, 10, 30), dt.date(2026, 11, 20)
SYMBOLS = ["AAPL", "MSFT", "NVDA"]


def read_mid_upsert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upsert: Callable[[Lake], object]
) -> list[list[tuple[object, ...]]]:
    """Run ``upsert`` and, after each bucket file it publishes, query the warehouse's
    ``market.quotes`` view: ``(quote_date, symbol, price)`` rows seen at each point."""
    warehouse = Warehouse(tmp_path / "warehouse.duckdb", tmp_path / "lake")
    warehouse.ensure_views()
    seen: list[list[tuple[object, ...]]] = []
    real_publish = lake_module._publish  # the step under observation

    def publish_then_read(temp: Path, path: Path) -> None:
        real_publish(temp, path)
        _, rows = warehouse.query(
            "select quote_date, symbol, price from market.quotes order by quote_date, symbol")
        seen.append(rows)

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
