"""Materialize a selection of assets through the Dagster instance, as the CLI does.

Runs go through ``execute_job`` on the instance in ``DAGSTER_HOME`` (so they show in the
UI) with Dagster's multiprocess executor. A selection that spans several partitionings
becomes one run per partitioning — ingestion first, marts last, so the marts see what
the ingestion runs landed — and a partition range becomes runs of at most the assets'
``BackfillPolicy`` size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository

from dashtam_pipeline.assets.partitions import (
    OBSERVATION_END_TAG,
    OBSERVATION_START_TAG,
    market_today,
    previous_trading_day,
)
from dashtam_pipeline.errors import PipelineError
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.registry import Domain
from dashtam_pipeline.sensors import INBOX_REGISTRARS

IMPLICIT_JOB = "__ASSET_JOB"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class SelectionError(PipelineError):
    """The selection or partition arguments do not match any asset or partition."""


@dataclass
class RunPlan:
    """One run to launch: assets sharing a partitioning, and the partition tags."""

    asset_keys: list[AssetKey]
    tags: dict[str, str]
    label: str
    #: The step (op) that materializes each asset: one step can serve several assets
    #: (a dataset and its companions), and a failed step fails all of them.
    steps: dict[str, str] = field(default_factory=dict)
    #: The partitions this run covers (empty for unpartitioned assets).
    partitions: list[str] = field(default_factory=list)


@dataclass
class AssetReport:
    key: str
    status: str  # materialized | skipped | failed | not_run
    detail: str = ""
    rows: int | None = None


@dataclass
class MaterializeReport:
    runs: list[str] = field(default_factory=list)
    assets: dict[str, AssetReport] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_checks and all(
            a.status in ("materialized", "skipped") for a in self.assets.values()
        )


def resolve_selection(defs: Definitions, selection: str | None) -> list[AssetKey]:
    graph = defs.resolve_asset_graph()
    text = (selection or "*").strip()
    try:
        keys = AssetSelection.from_string(text).resolve(graph)
    except Exception as exc:  # Dagster raises several types for bad syntax/unknown keys
        known = ", ".join(sorted(k.to_user_string() for k in graph.materializable_asset_keys))
        raise SelectionError(
            f"cannot resolve asset selection {text!r}: {exc}. Known assets: {known}"
        ) from None
    keys = {k for k in keys if k in graph.materializable_asset_keys}
    if not keys:
        known = ", ".join(sorted(k.to_user_string() for k in graph.materializable_asset_keys))
        raise SelectionError(f"asset selection {text!r} matches no asset. Known assets: {known}")
    return sorted(keys, key=lambda k: k.to_user_string())


def _chunks(keys: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


def plan_runs(
    defs: Definitions,
    keys: Sequence[AssetKey],
    *,
    partition: str | None = None,
    start: str | None = None,
    end: str | None = None,
    instance: DagsterInstance | None = None,
) -> list[RunPlan]:
    """Group ``keys`` into runs; pick partitions (default: the latest, all series, or
    every inbox file). Per-file partitions live in ``instance`` (default: the one in
    ``DAGSTER_HOME``), where the files now in the inbox are registered first."""
    graph = defs.resolve_asset_graph()
    groups: dict[tuple[bool, PartitionsDefinition | None], list[AssetKey]] = {}
    for key in keys:
        node = graph.get(key)
        is_mart = node.group_name == Domain.MARTS.value
        groups.setdefault((is_mart, node.partitions_def), []).append(key)

    wanted = partition or start or end
    plans: list[RunPlan] = []
    matched_partitioned = False
    for (_is_mart, partitions_def), group_keys in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1] is not None)
    ):
        names = ", ".join(k.to_user_string() for k in group_keys)
        steps = {k.to_user_string(): graph.get(k).assets_def.node_def.name for k in group_keys}
        if partitions_def is None:
            plans.append(RunPlan(group_keys, {}, names, steps))
            continue
        all_keys = partition_keys(partitions_def, instance)
        if not all_keys:
            if isinstance(partitions_def, DynamicPartitionsDefinition) and not wanted:
                # an empty inbox: one run that imports nothing still reports the asset
                plans.append(RunPlan(group_keys, {}, f"{names} [no files]", steps))
            continue
        window_tags: dict[str, str] = {}
        if wanted:
            chosen = _chosen_partitions(partitions_def, all_keys, partition, start, end)
            if chosen is None:
                continue
            matched_partitioned = True
            selected, window_tags = chosen
        else:
            selected = default_partitions(partitions_def, all_keys)
        policy = graph.get(group_keys[0]).backfill_policy
        size = (policy.max_partitions_per_run if policy else 1) or len(selected)
        window = f" observations {start}..{end}" if window_tags else ""
        for chunk in _chunks(selected, size):
            tags = (
                {"dagster/partition": chunk[0]}
                if len(chunk) == 1
                else {PARTITION_RANGE_START: chunk[0], PARTITION_RANGE_END: chunk[-1]}
            )
            label = f"{names} [{chunk[0]}{'...' + chunk[-1] if len(chunk) > 1 else ''}]{window}"
            plans.append(
                RunPlan(group_keys, {**tags, **window_tags}, label, steps, list(chunk))
            )
    if wanted and not matched_partitioned:
        raise SelectionError(
            f"partition {' / '.join(k for k in (partition, start, end) if k)} is not a "
            "partition of any selected asset (daily assets use YYYY-MM-DD; FRED assets use "
            "series ids such as GDP, or --from/--to dates for the observation dates to "
            "backfill; file imports use <file name>@<digest>)"
        )
    return plans


def _chosen_partitions(
    partitions_def: PartitionsDefinition,
    all_keys: list[str],
    partition: str | None,
    start: str | None,
    end: str | None,
) -> tuple[list[str], dict[str, str]] | None:
    """The partitions (and window tags) the arguments pick from one partitioning, or None
    when they name none of its keys.

    For series partitions (static keys that are not dates), ``--from``/``--to`` dates are
    the observation dates to backfill: every series (or ``--partition``'s one) runs with
    the window in its run tags, which the UI's backfill dialog can set just the same.
    """
    is_series = isinstance(partitions_def, StaticPartitionsDefinition)
    if is_series and (start or end) and not {start, end} & set(all_keys):
        first, last = _iso_date(start, "--from"), _iso_date(end, "--to")
        if first and last and first > last:
            raise SelectionError(f"--from {start} is after --to {end}")
        if partition and partition not in all_keys:
            return None
        tags = {OBSERVATION_START_TAG: start or "", OBSERVATION_END_TAG: end or ""}
        return ([partition] if partition else all_keys), {k: v for k, v in tags.items() if v}
    if partition and (start or end):
        return None  # a range of partitions and one partition: only series take both
    requested = [k for k in (partition, start, end) if k]
    if not all(k in all_keys for k in requested):
        return None
    if partition:
        return [partition], {}
    lo = all_keys.index(start) if start else 0
    hi = all_keys.index(end) if end else len(all_keys) - 1
    if lo > hi:
        raise SelectionError(f"--from {start} is after --to {end}")
    return all_keys[lo : hi + 1], {}


def _iso_date(text: str | None, option: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SelectionError(
            f"{option} {text!r} is neither a partition of the selected assets nor a date "
            "(YYYY-MM-DD)"
        ) from None


def partition_keys(
    partitions_def: PartitionsDefinition, instance: DagsterInstance | None
) -> list[str]:
    """Every key of ``partitions_def``. A per-file (dynamic) partitioning first registers
    the files waiting in its inbox, as its sensor would, so a file dropped a moment ago
    is imported by this command rather than by the sensor's next tick."""
    if not isinstance(partitions_def, DynamicPartitionsDefinition):
        return list(partitions_def.get_partition_keys())
    with _instance_or_home(instance) as store:
        register = INBOX_REGISTRARS.get(partitions_def.name)
        if register is not None:
            register(store)
        return list(partitions_def.get_partition_keys(dynamic_partitions_store=store))


@contextmanager
def _instance_or_home(instance: DagsterInstance | None) -> Iterator[DagsterInstance]:
    if instance is not None:
        yield instance
        return
    from dashtam_pipeline.instance import get_instance
    from dashtam_pipeline.settings import load_settings

    with get_instance(load_settings()) as home:
        yield home


def default_partitions(partitions_def: PartitionsDefinition, all_keys: list[str]) -> list[str]:
    """What runs when no partition is named: daily assets for the previous trading day
    (as the nightly schedule does, so a Monday demo has Friday's bars), every key of a
    static partitioning (all FRED series, in one run) or of a per-file one (every inbox
    file: re-importing a file adds no rows, its ids are derived from its content)."""
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        day = previous_trading_day(market_today()).isoformat()
        return [day] if day in all_keys else [all_keys[-1]]
    return all_keys


def execute_plans(
    instance: DagsterInstance,
    plans: Sequence[RunPlan],
    *,
    on_progress: Callable[[int, int, RunPlan], None] | None = None,
    in_process: bool = False,
) -> MaterializeReport:
    """Launch each planned run on the instance and collect what happened to each asset.

    Steps run in separate processes (Dagster's multiprocess executor) unless
    ``in_process`` is set, which tests use for speed.
    """
    # The pointer is the builder, not the module's ``defs``: every run (and every step
    # process) builds the definitions from the settings in force now, so a changed
    # DASHTAM_FRED_SERIES in a long-lived process still runs the right partitions.
    recon_repo = ReconstructableRepository.for_module(
        "dashtam_pipeline.definitions", "load_definitions", working_directory=None
    )
    job = recon_repo.get_reconstructable_job(IMPLICIT_JOB)
    report = MaterializeReport()
    for index, plan in enumerate(plans, start=1):
        if on_progress:
            on_progress(index, len(plans), plan)
        result = execute_job(
            job,
            instance=instance,
            asset_selection=plan.asset_keys,
            tags={**plan.tags, "dashtam/launched_by": "cli"},
            run_config=(
                {**QUIET_RUN_CONFIG, "execution": {"config": {"in_process": {}}}}
                if in_process
                else QUIET_RUN_CONFIG
            ),
            raise_on_error=False,
        )
        report.runs.append(result.run_id)
        _collect(report, plan, result)
    return report


def _collect(report: MaterializeReport, plan: RunPlan, result) -> None:  # type: ignore[no-untyped-def]
    for key in plan.asset_keys:
        report.assets.setdefault(key.to_user_string(), AssetReport(key.to_user_string(), "not_run"))
    # A run over several partitions records one materialization per partition, each with
    # the run's metadata: count a run's rows once per asset.
    rows_this_run: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = mat.asset_key.to_user_string()
        entry = report.assets[name]
        entry.status = "materialized"
        # ``run_rows_written``: the run's rows (``rows_written`` is one partition's own)
        rows = (mat.metadata.get("run_rows_written") or mat.metadata.get("rows_written")
                or mat.metadata.get("dagster/row_count"))
        if rows is not None:
            rows_this_run[name] = int(rows.value)
        served = mat.metadata.get("served_by")
        if served is not None and served.value:
            entry.detail = f"served by {served.value}"
    for name, rows in rows_this_run.items():
        report.assets[name].rows = (report.assets[name].rows or 0) + rows
    for event in result.get_asset_observation_events():
        obs = event.event_specific_data.asset_observation
        skipped = obs.metadata.get("skipped")
        name = obs.asset_key.to_user_string()
        if skipped is not None and report.assets[name].status == "not_run":
            report.assets[name].status = "skipped"
            report.assets[name].detail = str(skipped.value)
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error
        message = error.message.strip() if error else "step failed"
        for key in _step_asset_keys(plan, event.step_key):
            report.assets[key].status = "failed"
            report.assets[key].detail = message.splitlines()[-1][:500]
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if not evaluation.passed:
            severity = getattr(evaluation.severity, "value", str(evaluation.severity))
            (report.warned_checks if severity == "WARN" else report.failed_checks).append(name)


def _step_asset_keys(plan: RunPlan, step_key: str) -> list[str]:
    """The planned assets a step materializes (every one when the step is unknown)."""
    names = [k.to_user_string() for k in plan.asset_keys]
    matching = [n for n in names if plan.steps.get(n) == step_key]
    return matching or names
