"""marts_automation builds the marts from what landed: one day of daily bars is enough for
the portfolio value, which reads every day since 2023 and so, under
``AutomationCondition.eager()``, waited forever for days no nightly run fetches."""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    evaluate_automation_conditions,
)

from dashtam_pipeline.definitions import build_definitions

MARTS = {"marts/holdings", "marts/daily_portfolio_value", "marts/net_worth",
         "marts/macro_monthly_panel"}
LANDED = [
    ("market/daily_bars", "2026-11-20"),
    ("brokerage/schwab_positions", "connection-1"),  # one connection's partition
    ("macro/fred_series", "GDP"),
    ("macro/fred_observations", "GDP"),
]


def requested(result: object) -> set[str]:
    return {
        r.key.to_user_string() for r in result.results if r.true_subset.size  # type: ignore[attr-defined]
    }


def test_marts_build_from_what_landed_and_not_before(data_dir: Path) -> None:
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert requested(first) == set()  # nothing landed: no empty marts
        instance.add_dynamic_partitions("schwab_connections", ["connection-1", "connection-2"])
        for key, partition in LANDED:
            instance.report_runless_asset_event(
                AssetMaterialization(AssetKey.from_user_string(key), partition=partition)
            )
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert requested(second) == MARTS


def land(instance: DagsterInstance, key: str, partition: str | None = None) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(AssetKey.from_user_string(key), partition=partition)
    )


def test_an_update_landing_while_a_mart_builds_is_not_swallowed(data_dir: Path) -> None:
    """A mart run requested from earlier data finishes *after* the night's upstream landed:
    the mart's own update must not count as having handled that newer upstream data."""
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
        land(instance, "macro/fred_observations", "GDP")
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert "marts/macro_monthly_panel" in requested(result)  # the mart run starts
        land(instance, "macro/fred_observations", "GDP")  # tonight's data lands meanwhile
        land(instance, "marts/macro_monthly_panel")  # ...and the older mart run finishes
        result = evaluate_automation_conditions(defs=defs, instance=instance,
                                                cursor=result.cursor)
        assert "marts/macro_monthly_panel" in requested(result)
        land(instance, "marts/macro_monthly_panel")  # the rebuild with tonight's data
        result = evaluate_automation_conditions(defs=defs, instance=instance,
                                                cursor=result.cursor)
        assert "marts/macro_monthly_panel" not in requested(result)  # and no more
