"""Materialize a selection of assets through the Dagster instance, as the CLI does.

Every run is created from the code location ``dashtam_pipeline`` and submitted to the
instance in ``DAGSTER_HOME`` through its run coordinator (``launch_runs`` says how and
why), so CLI runs are runs like the daemon's: retried by Dagster, re-executable from the
UI, seen by the run-failure sensor, watched by run monitoring. A selection that spans
several partitionings becomes one run per partitioning — ingestion first, marts last, so
the marts see what the ingestion runs landed — and a partition range becomes runs of at
most the assets' ``BackfillPolicy`` size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    DynamicPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from dashtam_pipeline.assets.partitions import (
    OBSERVATION_END_TAG,
    OBSERVATION_START_TAG,
    market_today,
    previous_trading_day,
)
from dashtam_pipeline.dagster_names import PARTITION_RANGE_END, PARTITION_RANGE_START, PARTITION_TAG
from dashtam_pipeline.errors import PipelineError
from dashtam_pipeline.failures import error_info_sentence
from dashtam_pipeline.registry import PROVIDER_REGISTRY, Domain
from dashtam_pipeline.sensors import PARTITION_REGISTRARS

IMPLICIT_JOB = "__ASSET_JOB"
#: The code location every run of this project belongs to: workspace.yaml, the daemon,
#: the webserver and ``dashtam materialize`` all use this name, so a run started by any
#: of them can be retried and re-executed by the others.
CODE_LOCATION_NAME = "dashtam_pipeline"
#: The repository name Dagster gives a ``Definitions`` object.
REPOSITORY_NAME = "__repository__"
LAUNCHED_BY_TAG = "dashtam/launched_by"
#: Runs launched together (one GraphQL call), and so running at once without a daemon.
MAX_PARALLEL_RUNS = 8
LAUNCH_TIMEOUT_SECONDS = 300.0
#: How long a run may sit queued before we look for a daemon to launch it.
NO_DAEMON_GRACE_SECONDS = 30.0
DAEMON_HEARTBEAT_MAX_AGE = 120.0
#: How long a run may wait before we look for pools held by dead runs.
POOL_WARNING_SECONDS = 30.0
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
    #: 0 for ingestion, 1 for marts: a stage starts once the previous one has ended.
    stage: int = 0


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
    for (is_mart, partitions_def), group_keys in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1] is not None)
    ):
        names = ", ".join(k.to_user_string() for k in group_keys)
        steps = {k.to_user_string(): graph.get(k).assets_def.node_def.name for k in group_keys}
        if partitions_def is None:
            plans.append(RunPlan(group_keys, {}, names, steps, stage=int(is_mart)))
            continue
        all_keys = partition_keys(partitions_def, instance)
        if not all_keys:
            if isinstance(partitions_def, DynamicPartitionsDefinition) and not wanted:
                # an empty inbox, no connection yet: one run that syncs nothing still
                # reports the asset (skipped, with the reason)
                plans.append(
                    RunPlan(group_keys, {}, f"{names} [none yet]", steps, stage=int(is_mart))
                )
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
                {PARTITION_TAG: chunk[0]}
                if len(chunk) == 1
                else {PARTITION_RANGE_START: chunk[0], PARTITION_RANGE_END: chunk[-1]}
            )
            label = f"{names} [{chunk[0]}{'...' + chunk[-1] if len(chunk) > 1 else ''}]{window}"
            plans.append(
                RunPlan(
                    group_keys, {**tags, **window_tags}, label, steps, list(chunk),
                    stage=int(is_mart),
                )
            )
    if wanted and not matched_partitioned:
        raise SelectionError(
            f"partition {' / '.join(k for k in (partition, start, end) if k)} is not a "
            "partition of any selected asset (daily assets use YYYY-MM-DD; FRED assets use "
            "series ids such as GDP, or --from/--to dates for the observation dates to "
            "backfill; file imports use <file name>@<digest>; brokerage API assets use "
            "connection ids, `dashtam connections` lists them)"
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
    if isinstance(partitions_def, TimeWindowPartitionsDefinition) and not partition:
        return _sessions_between(all_keys, start, end)
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


def _sessions_between(
    all_keys: list[str], start: str | None, end: str | None
) -> tuple[list[str], dict[str, str]] | None:
    """The trading-day partitions from ``start`` to ``end`` (any dates: a range may begin
    on a holiday or end on a weekend), or None when the arguments are not dates."""
    try:
        first = dt.date.fromisoformat(start) if start else None
        last = dt.date.fromisoformat(end) if end else None
    except ValueError:
        return None
    if first and last and first > last:
        raise SelectionError(f"--from {start} is after --to {end}")
    chosen = [
        key for key in all_keys
        if (first is None or key >= first.isoformat()) and (last is None or key <= last.isoformat())
    ]
    if not chosen:
        raise SelectionError(
            f"no trading day from {start or 'the first partition'} to {end or 'today'}: "
            "daily assets have a partition per NYSE session"
        )
    return chosen, {}


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
    """Every key of ``partitions_def``. A dynamic partitioning is first brought in step,
    as its sensor would: a per-file one registers the files waiting in its inbox, a
    per-connection one the connections in the repository, so a file dropped or a
    connection made a moment ago is taken by this command rather than the next tick."""
    if not isinstance(partitions_def, DynamicPartitionsDefinition):
        return list(partitions_def.get_partition_keys())
    with _instance_or_home(instance) as store:
        register = PARTITION_REGISTRARS.get(partitions_def.name or "")
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
    """Run each planned run on the instance and collect what happened to each asset.

    Every run is launched through the code location ``dashtam_pipeline`` (see
    ``launch_runs``), so it carries a remote job origin: the daemon can retry it, the UI
    can re-execute it, the run-failure sensor sees it, run monitoring watches its worker.
    Runs go in waves of at most ``MAX_PARALLEL_RUNS``, ingestion before marts, so the
    marts see what the ingestion runs landed.

    ``in_process`` is the tests' shortcut only: the runs execute inside this process with
    the public ``JobDefinition.execute_in_process``, which records no remote origin;
    Dagster cannot retry such a run nor the UI re-execute it, so only tests pass it.
    """
    report = MaterializeReport()
    if in_process:
        for index, plan in enumerate(plans, start=1):
            if on_progress:
                on_progress(index, len(plans), plan)
            run_id = _execute_in_this_process(instance, plan)
            report.runs.append(run_id)
            _collect(report, plan, instance, run_id)
        return report
    index = 0
    for wave in _waves(plans):
        for plan in wave:
            index += 1
            if on_progress:
                on_progress(index, len(plans), plan)
        run_ids = launch_runs(instance, wave)
        for plan, run_id in zip(wave, run_ids, strict=True):
            wait_for_run(instance, run_id)
            report.runs.append(run_id)
            _collect(report, plan, instance, run_id)
    return report


def _waves(plans: Sequence[RunPlan]) -> Iterator[list[RunPlan]]:
    """Consecutive plans of one stage, at most ``MAX_PARALLEL_RUNS`` at a time."""
    wave: list[RunPlan] = []
    for plan in plans:
        if wave and (plan.stage != wave[0].stage or len(wave) == MAX_PARALLEL_RUNS):
            yield wave
            wave = []
        wave.append(plan)
    if wave:
        yield wave


def _run_config() -> dict[str, Any]:
    return dict(QUIET_RUN_CONFIG)


def _tags(plan: RunPlan) -> dict[str, str]:
    return {**plan.tags, LAUNCHED_BY_TAG: "cli"}


# --- the one launch path: GraphQL against the code location -----------------------------
WORKSPACE_YAML = f"""\
# Written by dashtam_pipeline.runner: the code location every run of this project
# belongs to (the same as the project's workspace.yaml).
load_from:
  - python_module:
      module_name: dashtam_pipeline.definitions
      location_name: {CODE_LOCATION_NAME}
"""

_LAUNCH_RESULT = """
fragment LaunchResult on LaunchRunResult {
  __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on Error { message }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message }
}
"""


class RunLaunchError(PipelineError):
    """Dagster refused to create or start a run (the message says why and what to do)."""


def launch_variables(plan: RunPlan) -> dict[str, Any]:
    """The ``ExecutionParams`` of one planned run: the implicit asset job of our code
    location, restricted to the plan's assets, with its tags and run config."""
    return {
        "selector": {
            "repositoryLocationName": CODE_LOCATION_NAME,
            "repositoryName": REPOSITORY_NAME,
            "pipelineName": IMPLICIT_JOB,
            "assetSelection": [{"path": key.path} for key in plan.asset_keys],
        },
        "runConfigData": _run_config(),
        "executionMetadata": {
            "tags": [{"key": k, "value": v} for k, v in sorted(_tags(plan).items())]
        },
    }


def launch_document(count: int) -> str:
    """One GraphQL document launching ``count`` runs (aliases ``r0``..; variables ``p0``..)."""
    params = ", ".join(f"$p{i}: ExecutionParams!" for i in range(count))
    fields = "\n".join(
        f"  r{i}: launchPipelineExecution(executionParams: $p{i}) {{ ...LaunchResult }}"
        for i in range(count)
    )
    return f"mutation LaunchRuns({params}) {{\n{fields}\n}}\n{_LAUNCH_RESULT}"


def launch_runs(instance: DagsterInstance, plans: Sequence[RunPlan]) -> list[str]:
    """Create and submit one run per plan through Dagster's GraphQL API; their run ids.

    Why this route: a run that Dagster can retry and the UI can re-execute must carry a
    *remote job origin* (the code location that served it). Dagster's public Python API
    has no call that creates such a run (``execute_job`` records only a python origin,
    and ``DagsterInstance.submit_run`` needs a run and a workspace that only private
    modules construct). Its GraphQL API does: ``launchPipelineExecution`` is what the UI's
    Launchpad, ``DagsterGraphQLClient.submit_job_execution`` and the ``dagster-graphql``
    command send. We run that mutation with the ``dagster-graphql`` command of the
    ``dagster-graphql`` package (a dependency of ``dagster-webserver``) over a workspace
    naming our code location ``dashtam_pipeline``, against the instance in
    ``DAGSTER_HOME``. The run is then submitted to the instance's run coordinator:

    * the queued run coordinator (``deploy/dagster.yaml``): the run is queued, and the
      daemon launches it under its pool limits, in its own code server;
    * the default run coordinator (the SQLite ``dagster.yaml`` of ``make demo``, no
      daemon): it starts at once, in the code server the command started, which outlives
      the command until its runs end.

    Trade-offs: each call pays a process start and a code-server load (seconds), hence
    several runs per call; the mutation is GraphQL schema, not Python API, so a Dagster
    upgrade that renames it breaks here loudly (``test_runner.py`` checks the schema
    still has it) rather than silently.
    """
    if not plans:
        return []
    home = Path(instance.root_directory)
    with tempfile.TemporaryDirectory(prefix="dashtam-launch-") as tmp:
        workspace, document, output = (
            Path(tmp) / "workspace.yaml",
            Path(tmp) / "launch.graphql",
            Path(tmp) / "result.json",
        )
        workspace.write_text(WORKSPACE_YAML)
        document.write_text(launch_document(len(plans)))
        variables = {f"p{i}": launch_variables(plan) for i, plan in enumerate(plans)}
        command = [
            sys.executable, "-c", "from dagster_graphql.cli import main; main()",
            "-w", str(workspace), "--file", str(document),
            "-v", json.dumps(variables), "-o", str(output),
        ]
        log = Path(tmp) / "launch.log"
        with log.open("wb") as sink:
            # Its own session: a Ctrl-C of the CLI must not kill the code server that may
            # be running the launched runs (they end by themselves; the UI shows them).
            process = subprocess.Popen(
                command, env={**os.environ, "DAGSTER_HOME": str(home)},
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )
            answer = _await_answer(process, output, log)
    return _run_ids(answer)


def _await_answer(process: subprocess.Popen[bytes], output: Path, log: Path) -> dict[str, Any]:
    """The mutation's JSON answer, as soon as the command wrote it (the command itself
    stays until the runs it started in its code server have ended)."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if output.exists():
            try:
                return dict(json.loads(output.read_text()))
            except ValueError:
                pass  # still being written
        if process.poll() is not None and not output.exists():
            tail = log.read_text(errors="replace")[-2000:]
            raise RunLaunchError(
                f"dagster-graphql exited with {process.returncode} before launching the "
                f"runs:\n{tail}"
            )
        time.sleep(0.2)
    process.kill()
    raise RunLaunchError(
        f"no answer from dagster-graphql within {LAUNCH_TIMEOUT_SECONDS} s:\n"
        + log.read_text(errors="replace")[-2000:]
    )


def _run_ids(answer: Mapping[str, Any]) -> list[str]:
    if answer.get("errors"):
        messages = "; ".join(str(e.get("message")) for e in answer["errors"])
        raise RunLaunchError(f"Dagster refused the launch: {messages}")
    data = answer.get("data") or {}
    run_ids = []
    for alias in sorted(data, key=lambda a: int(a[1:])):
        result = data[alias]
        if result.get("__typename") != "LaunchRunSuccess":
            detail = result.get("message") or "; ".join(
                str(e.get("message")) for e in result.get("errors") or []
            )
            raise RunLaunchError(f"Dagster refused the run ({result.get('__typename')}): {detail}")
        run_ids.append(str(result["run"]["runId"]))
    return run_ids


def wait_for_run(
    instance: DagsterInstance,
    run_id: str,
    *,
    poll_seconds: float = 0.5,
    warn: Callable[[str], None] | None = None,
) -> DagsterRun:
    """Wait until the run has ended. A run still queued with no daemon to launch it is an
    error that says so; one waiting on a pool whose slots dead runs still hold is said
    once on stderr (the daemon frees those ``free_slots_after_run_end_seconds`` after
    the dead run ended)."""
    say = warn or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.monotonic()
    warned = False
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise RunLaunchError(f"run {run_id} is not in the instance {instance.root_directory}")
        if run.is_finished:
            return run
        waited = time.monotonic() - started
        if (
            run.status == DagsterRunStatus.QUEUED
            and waited > NO_DAEMON_GRACE_SECONDS
            and not daemon_is_running(instance)
        ):
            raise RunLaunchError(
                f"run {run_id} is queued, but no dagster-daemon is running for "
                f"DAGSTER_HOME={instance.root_directory}: start `dagster-daemon run -w "
                "workspace.yaml` (README, \"Running in production\"); the run starts then"
            )
        if not warned and waited > POOL_WARNING_SECONDS:
            blocked = dead_pool_holders(instance)
            if blocked:
                warned = True
                say(blocked)
        time.sleep(poll_seconds)


def daemon_is_running(instance: DagsterInstance) -> bool:
    """Whether a dagster-daemon launching queued runs has sent a heartbeat lately."""
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_HEARTBEAT_MAX_AGE


def dead_pool_holders(instance: DagsterInstance) -> str | None:
    """A sentence naming each provider pool that is full while finished runs (a killed
    process) still hold its slots, or None."""
    storage = instance.event_log_storage
    lines = []
    for meta in PROVIDER_REGISTRY:
        info = storage.get_concurrency_info(meta.pool)
        if not info.claimed_slots or len(info.claimed_slots) < info.slot_count:
            continue
        dead = []
        for slot in info.claimed_slots:
            holder = instance.get_run_by_id(slot.run_id)
            if holder is None or holder.is_finished:
                status = holder.status.value if holder else "deleted"
                dead.append(f"{slot.run_id} ({status})")
        if dead:
            lines.append(
                f"pool {meta.pool} is full and its slots are held by run(s) that have ended: "
                f"{', '.join(sorted(set(dead)))}. The daemon's run monitoring frees them "
                "free_slots_after_run_end_seconds after those runs ended (deploy/dagster.yaml); "
                f"`dagster instance concurrency set {meta.pool} {info.slot_count}` frees them now."
            )
    return "\n".join(lines) or None


def _execute_in_this_process(instance: DagsterInstance, plan: RunPlan) -> str:
    """The tests' shortcut: the plan's run, executed here with the public
    ``JobDefinition.execute_in_process`` (a python origin only, see ``execute_plans``)."""
    from dashtam_pipeline.definitions import load_definitions

    job = load_definitions().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=plan.asset_keys,
        tags=_tags(plan),
        run_config=_run_config(),
        raise_on_error=False,
    )
    return result.run_id


_COLLECTED_EVENTS = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.ASSET_CHECK_EVALUATION,
}


def _collect(
    report: MaterializeReport, plan: RunPlan, instance: DagsterInstance, run_id: str
) -> None:
    """What the run did to each planned asset, read from its event log (the same for a
    run of any origin)."""
    for key in plan.asset_keys:
        report.assets.setdefault(key.to_user_string(), AssetReport(key.to_user_string(), "not_run"))
    events = [
        entry.dagster_event
        for entry in instance.all_logs(run_id, of_type=_COLLECTED_EVENTS)
        if entry.dagster_event is not None
    ]
    # A run over several partitions records one materialization per partition, each with
    # the run's metadata: count a run's rows once per asset.
    rows_this_run: dict[str, int] = {}
    for event in events:
        if event.event_type != DagsterEventType.ASSET_MATERIALIZATION:
            continue
        mat = event.event_specific_data.materialization
        name = mat.asset_key.to_user_string()
        entry = report.assets.setdefault(name, AssetReport(name, "not_run"))
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
    for event in events:
        if event.event_type == DagsterEventType.ASSET_OBSERVATION:
            obs = event.event_specific_data.asset_observation
            skipped = obs.metadata.get("skipped")
            name = obs.asset_key.to_user_string()
            if skipped is not None and name in report.assets and (
                report.assets[name].status == "not_run"
            ):
                report.assets[name].status = "skipped"
                report.assets[name].detail = str(skipped.value)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            # the root cause's own sentence, not Dagster's "Error occurred while executing op"
            message = error_info_sentence(error)
            for key in _step_asset_keys(plan, event.step_key or ""):
                report.assets[key].status = "failed"
                report.assets[key].detail = message
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            if not evaluation.passed:
                severity = getattr(evaluation.severity, "value", str(evaluation.severity))
                (report.warned_checks if severity == "WARN" else report.failed_checks).append(name)
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status == DagsterRunStatus.FAILURE:
        planned = {k.to_user_string() for k in plan.asset_keys}
        for entry in report.assets.values():
            if entry.status == "not_run" and entry.key in planned:
                entry.status = "failed"
                entry.detail = f"run {run_id} failed before the step ran (see the UI)"


def _step_asset_keys(plan: RunPlan, step_key: str) -> list[str]:
    """The planned assets a step materializes (every one when the step is unknown)."""
    names = [k.to_user_string() for k in plan.asset_keys]
    matching = [n for n in names if plan.steps.get(n) == step_key]
    return matching or names
