"""Jobs (one per domain), the nightly schedule, and the automation that keeps marts fresh.

The nightly schedules (02:00 America/New_York) ask for every ingestion asset: daily
assets for the previous trading day, FRED for every configured series in one run, the
rest unpartitioned. Marts follow their upstreams through an automation condition
(``assets/marts.py``): rebuilt once new data lands and the ingestion runs are over, from
whatever landed, never waiting for partitions that will not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import MARKET_TZ, previous_trading_day
from dashtam_pipeline.dagster_names import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.registry import Domain, Partitioning

__all__ = ["PARTITION_RANGE_END", "PARTITION_RANGE_START"]

NIGHTLY_CRON = "0 2 * * *"
#: The nightly schedule of each partitioning. File imports have none: their inbox
#: sensor imports each file when it arrives.
NIGHTLY_NAMES = {
    Partitioning.TRADING_DAY: "daily",
    Partitioning.FRED_SERIES: "fred",
    Partitioning.NONE: "snapshots",
}


def domain_jobs() -> list[Any]:
    """``market_job``, ``macro_job``, ``news_job``, ``brokerage_job``, ``marts_job``."""
    return [
        define_asset_job(
            f"{domain.value}_job",
            selection=AssetSelection.groups(domain.value),
            description=f"Materialize every asset of the {domain.value} group.",
        )
        for domain in (Domain.MARKET, Domain.MACRO, Domain.NEWS, Domain.BROKERAGE, Domain.MARTS)
    ]


def nightly_run_request(
    partitioning: Partitioning,
    scheduled_for: dt.datetime,
    fred_series: tuple[str, ...],
) -> RunRequest | None:
    """The run of one nightly tick for the ingestion assets of one partitioning."""
    local = scheduled_for.astimezone(MARKET_TZ).date()
    run_key = f"nightly-{local.isoformat()}-{partitioning.value}"
    if partitioning is Partitioning.TRADING_DAY:
        return RunRequest(run_key=run_key, partition_key=previous_trading_day(local).isoformat())
    if partitioning is Partitioning.FRED_SERIES:
        if not fred_series:
            return None
        return RunRequest(
            run_key=run_key,
            tags={PARTITION_RANGE_START: fred_series[0], PARTITION_RANGE_END: fred_series[-1]},
        )
    return RunRequest(run_key=run_key)


def build_nightly_schedules(fred_series: tuple[str, ...]) -> list[ScheduleDefinition]:
    """02:00 New York, one schedule (and job) per partitioning of the ingestion assets:
    daily assets for the previous trading day, FRED for every configured series in one
    run, snapshots (fundamentals, brokerage, ...) unpartitioned. Dagster runs one
    partitioning per run, hence three schedules on the same clock."""
    keys_by_partitioning: dict[Partitioning, list[AssetKey]] = {}
    for spec in ingestion_asset_specs():
        if spec.partitioning in NIGHTLY_NAMES:  # inbox files arrive through their sensor
            keys_by_partitioning.setdefault(spec.partitioning, []).append(spec.key)
    schedules = []
    for partitioning, keys in keys_by_partitioning.items():
        name = f"nightly_{NIGHTLY_NAMES[partitioning]}"
        job = define_asset_job(
            f"{name}_job",
            selection=AssetSelection.assets(*keys),
            description=f"The nightly ingestion of the {NIGHTLY_NAMES[partitioning]} assets.",
        )

        def evaluate(
            context: ScheduleEvaluationContext, _partitioning: Partitioning = partitioning
        ) -> Iterator[RunRequest]:
            scheduled = context.scheduled_execution_time or dt.datetime.now(tz=MARKET_TZ)
            request = nightly_run_request(_partitioning, scheduled, fred_series)
            if request is not None:
                yield request

        schedules.append(
            ScheduleDefinition(
                name=name,
                cron_schedule=NIGHTLY_CRON,
                execution_timezone="America/New_York",
                job=job,
                execution_fn=evaluate,
                default_status=DefaultScheduleStatus.RUNNING,
                description=(
                    f"02:00 New York: {', '.join(k.to_user_string() for k in keys)}. Marts "
                    "follow through the marts_automation sensor."
                ),
            )
        )
    return schedules


marts_automation = AutomationConditionSensorDefinition(
    "marts_automation",
    target=AssetSelection.groups(Domain.MARTS.value),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Rebuilds the marts once their upstream ingestion assets have new data.",
)

