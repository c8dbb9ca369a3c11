"""Jobs (one per domain), the nightly schedule, and the automation that keeps marts fresh.

The nightly schedule (02:00 America/New_York) asks for every ingestion asset: daily
assets for the previous trading day, FRED for every configured series in one run, the
rest unpartitioned. Marts follow their upstreams through an eager automation condition,
so they are rebuilt once new data lands instead of racing the ingestion runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    ScheduleEvaluationContext,
    UnresolvedAssetJobDefinition,
    define_asset_job,
    schedule,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import MARKET_TZ, previous_trading_day
from dashtam_pipeline.registry import Domain, Partitioning

PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def domain_jobs() -> list[UnresolvedAssetJobDefinition]:
    """``market_job``, ``macro_job``, ``news_job``, ``brokerage_job``, ``marts_job``."""
    return [
        define_asset_job(
            f"{domain.value}_job",
            selection=AssetSelection.groups(domain.value),
            description=f"Materialize every asset of the {domain.value} group.",
        )
        for domain in (Domain.MARKET, Domain.MACRO, Domain.NEWS, Domain.BROKERAGE, Domain.MARTS)
    ]


def nightly_run_requests(
    scheduled_for: dt.datetime, fred_series: tuple[str, ...]
) -> Iterator[RunRequest]:
    """The runs of one nightly tick, one per partitioning of the ingestion assets."""
    day = previous_trading_day(scheduled_for.astimezone(MARKET_TZ).date()).isoformat()
    stamp = scheduled_for.astimezone(MARKET_TZ).date().isoformat()
    by_partitioning: dict[Partitioning, list] = {}
    for spec in ingestion_asset_specs():
        by_partitioning.setdefault(spec.dataset.partitioning, []).append(spec.key)
    for partitioning, keys in by_partitioning.items():
        run_key = f"nightly-{stamp}-{partitioning.value}"
        if partitioning is Partitioning.TRADING_DAY:
            yield RunRequest(run_key=run_key, asset_selection=keys, partition_key=day)
        elif partitioning is Partitioning.FRED_SERIES:
            if fred_series:
                yield RunRequest(
                    run_key=run_key,
                    asset_selection=keys,
                    tags={PARTITION_RANGE_START: fred_series[0],
                          PARTITION_RANGE_END: fred_series[-1]},
                )
        else:
            yield RunRequest(run_key=run_key, asset_selection=keys)


def build_nightly_schedule(fred_series: tuple[str, ...]):  # type: ignore[no-untyped-def]
    @schedule(
        name="nightly",
        cron_schedule="0 2 * * *",
        execution_timezone="America/New_York",
        target=AssetSelection.all() - AssetSelection.groups(Domain.MARTS.value),
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            "02:00 New York: every ingestion asset for the previous trading day (FRED: all "
            "configured series in one run). Marts follow via the marts automation sensor."
        ),
    )
    def nightly(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        scheduled = context.scheduled_execution_time or dt.datetime.now(tz=MARKET_TZ)
        yield from nightly_run_requests(scheduled, fred_series)

    return nightly


marts_automation = AutomationConditionSensorDefinition(
    "marts_automation",
    target=AssetSelection.groups(Domain.MARTS.value),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Rebuilds the marts once their upstream ingestion assets have new data.",
)

__all__ = ["JobDefinition", "build_nightly_schedule", "domain_jobs", "marts_automation"]
