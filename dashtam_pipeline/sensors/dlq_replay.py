"""The DLQ replay sensor: a provider's pending dead letters are replayed once it is healthy.

A failed partition waits in the dead-letter queue (``resilience/dlq.py``) until the
provider that sank it can take the work again; this sensor is what notices. It never runs
anything itself: it returns ``RunRequest``s (the failed assets, one partition per run) that
the daemon launches like any other run, so replays show in the UI, take the provider's
pool slots and land through the same idempotent upserts. A replayed partition that lands
resolves its entry by itself (the asset factory calls ``dlq.resolve``); one that fails is
counted by the run-failure sensor (``record_replay_failure``), which abandons the entry
after ``DASHTAM_DLQ_MAX_REPLAYS``. That is also how Dagster's "re-execute from failure"
is obtained here: a sensor cannot request a re-execution of a run (``RunRequest`` has no
parent run), and the failed step of an ingestion run *is* its failed asset partitions,
which are exactly what the dead letters name; marts follow through their automation.

What a tick replays, per provider (``sensors/health.py``):

* only entries whose error is transient (outage, breaker open, rate limit, timeout,
  quota); permanent ones (auth, bad input, schema) need a person and are left alone;
* only once the run that recorded them is over and Dagster's own run retry will not
  take it (``dagster/will_retry``), so the two never replay the same failure;
* nothing while the breaker is open or the daily quota is spent; one run (the probe the
  half-open breaker will let through) when its timeout has passed; everything when closed.

Each request's run key names its entries, the run that failed them and their replay
count (``dlq-replay|12@<run id>#0``), and the cursor keeps that key per entry until the
entry settles, so one failure is never replayed twice; the next failure of the replay
changes the run id and count, hence the key. A replay run that ends without landing the
partition and without failing (the asset was skipped, the run was canceled) is counted
here as a failed replay, so no entry waits forever.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    partition_loading_context,
    sensor,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.dagster_names import WILL_RETRY_TAG, AssetGraph
from dashtam_pipeline.errors import TRANSIENT_KINDS
from dashtam_pipeline.resilience.breaker import Clock, utc_now
from dashtam_pipeline.resilience.dlq import (
    PENDING,
    DeadLetter,
    DeadLetterError,
    DeadLetterQueue,
)
from dashtam_pipeline.resources import (
    ClockResource,
    StateStoreResource,
    StorageResource,
    settings_from,
)
from dashtam_pipeline.sensors.health import PROBE_DUE, provider_health_now
from dashtam_pipeline.sensors.results import sensor_result
from dashtam_pipeline.settings import Settings

SENSOR_NAME = "dlq_replay_sensor"
MINIMUM_INTERVAL_SECONDS = 60

#: Tags of a replay run, read back by the run-failure sensor and by people in the UI.
ENTRIES_TAG = "dashtam/dlq_entries"  # "12,13": the dead letters this run replays
REPLAY_COUNT_TAG = "dashtam/replay_count"  # which replay of these entries this is (1-based)
REPLAY_OF_TAG = "dashtam/replay_of"  # the run(s) whose failure recorded the entries
REPLAY_KEY_TAG = "dashtam/replay_key"  # the run key, to find the run from the cursor
PROVIDER_TAG = "dashtam/provider"
LAUNCHED_BY_TAG = "dashtam/launched_by"

TRANSIENT_KIND_VALUES = frozenset(kind.value for kind in TRANSIENT_KINDS)
_SETTLED_WITHOUT_FAILURE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.CANCELED)


def attempt_key(entry: DeadLetter) -> str:
    """One failure of one entry: its id, the run that failed it last, its replay count."""
    return f"{entry.id}@{entry.run_id or '-'}#{entry.replay_count}"


def replay_run_key(entries: Sequence[DeadLetter]) -> str:
    return "dlq-replay|" + "|".join(attempt_key(e) for e in entries)


@dataclass
class ReplayTick:
    """What one evaluation decided: the runs to request, the new cursor, and why the
    rest waits (one line per provider or entry, for the tick's log and skip reason)."""

    run_requests: list[RunRequest] = field(default_factory=list)
    in_flight: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def cursor(self) -> str:
        return json.dumps({"in_flight": {str(k): v for k, v in sorted(self.in_flight.items())}})


def parse_cursor(cursor: str | None) -> dict[int, str]:
    """Entry id → run key of the replay requested for it (an unreadable cursor is empty:
    the run keys still keep the daemon from launching a replay twice)."""
    if not cursor:
        return {}
    try:
        raw = json.loads(cursor).get("in_flight", {})
        return {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError):
        return {}


def plan_replays(
    instance: DagsterInstance,
    asset_graph: AssetGraph,
    settings: Settings,
    cursor: str | None,
    *,
    clock: Clock = utc_now,
) -> ReplayTick:
    """Decide one tick of the DLQ replay sensor (see the module docstring)."""
    queue = DeadLetterQueue.from_settings(settings)
    tick = ReplayTick()
    requested = parse_cursor(cursor)
    pending = queue.list(status=PENDING)
    if _settle_runs_that_did_not_land(instance, queue, settings, pending, requested, tick):
        pending = queue.list(status=PENDING)

    in_flight = {
        e.id: requested[e.id]
        for e in pending
        if e.id in requested and attempt_key(e) in requested[e.id].split("|")[1:]
    }
    tick.in_flight.update(in_flight)
    by_provider: dict[str, list[DeadLetter]] = {}
    for entry in pending:
        if entry.id in in_flight or not _replayable(instance, entry, settings, tick):
            continue
        by_provider.setdefault(entry.provider, []).append(entry)

    ingestion_keys = replayable_asset_keys()
    for provider, entries in by_provider.items():
        health = provider_health_now(settings, provider, clock=clock)
        if not health.can_replay:
            tick.notes.append(
                f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
                f"of {provider} wait: {health.reason}"
            )
            continue
        groups = _groups(instance, asset_graph, ingestion_keys, queue, settings, entries, tick)
        if health.status == PROBE_DUE:
            if any(e.provider == provider for e in pending if e.id in in_flight):
                tick.notes.append(f"{provider}: a replay is in flight as the breaker's probe")
                continue
            groups = groups[:1]
            tick.notes.append(f"{health.reason}: replaying one run as the probe")
        for group in groups:
            request = _run_request(provider, group)
            tick.run_requests.append(request)
            tick.in_flight.update({e.id: str(request.run_key) for e in group.entries})
    return tick


@dataclass
class _Group:
    """Entries of one provider replayed by one run: same partition, same partitioning."""

    partition_key: str | None
    entries: list[DeadLetter]


def _replayable(
    instance: DagsterInstance, entry: DeadLetter, settings: Settings, tick: ReplayTick
) -> bool:
    """Transient, within its replay budget, and its failing run is over for good."""
    if entry.error_kind not in TRANSIENT_KIND_VALUES:
        return False  # permanent: the run-failure sensor abandons it, a person decides
    if entry.replay_count >= settings.dashtam_dlq_max_replays:
        return False  # record_replay_failure abandons at the limit; never exceed it
    run = instance.get_run_by_id(entry.run_id) if entry.run_id else None
    if run is None:
        return True  # recorded outside this instance (another DAGSTER_HOME, a test)
    if not run.is_finished:
        tick.notes.append(f"entry {entry.id} waits for run {run.run_id} to finish")
        return False
    if run.tags.get(WILL_RETRY_TAG) == "true":
        tick.notes.append(f"entry {entry.id}: Dagster retries run {run.run_id} itself")
        return False
    return True


def _groups(
    instance: DagsterInstance,
    asset_graph: AssetGraph,
    ingestion_keys: frozenset[AssetKey],
    queue: DeadLetterQueue,
    settings: Settings,
    entries: Sequence[DeadLetter],
    tick: ReplayTick,
) -> list[_Group]:
    """One group per (partitioning, partition key), oldest entry first; entries whose
    asset or partition no longer exists fail their replay with that reason instead."""
    groups: dict[tuple[Any, str | None], _Group] = {}
    for entry in entries:
        problem, partitions_def = _target_problem(instance, asset_graph, ingestion_keys, entry)
        if problem is not None:
            _count_failed_replay(queue, settings, entry.id, problem, tick)
            continue
        key = (partitions_def, entry.partition_key)
        groups.setdefault(key, _Group(entry.partition_key, [])).entries.append(entry)
    return list(groups.values())


def _target_problem(
    instance: DagsterInstance,
    asset_graph: AssetGraph,
    ingestion_keys: frozenset[AssetKey],
    entry: DeadLetter,
) -> tuple[str | None, PartitionsDefinition | None]:
    """Why the entry's asset partition cannot be requested any more, if it cannot."""
    key = AssetKey.from_user_string(entry.asset_key)
    if key not in asset_graph.materializable_asset_keys or key not in ingestion_keys:
        return f"asset {entry.asset_key} is no longer an ingestion asset", None
    partitions_def = asset_graph.get(key).partitions_def
    partition = entry.partition_key
    if partitions_def is None:
        problem = (
            None
            if partition is None
            else (f"asset {entry.asset_key} has no partitions, the entry names {partition}")
        )
        return problem, None
    if partition is None:
        return f"asset {entry.asset_key} is partitioned, the entry names no partition", None
    with partition_loading_context(dynamic_partitions_store=instance):
        if not partitions_def.has_partition_key(partition):
            return f"{partition} is no longer a partition of asset {entry.asset_key}", None
    return None, partitions_def


def _run_request(provider: str, group: _Group) -> RunRequest:
    entries = group.entries
    run_key = replay_run_key(entries)
    failed_runs = sorted({e.run_id for e in entries if e.run_id})
    return RunRequest(
        run_key=run_key,
        asset_selection=sorted(
            {AssetKey.from_user_string(e.asset_key) for e in entries},
            key=lambda k: k.to_user_string(),
        ),
        partition_key=group.partition_key,
        tags={
            ENTRIES_TAG: ",".join(str(e.id) for e in entries),
            REPLAY_COUNT_TAG: str(max(e.replay_count for e in entries) + 1),
            REPLAY_OF_TAG: ",".join(failed_runs),
            REPLAY_KEY_TAG: run_key,
            PROVIDER_TAG: provider,
            LAUNCHED_BY_TAG: SENSOR_NAME,
        },
    )


def _settle_runs_that_did_not_land(
    instance: DagsterInstance,
    queue: DeadLetterQueue,
    settings: Settings,
    pending: Sequence[DeadLetter],
    requested: Mapping[int, str],
    tick: ReplayTick,
) -> bool:
    """Count a failed replay for entries whose replay run succeeded or was canceled but
    left them pending (a failed run is the run-failure sensor's to count). True if any."""
    settled = False
    runs: dict[str, Any] = {}
    for entry in pending:
        run_key = requested.get(entry.id)
        if run_key is None or attempt_key(entry) not in run_key.split("|")[1:]:
            continue
        if run_key not in runs:
            found = instance.get_runs(RunsFilter(tags={REPLAY_KEY_TAG: run_key}), limit=1)
            runs[run_key] = found[0] if found else None
        run = runs[run_key]
        if run is None or run.status not in _SETTLED_WITHOUT_FAILURE:
            continue
        reason = (
            f"replay run {run.run_id} ended {run.status.value.lower()} without landing "
            f"{entry.asset_key} [{entry.partition_key}]"
        )
        _count_failed_replay(queue, settings, entry.id, reason, tick)
        settled = True
    return settled


def _count_failed_replay(
    queue: DeadLetterQueue, settings: Settings, entry_id: int, reason: str, tick: ReplayTick
) -> None:
    try:
        stored = queue.record_replay_failure(entry_id, reason, settings.dashtam_dlq_max_replays)
    except DeadLetterError:
        return  # settled meanwhile (landed by another run): nothing to count
    tick.notes.append(f"entry {entry_id}: {stored.abandoned_reason or reason}")


def replayable_asset_keys() -> frozenset[AssetKey]:
    """The ingestion assets: the only ones with dead letters (marts follow their upstreams
    through their automation condition once the replayed partitions land)."""
    return frozenset(spec.key for spec in ingestion_asset_specs())


def asset_graph_of(
    context: SensorEvaluationContext | RunStatusSensorContext, settings: Settings
) -> AssetGraph:
    """The code location's asset graph (the daemon always passes it; a test may not)."""
    if context.repository_def is not None:
        return context.repository_def.asset_graph
    from dashtam_pipeline.definitions import build_definitions  # not at import: a cycle

    return build_definitions(settings).resolve_asset_graph()


def build_dlq_replay_sensor(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> SensorDefinition:
    """The sensor, reading the settings in force at each tick; the ``clock`` resource
    decides breaker timeouts and quota resets (tests replace it)."""

    @sensor(
        name=SENSOR_NAME,
        asset_selection=AssetSelection.assets(*sorted(replayable_asset_keys(), key=str)),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Replays the pending dead letters of a provider once it is healthy: transient "
            "failures only, one probe run while its breaker is half-open, all once closed, "
            "nothing while open or out of daily quota. Bounded by DASHTAM_DLQ_MAX_REPLAYS."
        ),
    )
    def dlq_replay_sensor(
        context: SensorEvaluationContext, clock: ClockResource, storage: StorageResource,
        state: StateStoreResource,
    ) -> SensorResult:
        settings = settings_from(storage, state)
        tick = plan_replays(
            context.instance,
            asset_graph_of(context, settings),
            settings,
            context.cursor,
            clock=clock.now,
        )
        for note in tick.notes:
            context.log.info(note)
        return sensor_result(
            tick.run_requests, tick.notes, tick.cursor, "no pending dead letter to replay"
        )

    return dlq_replay_sensor
