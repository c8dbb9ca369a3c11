"""How `dashtam materialize` turns a selection and partition arguments into runs."""

from __future__ import annotations

import datetime as dt

import pytest

from dashtam_pipeline import runner
from dashtam_pipeline.assets.partitions import OBSERVATION_END_TAG, OBSERVATION_START_TAG
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


def test_dates_backfill_fred_observation_dates_and_daily_days(defs) -> None:
    keys = resolve_selection(defs, "group:macro or key:market/daily_bars")
    plans = plan_runs(defs, keys, start="2026-10-01", end="2026-10-02")
    by_label = {p.label.split(" [")[0]: p for p in plans}
    fred = by_label["macro/fred_observations, macro/fred_series"]
    assert fred.tags == {
        PARTITION_RANGE_START: "GDP", PARTITION_RANGE_END: "INDPRO",
        OBSERVATION_START_TAG: "2026-10-01", OBSERVATION_END_TAG: "2026-10-02",
    }
    assert fred.label.endswith("observations 2026-10-01..2026-10-02")
    assert by_label["market/daily_bars"].tags == {
        PARTITION_RANGE_START: "2026-10-01", PARTITION_RANGE_END: "2026-10-02"}
    step = "macro__fred_observations_and_fred_series"
    assert fred.steps == {"macro/fred_observations": step, "macro/fred_series": step}


def test_one_series_over_a_date_range(defs) -> None:
    plans = plan_runs(
        defs, resolve_selection(defs, "group:macro"), partition="UNRATE", start="2000-01-01"
    )
    assert [p.tags for p in plans] == [
        {"dagster/partition": "UNRATE", OBSERVATION_START_TAG: "2000-01-01"}]
    with pytest.raises(SelectionError, match="--from 2001-01-01 is after --to 2000-01-01"):
        plan_runs(defs, resolve_selection(defs, "group:macro"), start="2001-01-01",
                  end="2000-01-01")
    with pytest.raises(SelectionError, match="neither a partition of the selected assets"):
        plan_runs(defs, resolve_selection(defs, "group:macro"), start="NOPE")
    with pytest.raises(SelectionError, match="not a partition of any selected asset"):
        plan_runs(defs, resolve_selection(defs, "group:market"), partition="2026-11-20",
                  start="2026-11-01")


def test_a_backfill_of_many_series_runs_25_series_per_run(data_dir, monkeypatch) -> None:
    ids = [f"GDP_{i}" for i in range(1, 61)]
    monkeypatch.setenv("DASHTAM_FRED_SERIES", ",".join(ids))
    defs = build_definitions(load_settings())
    plans = plan_runs(defs, resolve_selection(defs, "group:macro"))
    assert [(p.tags[PARTITION_RANGE_START], p.tags[PARTITION_RANGE_END]) for p in plans] == [
        ("GDP_1", "GDP_25"), ("GDP_26", "GDP_50"), ("GDP_51", "GDP_60")]
