"""The code location loads, and its wiring is what the registry implies."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey, build_schedule_context

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.registry import Domain, Partitioning
from dashtam_pipeline.settings import load_settings

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

NY = ZoneInfo("America/New_York")


def test_definitions_validate_and_hold_every_asset(data_dir) -> None:
    defs = build_definitions(load_settings())
    defs.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.materializable_asset_keys}
    expected = {s.key.to_user_string() for s in ingestion_asset_specs()} | {
        "marts/holdings", "marts/daily_portfolio_value", "marts/net_worth",
        "marts/macro_monthly_panel"}
    assert keys == expected
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.group_name == key.path[0] and node.group_name in {d.value for d in Domain}
        assert node.description and node.owners == ["team:data-platform"]
    quotes = graph.get(AssetKey(["market", "quotes"]))
    assert quotes.partitions_def is not None
    assert {c.name for c in graph.get_check_keys_for_assets({quotes.key})} == {
        "valid_rows", "unique_keys", "not_stale"}
    bars = AssetKey(["market", "daily_bars"])
    assert {c.name for c in graph.get_check_keys_for_assets({bars})} == {
        "valid_rows", "unique_keys"}
    fred = graph.get(AssetKey(["macro", "fred_observations"]))
    assert list(fred.partitions_def.get_partition_keys())[:2] == ["GDP", "CPIAUCSL"]
    value_mart = graph.get(AssetKey(["marts", "daily_portfolio_value"]))
    parents = {k.to_user_string() for k in value_mart.parent_keys}
    assert {"market/daily_bars", "marts/holdings", "brokerage/schwab_positions",
            "brokerage/alpaca_positions"} <= parents


def test_jobs_per_domain(data_dir) -> None:
    defs = build_definitions(load_settings())
    for domain in ("market", "macro", "news", "marts"):
        assert defs.resolve_job_def(f"{domain}_job") is not None
    for provider in ("schwab", "alpaca", "chase_file"):  # a partitions definition each
        assert defs.resolve_job_def(f"brokerage_{provider}_job") is not None


def test_nightly_schedules_request_previous_trading_day(data_dir) -> None:
    defs = build_definitions(load_settings())
    # Monday 02:00 New York: the previous trading day is Friday.
    monday = dt.datetime(2026, 11, 23, 2, 0, tzinfo=NY)
    requested: set[str] = set()
    for name in ("nightly_daily", "nightly_fred", "nightly_snapshots"):
        schedule = defs.resolve_schedule_def(name)
        assert schedule.cron_schedule == "0 2 * * *"
        assert schedule.execution_timezone == "America/New_York"
        context = build_schedule_context(
            scheduled_execution_time=monday,
            repository_def=defs.get_repository_def(),
        )
        (request,) = schedule.evaluate_tick(context).run_requests
        assert request.run_key.startswith("nightly-2026-11-23-")
        job = defs.resolve_job_def(schedule.job_name)
        requested |= {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        if name == "nightly_daily":
            assert request.partition_key == "2026-11-20"
        if name == "nightly_fred":
            assert request.tags[PARTITION_RANGE_START] == "GDP"
            assert request.tags[PARTITION_RANGE_END] == "INDPRO"
    # the brokerage connections of each provider: the partitions in the instance then
    with get_instance(load_settings()) as instance:
        connections = ["c-1", "c-2"]
        instance.add_dynamic_partitions("schwab_connections", connections)
        for name in ("nightly_schwab_connections", "nightly_alpaca_connections"):
            schedule = defs.resolve_schedule_def(name)
            with build_schedule_context(  # closed: it must not outlive the instance
                instance=instance, scheduled_execution_time=monday,
                repository_def=defs.get_repository_def(),
            ) as context:
                requests = schedule.evaluate_tick(context).run_requests or []
            job = defs.resolve_job_def(schedule.job_name)
            requested |= {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
            if name == "nightly_alpaca_connections":
                assert requests == []  # no connection, no run
                continue
            (request,) = requests
            assert (request.tags[PARTITION_RANGE_START], request.tags[PARTITION_RANGE_END]) == (
                "c-1", "c-2")
    # every ingestion asset but the inbox-file imports, which their sensor runs
    expected = {s.key.to_user_string() for s in ingestion_asset_specs()
                if s.partitioning is not Partitioning.INBOX_FILE}
    assert requested == expected
    assert "brokerage/chase_file_transactions" not in requested
