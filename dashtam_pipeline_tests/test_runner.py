"""How `dashtam materialize` turns a selection and partition arguments into runs."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetKey

from dashtam_pipeline import runner
from dashtam_pipeline.assets.partitions import OBSERVATION_END_TAG, OBSERVATION_START_TAG
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.runner import SelectionError, plan_runs, resolve_selection
from dashtam_pipeline.settings import load_settings

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates


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
    # 49 sessions (New Year's Day, the 2025-01-09 closure, MLK and Presidents' Day and the
    # weekends are none), 31 per run; the range may start on a holiday, end on a Saturday
    assert ranges == [("2025-01-02", "2025-02-18"), ("2025-02-19", "2025-03-14")]
    with pytest.raises(SelectionError, match="after"):
        plan_runs(defs, keys, start="2025-03-15", end="2025-01-01")
    with pytest.raises(SelectionError, match="no trading day from 2025-03-15 to 2025-03-16"):
        plan_runs(defs, keys, start="2025-03-15", end="2025-03-16")


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


def test_the_series_per_backfill_run_is_a_setting(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("DASHTAM_FRED_SERIES", ",".join(f"GDP_{i}" for i in range(1, 61)))
    monkeypatch.setenv("DASHTAM_FRED_SERIES_PER_RUN", "40")
    defs = build_definitions(load_settings())
    plans = plan_runs(defs, resolve_selection(defs, "group:macro"))
    assert [(p.tags[PARTITION_RANGE_START], p.tags[PARTITION_RANGE_END]) for p in plans] == [
        ("GDP_1", "GDP_40"), ("GDP_41", "GDP_60")]
    for bad in ("0", "ten", "2.5"):
        monkeypatch.setenv("DASHTAM_FRED_SERIES_PER_RUN", bad)
        with pytest.raises(Exception, match="DASHTAM_FRED_SERIES_PER_RUN must be a whole "
                                            "number, at least 1"):
            load_settings()


def test_the_launch_mutation_is_valid_against_dagsters_graphql_schema() -> None:
    """CLI runs are created with this GraphQL document (``runner.launch_runs``): a Dagster
    upgrade that changes the mutation fails here, not in production."""
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    from dashtam_pipeline.runner import RunPlan, launch_document, launch_variables

    schema = create_schema().graphql_schema
    assert validate(schema, parse(launch_document(3))) == []
    plan = RunPlan([AssetKey(["market", "quotes"])], {"dagster/partition": "2026-11-20"}, "q")
    variables = launch_variables(plan)
    assert variables["selector"]["repositoryLocationName"] == "dashtam_pipeline"
    assert variables["selector"]["assetSelection"] == [{"path": ["market", "quotes"]}]
    assert {"key": "dagster/partition", "value": "2026-11-20"} in (
        variables["executionMetadata"]["tags"]
    )


def test_every_process_names_the_code_location_dashtam_pipeline() -> None:
    import tomllib
    from pathlib import Path

    import yaml

    from dashtam_pipeline.runner import CODE_LOCATION_NAME, WORKSPACE_YAML

    root = Path(__file__).resolve().parents[1]
    (entry,) = yaml.safe_load((root / "workspace.yaml").read_text())["load_from"]
    (generated,) = yaml.safe_load(WORKSPACE_YAML)["load_from"]
    assert entry["python_module"]["location_name"] == CODE_LOCATION_NAME == "dashtam_pipeline"
    assert generated["python_module"]["location_name"] == CODE_LOCATION_NAME
    assert generated["python_module"]["module_name"] == entry["python_module"]["module_name"]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["code_location_name"] == CODE_LOCATION_NAME


def test_a_pool_full_of_dead_runs_is_named(data_dir: object) -> None:
    """A run that cannot get a slot because ended runs (killed workers) still hold them:
    the CLI says which pool, which runs, and how the slots come back."""
    import uuid

    from dagster import DagsterRun, DagsterRunStatus

    from dashtam_pipeline.instance import get_instance
    from dashtam_pipeline.runner import dead_pool_holders

    with get_instance(load_settings()) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("provider_fmp", 1)
        dead = instance.add_run(
            DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()),
                       status=DagsterRunStatus.FAILURE)
        )
        assert dead_pool_holders(instance) is None  # nothing held yet
        storage.claim_concurrency_slot("provider_fmp", dead.run_id, "market__quotes")
        message = dead_pool_holders(instance)
        assert message is not None
        assert "pool provider_fmp is full" in message and dead.run_id in message
        assert "FAILURE" in message and "free_slots_after_run_end_seconds" in message


def test_the_demo_plans_every_asset_once_with_a_month_of_daily_history(defs) -> None:
    """One launch: the daily assets over the demo's window (their latest session included,
    not run a second time), every other asset once, the marts last."""
    from dashtam_pipeline.demo import demo_plans, recent_window

    plans = demo_plans(defs)
    _, first, last = recent_window()
    planned = [key for plan in plans for key in plan.asset_keys]
    assert sorted(planned) == sorted(resolve_selection(defs, None))  # each asset in one run
    daily = [p for p in plans if AssetKey(["market", "quotes"]) in p.asset_keys]
    assert len(daily) == 1 and daily[0].partitions[-1] == last
    assert daily[0].partitions[0] >= first and len(daily[0].partitions) > 1
    stages = [p.stage for p in plans]
    assert stages == sorted(stages) and stages[-1] == 1  # the marts after ingestion
