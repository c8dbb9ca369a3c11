"""The run-failure sensor: every failed run is classified, and its failed partitions are
either left for replay (transient) or abandoned with their reason (permanent).

Three mechanisms share failure recovery, each for what it knows best:

* the HTTP layer retries a call inside the step (backoff, ``Retry-After``);
* Dagster's run retries (``run_retries`` in ``deploy/dagster.yaml`` and ``instance.py``)
  re-launch a run that died outside the asset code (a killed process, a lost worker),
  from failure;
* this sensor and the DLQ replay sensor handle a step that failed *because of the
  provider*, where the right moment to retry depends on the provider's breaker and quota.

A failed run that Dagster will retry (``dagster/will_retry=true``) is left alone: the retry
settles it, and its own failure reaches this sensor. Otherwise each failed step is read
from the run's event log. An ingestion asset that failed on a provider raised
``dagster.Failure`` with ``error_kind`` in its metadata and has already put one dead letter
per partition in the queue (``assets/factory.py``):

* transient kinds (``errors.TRANSIENT_KINDS``: unavailable, rate limited, malformed,
  circuit open, quota exhausted) leave those entries pending: the DLQ replay sensor replays
  them once the provider is healthy (a sensor cannot wait; the queue is the memory);
* any other kind (auth, not entitled, bad request, not found) is permanent: the entries
  are abandoned now with the reason, so no replay spends requests on them;
* a step that failed without that metadata (a schema or lake error, a bug) is permanent
  too; it has no entries yet, so they are recorded (one per partition of the run) and
  abandoned in the same way, and ``dashtam dlq list`` shows every failure a person must
  look at.

If the failed run was a replay (tagged with its dead-letter ids by the DLQ replay sensor),
each of its entries still pending counts one failed replay (``record_replay_failure``),
which abandons it at ``DASHTAM_DLQ_MAX_REPLAYS``: replays are bounded. The run is then
tagged ``dashtam/failure_class`` (visible in the UI), and a run carrying that tag is never
handled twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    PartitionKeyRange,
    PartitionsDefinition,
    RunFailureSensorContext,
    SensorDefinition,
    partition_loading_context,
    run_failure_sensor,
)

from dashtam_pipeline.dagster_names import (
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    PARTITION_TAG,
    WILL_RETRY_TAG,
    AssetGraph,
)
from dashtam_pipeline.resilience.dlq import (
    ABANDONED,
    PENDING,
    DeadLetter,
    DeadLetterError,
    DeadLetterQueue,
)
from dashtam_pipeline.resources import StateStoreResource, StorageResource, settings_from
from dashtam_pipeline.sensors.credentials import REFRESH_KEY_TAG
from dashtam_pipeline.sensors.dlq_replay import (
    ENTRIES_TAG,
    PROVIDER_TAG,
    TRANSIENT_KIND_VALUES,
    asset_graph_of,
    build_dlq_replay_sensor,
)
from dashtam_pipeline.settings import Settings

SENSOR_NAME = "run_failure_recovery_sensor"
MINIMUM_INTERVAL_SECONDS = 30
FAILURE_CLASS_TAG = "dashtam/failure_class"

TRANSIENT = "transient"
PERMANENT = "permanent"
MIXED = "mixed"
OUTSIDE_STEPS = "outside_steps"  # no step failed: Dagster's run retries own this case


def classify(error_kind: str | None) -> str:
    """``transient`` for a kind worth replaying later, ``permanent`` for anything else,
    including no kind at all (an exception that is not a provider's answer)."""
    return TRANSIENT if error_kind in TRANSIENT_KIND_VALUES else PERMANENT


@dataclass(frozen=True)
class StepFailure:
    """One failed step of a run, as its failure event tells it."""

    step_key: str
    asset_keys: tuple[AssetKey, ...]
    provider: str | None  # None: not an ingestion step (a mart)
    error_kind: str | None  # None: not a provider failure
    reason: str

    @property
    def failure_class(self) -> str:
        return classify(self.error_kind)


@dataclass
class FailureHandling:
    """What the sensor did with one failed run (logged on the tick)."""

    run_id: str
    failure_class: str | None = None  # None: skipped (Dagster retries it, or already done)
    steps: list[StepFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def handle_failed_run(
    instance: DagsterInstance, run: DagsterRun, asset_graph: AssetGraph, settings: Settings
) -> FailureHandling:
    """Classify a failed run and settle its dead letters (see the module docstring)."""
    handling = FailureHandling(run.run_id)
    if run.tags.get(WILL_RETRY_TAG) == "true":
        handling.notes.append(f"run {run.run_id}: Dagster's run retry re-executes it")
        return handling
    if REFRESH_KEY_TAG in run.tags:
        # a credential refresh: no asset partition is missing, and the credential sensor
        # decides what a failed refresh means (EXPIRED connection, or ask again)
        handling.notes.append(f"run {run.run_id}: a credential refresh, owned by its sensor")
        return handling
    if FAILURE_CLASS_TAG in run.tags:
        handling.notes.append(f"run {run.run_id} was already handled")
        return handling

    queue = DeadLetterQueue.from_settings(settings)
    handling.steps = read_step_failures(instance, run, asset_graph)
    for step in handling.steps:
        _settle_step(instance, queue, run, asset_graph, step, handling)
    _count_failed_replay(queue, settings, run, handling)

    classes = {s.failure_class for s in handling.steps if s.provider is not None}
    handling.failure_class = (
        OUTSIDE_STEPS if not handling.steps else classes.pop() if len(classes) == 1 else MIXED
    )
    if not handling.steps:
        handling.notes.append(f"run {run.run_id} failed outside any step: nothing to replay")
    instance.add_run_tags(run.run_id, {FAILURE_CLASS_TAG: handling.failure_class})
    return handling


def read_step_failures(
    instance: DagsterInstance, run: DagsterRun, asset_graph: AssetGraph
) -> list[StepFailure]:
    """Each failed step with its assets, provider, error kind and reason."""
    records = instance.get_records_for_run(
        run_id=run.run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    steps = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        data = event.step_failure_data
        keys = _step_asset_keys(asset_graph, event.step_key)
        user = data.user_failure_data
        metadata = user.metadata if user is not None else {}
        error_kind = _text(metadata.get("error_kind"))
        provider = _text(metadata.get("provider")) or _provider_tag(asset_graph, keys)
        steps.append(StepFailure(event.step_key, keys, provider, error_kind, _reason(data)))
    return steps


def _settle_step(
    instance: DagsterInstance,
    queue: DeadLetterQueue,
    run: DagsterRun,
    asset_graph: AssetGraph,
    step: StepFailure,
    handling: FailureHandling,
) -> None:
    if step.provider is None:
        handling.notes.append(
            f"step {step.step_key} is not an ingestion step (no provider): its assets "
            "rebuild through their automation once their upstreams land"
        )
        return
    entries = _pending_entries_of(queue, run.run_id, step)
    if step.failure_class == TRANSIENT:
        handling.notes.append(
            f"step {step.step_key}: transient {step.error_kind} failure of {step.provider}; "
            f"{len(entries)} dead letter(s) pending until it is healthy"
        )
        return
    if not entries:
        entries = _record_entries(instance, queue, run, asset_graph, step)
    reason = (
        f"permanent failure ({step.error_kind or 'error'}) in run {run.run_id}, "
        f"not replayed: {step.reason}"
    )
    abandoned = abandon(queue, [e.id for e in entries], reason)
    handling.notes.append(
        f"step {step.step_key}: {len(abandoned)} dead letter(s) abandoned: {reason}"
    )


def _count_failed_replay(
    queue: DeadLetterQueue, settings: Settings, run: DagsterRun, handling: FailureHandling
) -> None:
    """A failed replay run counts one failed replay for each of its entries still pending."""
    raw = run.tags.get(ENTRIES_TAG)
    if not raw:
        return
    reason = "; ".join(f"{s.step_key}: {s.reason}" for s in handling.steps) or "run failed"
    reason = f"replay run {run.run_id} failed: {reason}"
    for entry_id in sorted({int(i) for i in raw.split(",") if i.strip().isdigit()}):
        try:
            stored = queue.record_replay_failure(entry_id, reason, settings.dashtam_dlq_max_replays)
        except DeadLetterError:
            continue  # abandoned above (permanent), or landed after all
        handling.notes.append(
            f"dead letter {entry_id}: replay {stored.replay_count} of "
            f"{settings.dashtam_dlq_max_replays} failed"
            + (" — abandoned" if stored.status == ABANDONED else "")
        )


def abandon(queue: DeadLetterQueue, ids: Iterable[int], reason: str) -> list[int]:
    """Close pending entries as abandoned with ``reason`` (see ``DeadLetterQueue.abandon``)."""
    return queue.abandon(ids, reason)


def _pending_entries_of(queue: DeadLetterQueue, run_id: str, step: StepFailure) -> list[DeadLetter]:
    """The entries this step recorded (by asset; by provider if its assets are unknown)."""
    names = {k.to_user_string() for k in step.asset_keys}
    return [
        e
        for e in queue.list(status=PENDING, provider=None if names else step.provider)
        if e.run_id == run_id and (e.asset_key in names or not names)
    ]


def _record_entries(
    instance: DagsterInstance,
    queue: DeadLetterQueue,
    run: DagsterRun,
    asset_graph: AssetGraph,
    step: StepFailure,
) -> list[DeadLetter]:
    """Dead letters for a step that failed before the factory could record any: one per
    asset and partition of the run."""
    entries = []
    for key in step.asset_keys:
        node = asset_graph.get(key)
        table = str(node.metadata.get("table", key.to_user_string()))
        for partition in run_partitions(instance, run, node.partitions_def):
            entries.append(
                queue.record_failure(
                    key.to_user_string(),
                    table,
                    str(step.provider),
                    partition,
                    {"partition_key": partition, "failed_run": run.run_id},
                    step.reason,
                    run_id=run.run_id,
                )
            )
    return entries


def run_partitions(
    instance: DagsterInstance, run: DagsterRun, partitions_def: PartitionsDefinition | None
) -> list[str | None]:
    """The partitions a run covered, from its tags (``[None]`` for unpartitioned assets)."""
    if partitions_def is None:
        return [None]
    if run.tags.get(PARTITION_TAG):
        return [run.tags[PARTITION_TAG]]
    start, end = run.tags.get(PARTITION_RANGE_START), run.tags.get(PARTITION_RANGE_END)
    if not (start and end):
        return []
    with partition_loading_context(dynamic_partitions_store=instance):
        return list(partitions_def.get_partition_keys_in_range(PartitionKeyRange(start, end)))


def _step_asset_keys(asset_graph: AssetGraph, step_key: str) -> tuple[AssetKey, ...]:
    for assets_def in getattr(asset_graph, "assets_defs", ()):
        if assets_def.is_executable and assets_def.node_def.name == step_key:
            return tuple(sorted(assets_def.keys, key=lambda k: k.to_user_string()))
    return ()


def _provider_tag(asset_graph: AssetGraph, keys: Sequence[AssetKey]) -> str | None:
    for key in keys:
        provider = asset_graph.get(key).tags.get(PROVIDER_TAG)
        if provider:
            return provider
    return None


def _text(value: object) -> str | None:
    raw = getattr(value, "value", value)
    return str(raw) if raw not in (None, "") else None


def _reason(data: Any) -> str:
    """The sentence of a step failure (``DagsterEvent.step_failure_data``, whose class
    Dagster does not export)."""
    user = data.user_failure_data
    if user is not None and user.description:
        return user.description.strip()
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause  # Dagster wraps the user's exception: name the user's
    if error is not None and error.message.strip():
        return error.message.strip().splitlines()[-1][:500]
    return "step failed"


def build_run_failure_sensor(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> SensorDefinition:
    """The sensor over every job of this code location, reading the settings in force
    at each evaluation."""

    @run_failure_sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Classifies each failed run: transient provider failures stay in the dead-letter "
            "queue for dlq_replay_sensor; permanent ones (auth, bad input, schema, errors) "
            "are abandoned there with their reason. Skips runs Dagster retries itself "
            "(dagster/will_retry) and counts failed replays against DASHTAM_DLQ_MAX_REPLAYS."
        ),
    )
    def run_failure_recovery_sensor(
        context: RunFailureSensorContext, storage: StorageResource, state: StateStoreResource
    ) -> None:
        settings = settings_from(storage, state)
        handling = handle_failed_run(
            context.instance, context.dagster_run, asset_graph_of(context, settings), settings
        )
        for note in handling.notes:
            context.log.info(note)

    return run_failure_recovery_sensor


def build_recovery_sensors() -> list[SensorDefinition]:
    """Both recovery sensors, for ``Definitions(sensors=[...])``: the run-failure sensor
    and the DLQ replay sensor (the ``clock`` resource decides breaker timeouts and quota
    resets)."""
    return [build_run_failure_sensor(), build_dlq_replay_sensor()]
