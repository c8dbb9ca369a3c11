"""Replay dead letters: re-materialize exactly the failed partitions, then settle each entry.

A replay goes through the Dagster instance like any materialization: the same launch
path as ``dashtam materialize`` (``runner.launch_runs``: a run of the code location
``dashtam_pipeline``, queued for the daemon in production), so it shows in the UI, can be
retried and re-executed, and lands through the same idempotent upserts (replaying twice
never duplicates a row).

Entries are grouped by partition key, and each partition is one run of the assets
that failed for it. An entry is ``replayed`` only when its asset materialized in that
run; a failure *or a skip* (the provider was not configured, say) did not land the data,
so it counts as a failed replay, and the ``DASHTAM_DLQ_MAX_REPLAYS``-th one abandons it.

Entries whose asset or partition no longer exists (an asset removed, a FRED series taken
out of ``DASHTAM_FRED_SERIES``) cannot ever land: they fail their replay with that reason
instead of stopping the other entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance, Definitions

from dashtam_pipeline.resilience.dlq import PENDING, DeadLetter, DeadLetterError, DeadLetterQueue
from dashtam_pipeline.runner import RunPlan, SelectionError, execute_plans, plan_runs
from dashtam_pipeline.settings import Settings


@dataclass(frozen=True)
class ReplayOutcome:
    """What one entry's replay did; ``entry`` is the entry as stored afterwards."""

    entry: DeadLetter
    landed: bool
    detail: str
    run_id: str | None = None


@dataclass
class ReplayReport:
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def landed(self) -> list[ReplayOutcome]:
        return [o for o in self.outcomes if o.landed]

    @property
    def not_landed(self) -> list[ReplayOutcome]:
        return [o for o in self.outcomes if not o.landed]

    @property
    def ok(self) -> bool:
        return not self.not_landed


@dataclass
class _Attempt:
    """One asset of one planned run, with the entries it settles."""

    entries: list[DeadLetter]
    landed: bool = False
    detail: str = "not run"
    run_id: str | None = None


def replay(
    settings: Settings, ids: Sequence[int] | None = None, *, in_process: bool = False
) -> ReplayReport:
    """Replay the given pending entries (all pending entries when ``ids`` is None)."""
    queue = DeadLetterQueue.from_settings(settings)
    entries = _pending_entries(queue, ids)
    report = ReplayReport()
    if not entries:
        return report

    from dashtam_pipeline.definitions import build_definitions
    from dashtam_pipeline.instance import get_instance

    defs = build_definitions(settings)
    attempts = _attempts_by_asset_partition(entries)
    with get_instance(settings) as instance:
        for partition, plans in _plans(defs, attempts).items():
            for plan in plans:
                _run(instance, plan, partition, attempts, report, in_process)

    for attempt in attempts.values():
        for entry in attempt.entries:
            if attempt.landed:
                (stored,) = queue.mark_replayed([entry.id], attempt.run_id)
                detail = f"materialized in run {attempt.run_id}"
            else:
                stored = queue.record_replay_failure(
                    entry.id, attempt.detail, settings.dashtam_dlq_max_replays
                )
                detail = stored.abandoned_reason or stored.last_replay_error or attempt.detail
            report.outcomes.append(ReplayOutcome(stored, attempt.landed, detail, attempt.run_id))
    report.outcomes.sort(key=lambda o: o.entry.id)
    return report


def _pending_entries(queue: DeadLetterQueue, ids: Sequence[int] | None) -> list[DeadLetter]:
    if ids is None:
        return queue.list(status=PENDING)
    entries = queue.get(ids)
    settled = [e for e in entries if e.status != PENDING]
    if settled:
        names = ", ".join(f"{e.id} ({e.status})" for e in settled)
        raise DeadLetterError(
            f"only pending dead-letter entries can be replayed; not pending: {names}"
        )
    return entries


def _attempts_by_asset_partition(
    entries: Sequence[DeadLetter],
) -> dict[tuple[str, str | None], _Attempt]:
    attempts: dict[tuple[str, str | None], _Attempt] = {}
    for entry in entries:
        key = (entry.asset_key, entry.partition_key)
        attempts.setdefault(key, _Attempt([])).entries.append(entry)
    return attempts


def _plans(
    defs: Definitions, attempts: dict[tuple[str, str | None], _Attempt]
) -> dict[str | None, list[RunPlan]]:
    """One set of runs per partition key, of the assets that failed for it. Entries that
    cannot be planned get their reason now and take no run."""
    graph = defs.resolve_asset_graph()
    by_partition: dict[str | None, list[AssetKey]] = {}
    for (asset_key, partition), attempt in attempts.items():
        key = AssetKey.from_user_string(asset_key)
        if key not in graph.materializable_asset_keys:
            attempt.detail = f"asset {asset_key} is no longer defined"
            continue
        partitions_def = graph.get(key).partitions_def
        if partitions_def is None and partition is not None:
            attempt.detail = f"asset {asset_key} has no partitions, the entry names {partition}"
            continue
        if partitions_def is not None and partition is None:
            attempt.detail = f"asset {asset_key} is partitioned, the entry names no partition"
            continue
        if partitions_def is not None and partition not in partitions_def.get_partition_keys():
            attempt.detail = f"{partition} is no longer a partition of asset {asset_key}"
            continue
        by_partition.setdefault(partition, []).append(key)

    plans: dict[str | None, list[RunPlan]] = {}
    for partition, keys in by_partition.items():
        try:
            plans[partition] = plan_runs(defs, keys, partition=partition)
        except SelectionError as error:  # validated above; kept so one bad group is contained
            for key in keys:
                attempts[(key.to_user_string(), partition)].detail = str(error)
    return plans


def _run(
    instance: DagsterInstance,
    plan: RunPlan,
    partition: str | None,
    attempts: dict[tuple[str, str | None], _Attempt],
    report: ReplayReport,
    in_process: bool,
) -> None:
    result = execute_plans(instance, [plan], in_process=in_process)
    run_id = result.runs[0] if result.runs else None
    report.runs.extend(result.runs)
    for key in plan.asset_keys:
        name = key.to_user_string()
        attempt = attempts.get((name, partition))
        asset = result.assets.get(name)
        if attempt is None or asset is None:
            continue
        attempt.run_id = run_id
        attempt.landed = asset.status == "materialized"
        if not attempt.landed:
            attempt.detail = f"{asset.status}: {asset.detail}" if asset.detail else asset.status
