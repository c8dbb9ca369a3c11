"""Jobs (one per domain), the nightly schedule, and the automation that keeps marts fresh.

The nightly schedules (02:00 America/New_York) ask for every ingestion asset: daily
assets for the previous trading day, FRED for every configured series in one run, each
brokerage provider's connections ``CONNECTIONS_PER_RUN`` to a run, the rest
unpartitioned. Marts follow their upstreams through an automation condition
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
from dashtam_pipeline.assets.partitions import (
    CONNECTIONS_PER_RUN,
    MARKET_TZ,
    connection_partitions,
    previous_trading_day,
)
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
    Partitioning.CONNECTION: "connections",
}


def domain_jobs() -> list[Any]:
    """``market_job``, ``macro_job``, ``news_job``, ``marts_job``, and for brokerage one job
    per provider (``brokerage_schwab_job``, ``brokerage_alpaca_job``,
    ``brokerage_chase_file_job``): each provider's brokerage assets have partitions of
    their own (its connections, its inbox files), and a Dagster job runs one partitions
    definition."""
    jobs = [
        define_asset_job(
            f"{domain.value}_job",
            selection=AssetSelection.groups(domain.value),
            description=f"Materialize every asset of the {domain.value} group.",
        )
        for domain in (Domain.MARKET, Domain.MACRO, Domain.NEWS, Domain.MARTS)
    ]
    brokerage: dict[str, list[AssetKey]] = {}
    for spec in ingestion_asset_specs():
        if spec.dataset.domain is Domain.BROKERAGE:
            brokerage.setdefault(spec.providers[0].slug.value, []).append(spec.key)
    jobs.extend(
        define_asset_job(
            f"brokerage_{slug}_job",
            selection=AssetSelection.assets(*keys),
            description=f"Materialize every brokerage asset of {slug}, for the chosen "
            "partitions (connections, or inbox files).",
        )
        for slug, keys in sorted(brokerage.items())
    )
    return jobs


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


def nightly_connection_requests(
    name: str, scheduled_for: dt.datetime, connection_ids: list[str]
) -> list[RunRequest]:
    """The nightly runs of one provider's connection partitions (``name``): consecutive
    connections, ``CONNECTIONS_PER_RUN`` to a run, as partition ranges."""
    local = scheduled_for.astimezone(MARKET_TZ).date()
    requests = []
    for index, start in enumerate(range(0, len(connection_ids), CONNECTIONS_PER_RUN), 1):
        chunk = connection_ids[start : start + CONNECTIONS_PER_RUN]
        run_key = f"nightly-{local.isoformat()}-{name}-{index}"
        if len(chunk) == 1:
            requests.append(RunRequest(run_key=run_key, partition_key=chunk[0]))
        else:
            requests.append(RunRequest(run_key=run_key, tags={
                PARTITION_RANGE_START: chunk[0], PARTITION_RANGE_END: chunk[-1]}))
    return requests


def build_nightly_schedules(fred_series: tuple[str, ...]) -> list[ScheduleDefinition]:
    """02:00 New York, one schedule (and job) per partitions definition of the ingestion
    assets: daily assets for the previous trading day, FRED for every configured series in
    one run, each brokerage provider's connections (``nightly_schwab_connections``: the
    partitions in the instance at that moment, kept in step by the connection partitions
    sensor), snapshots (fundamentals, ...) unpartitioned. Dagster runs one partitions
    definition per run, hence several schedules on the same clock."""
    keys_by_schedule: dict[str, tuple[Partitioning, list[AssetKey]]] = {}
    for spec in ingestion_asset_specs():
        if spec.partitioning not in NIGHTLY_NAMES:  # inbox files arrive through their sensor
            continue
        name = f"nightly_{NIGHTLY_NAMES[spec.partitioning]}"
        if spec.partitioning is Partitioning.CONNECTION:
            name = f"nightly_{connection_partitions(spec.providers[0].slug.value).name}"
        keys_by_schedule.setdefault(name, (spec.partitioning, []))[1].append(spec.key)
    schedules = []
    for name, (partitioning, keys) in keys_by_schedule.items():
        what = name.removeprefix("nightly_")
        job = define_asset_job(
            f"{name}_job",
            selection=AssetSelection.assets(*keys),
            description=f"The nightly ingestion of the {what.replace('_', ' ')} assets.",
        )

        def evaluate(
            context: ScheduleEvaluationContext,
            _partitioning: Partitioning = partitioning,
            _partitions: str = what,
        ) -> Iterator[RunRequest]:
            scheduled = context.scheduled_execution_time or dt.datetime.now(tz=MARKET_TZ)
            if _partitioning is Partitioning.CONNECTION:
                ids = context.instance.get_dynamic_partitions(_partitions)
                yield from nightly_connection_requests(_partitions, scheduled, ids)
                return
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

