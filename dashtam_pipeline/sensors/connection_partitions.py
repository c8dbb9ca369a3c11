"""The connection partitions sensor: brokerage partitions follow the connection repository.

A brokerage API asset has one partition per connection (``assets.partitions
.connection_partitions``, keyed by connection id). The Dashtam app and ``dashtam connect``
write connections to the repository, not to Dagster, so on each tick
(``plan_partition_sync``) this sensor, for every provider whose assets are partitioned
by connection:

* adds a partition for each connection a sync covers (every status but DISCONNECTED:
  an EXPIRED one stays, so its runs show the skip and the reconnect command);
* deletes the partition of a connection DISCONNECTED or forgotten (``dashtam forget``):
  it leaves the nightly set and the UI's partition list; its rows were erased or stay as
  history;
* requests a first sync of each ACTIVE connection none of whose assets has landed yet,
  ``CONNECTIONS_PER_RUN`` connections to a run, so a connection made at 10:00 is in the
  warehouse minutes later instead of after the next nightly run (a connection made
  PENDING gets it once it turns ACTIVE).

The cursor remembers the connections whose first sync was requested, so a tick does not
ask again while that run is queued or running; a failed first sync is left to the
run-failure and dead-letter sensors, and the nightly run. ``dashtam materialize``
registers the partitions with the same code (``register_connections``) before it plans,
so a run right after ``dashtam connect`` covers the new connection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import CONNECTIONS_PER_RUN, connection_partitions
from dashtam_pipeline.connections import syncable_connections
from dashtam_pipeline.dagster_names import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.domain.provider_connection import ConnectionStatus
from dashtam_pipeline.registry import Partitioning, ProviderSlug
from dashtam_pipeline.resources import StateStoreResource, StorageResource, settings_from
from dashtam_pipeline.sensors.dlq_replay import LAUNCHED_BY_TAG, PROVIDER_TAG
from dashtam_pipeline.settings import Settings, load_settings

SENSOR_NAME = "connection_partitions_sensor"
MINIMUM_INTERVAL_SECONDS = 30
FIRST_SYNC_TAG = "dashtam/first_sync"  # how many connections the run syncs for the first time


def connection_assets() -> dict[ProviderSlug, list[AssetKey]]:
    """The assets partitioned by connection, per provider (read from the registry)."""
    assets: dict[ProviderSlug, list[AssetKey]] = {}
    for spec in ingestion_asset_specs():
        if spec.partitioning is Partitioning.CONNECTION:
            assets.setdefault(spec.providers[0].slug, []).append(spec.key)
    return {slug: sorted(keys, key=AssetKey.to_user_string) for slug, keys in
            sorted(assets.items())}


def connection_partitions_names() -> list[str]:
    """``schwab_connections``, ``alpaca_connections``: one per provider in
    ``connection_assets``."""
    return [connection_partitions(slug.value).name or "" for slug in connection_assets()]


@dataclass
class PartitionSync:
    """One provider's partitions compared with its connections."""

    provider: ProviderSlug
    partitions_name: str
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: ACTIVE connections whose assets have never landed, in repository order.
    first_sync: list[str] = field(default_factory=list)


def plan_partition_sync(
    instance: DagsterInstance,
    settings: Settings,
    requested: frozenset[str] = frozenset(),
) -> list[PartitionSync]:
    """What each provider's connection partitions lack or hold too many of, and which
    connections want a first sync (not the ``requested`` ones: asked for already)."""
    plans = []
    for slug, keys in connection_assets().items():
        name = connection_partitions(slug.value).name or ""
        registered = instance.get_dynamic_partitions(name)
        connections = syncable_connections(settings, slug)
        wanted = [str(c.id) for c in connections]
        have, want = set(registered), set(wanted)
        landed = set.intersection(
            *(set(instance.get_materialized_partitions(key)) for key in keys))
        plans.append(PartitionSync(
            provider=slug,
            partitions_name=name,
            added=[k for k in wanted if k not in have],
            deleted=[k for k in registered if k not in want],
            first_sync=[
                str(c.id) for c in connections
                if c.status is ConnectionStatus.ACTIVE
                and str(c.id) not in landed and str(c.id) not in requested
            ],
        ))
    return plans


def register_connections(instance: DagsterInstance, settings: Settings | None = None) -> None:
    """Bring every provider's connection partitions in step with the repository now (for
    ``dashtam materialize``/``demo``, which then plan runs over them)."""
    for plan in plan_partition_sync(instance, settings or load_settings()):
        if plan.added:
            instance.add_dynamic_partitions(plan.partitions_name, plan.added)
        for key in plan.deleted:
            instance.delete_dynamic_partition(plan.partitions_name, key)


def contiguous_chunks(wanted: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """``wanted`` cut into runs of consecutive partitions of ``order`` (a dynamic
    partitioning's insertion order), at most ``CONNECTIONS_PER_RUN`` each: a run names a
    range, and a range must cover exactly the connections it means to sync."""
    want = set(wanted)
    chunks: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in want and len(current) < CONNECTIONS_PER_RUN:
            current.append(key)
            continue
        if current:
            chunks.append(current)
        current = [key] if key in want else []
    if current:
        chunks.append(current)
    return chunks


def first_sync_requests(
    plan: PartitionSync, keys: Sequence[AssetKey], order: Sequence[str]
) -> list[RunRequest]:
    """The first-sync runs of one provider, a range of consecutive partitions each, the
    run key naming exactly which connections (so a repeated request is one run)."""
    requests = []
    for chunk in contiguous_chunks(plan.first_sync, order):
        digest = hashlib.sha256(",".join(chunk).encode()).hexdigest()[:16]
        tags = {PROVIDER_TAG: plan.provider.value, FIRST_SYNC_TAG: str(len(chunk)),
                LAUNCHED_BY_TAG: SENSOR_NAME}
        if len(chunk) > 1:
            tags |= {PARTITION_RANGE_START: chunk[0], PARTITION_RANGE_END: chunk[-1]}
        requests.append(RunRequest(
            run_key=f"first-sync-{plan.provider.value}-{digest}",
            asset_selection=list(keys),
            partition_key=chunk[0] if len(chunk) == 1 else None,
            tags=tags,
        ))
    return requests


def read_requested(cursor: str | None) -> frozenset[str]:
    """The connections whose first sync the sensor requested (an unreadable cursor is
    none: the materialization check still keeps a landed connection from a second one)."""
    try:
        return frozenset(json.loads(cursor or "{}").get("first_sync_requested", []))
    except (ValueError, AttributeError, TypeError):
        return frozenset()


def evaluate_tick(
    instance: DagsterInstance, settings: Settings, cursor: str | None
) -> SensorResult | SkipReason:
    """One tick: partition additions and deletions, first-sync runs, the new cursor.

    Additions are applied before the runs launch (Dagster's order for a ``SensorResult``),
    so a run range over connections just added is valid.
    """
    requested = read_requested(cursor)
    plans = plan_partition_sync(instance, settings, requested)
    assets = connection_assets()
    partition_requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    runs: list[RunRequest] = []
    kept: set[str] = set()
    for plan in plans:
        if plan.added:
            partition_requests.append(
                AddDynamicPartitionsRequest(plan.partitions_name, plan.added))
        if plan.deleted:
            partition_requests.append(
                DeleteDynamicPartitionsRequest(plan.partitions_name, plan.deleted))
        registered = instance.get_dynamic_partitions(plan.partitions_name)
        # the partitions' order once this tick's requests are applied (insertion order)
        order = [k for k in registered if k not in set(plan.deleted)] + plan.added
        runs.extend(first_sync_requests(plan, assets[plan.provider], order))
        kept |= (requested & set(order)) | set(plan.first_sync)
    if not partition_requests and not runs:
        return SkipReason("every connection partition is in step with the connections")
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps({"first_sync_requested": sorted(kept)}),
    )


def build_connection_partitions_sensor(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> SensorDefinition:
    """The sensor over every provider's connection-partitioned assets."""
    selection = AssetSelection.assets(
        *(key for keys in connection_assets().values() for key in keys))

    @sensor(
        name=SENSOR_NAME,
        asset_selection=selection,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Keeps each brokerage provider's connection partitions in step with the "
            "connection repository (a partition per connection, removed when it is "
            "disconnected or forgotten) and requests a first sync of each new ACTIVE "
            "connection."
        ),
    )
    def connection_partitions_sensor(
        context: SensorEvaluationContext, storage: StorageResource, state: StateStoreResource
    ) -> SensorResult | SkipReason:
        result = evaluate_tick(context.instance, settings_from(storage, state), context.cursor)
        if isinstance(result, SensorResult):
            for request in result.dynamic_partitions_requests or []:
                verb = "added" if isinstance(request, AddDynamicPartitionsRequest) else "deleted"
                context.log.info(f"{request.partitions_def_name}: {verb} "
                                 f"{len(request.partition_keys)} connection partition(s)")
        return result

    return connection_partitions_sensor
