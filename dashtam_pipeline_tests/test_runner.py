"""How `dashtam materialize` turns a selection and partition arguments into runs."""

from __future__ import annotations

import datetime as dt

import pytest

from dashtam_pipeline import runner
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.runner import SelectionError, plan_runs, resolve_selection
from dashtam_pipeline.settings import load_settings


@pytest.fixture
def defs(data_dir):  # type: ignore[no-untyped-def]
    return build_definitions(load_settings())


def labels(plans) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.label for p in plans]


def test_everything_runs_ingestion_first_and_marts_last(defs, monkeypatch) -> None:
    monkeypatch.setattr(runner, "market_today", lambda: dt.date(2026, 11, 23))  # a Monday
    plans = plan_runs(defs, resolve_selection(defs, None))
    assert plans[-1].label.startswith("marts/")
    daily = [p for p in plans if "market/quotes" in p.label]
    assert [p.tags for p in daily] == [{"dagster/partition": "2026-11-20"}]  # Friday
    fred = [p for p in plans if "macro/fred_observations" in p.label]
    assert fred[0].tags == {PARTITION_RANGE_START: "GDP", PARTITION_RANGE_END: "INDPRO"}


def test_partition_applies_to_the_assets_it_belongs_to(defs) -> None:
    plans = plan_runs(defs, resolve_selection(defs, "group:macro"), partition="UNRATE")
    assert [p.tags for p in plans] == [{"dagster/partition": "UNRATE"}]
    with pytest.raises(SelectionError, match="not a partition of any selected asset"):
        plan_runs(defs, resolve_selection(defs, "group:macro"), partition="2026-11-20")


def test_date_range_is_split_by_the_backfill_policy(defs) -> None:
    keys = resolve_selection(defs, "key:market/daily_bars")
    plans = plan_runs(defs, keys, start="2025-01-01", end="2025-03-15")
    ranges = [(p.tags[PARTITION_RANGE_START], p.tags[PARTITION_RANGE_END]) for p in plans]
    assert ranges == [("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-03-03"),
                      ("2025-03-04", "2025-03-15")]
    with pytest.raises(SelectionError, match="after"):
        plan_runs(defs, keys, start="2025-03-15", end="2025-01-01")


def test_bad_selection_names_the_known_assets(defs) -> None:
    with pytest.raises(SelectionError) as info:
        resolve_selection(defs, "key:market/nope")
    assert "market/nope" in str(info.value) and "market/quotes" in str(info.value)
