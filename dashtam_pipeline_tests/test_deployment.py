"""The production deployment, end to end: PostgreSQL, ``deploy/dagster.yaml``,
``dagster-daemon run -w workspace.yaml`` and ``dagster-webserver -w workspace.yaml``,
exactly as the README's "Running in production" says (the commands are read from there),
over the in-process sandbox.

Everything is proved through the webserver's GraphQL API, as the UI sees it: the code
location loads as ``dashtam_pipeline``; sensors tick; a Chase export dropped in the inbox
becomes a daemon-launched run that succeeds; a ``dashtam materialize`` run belongs to
the same location and its re-execution succeeds; a run whose worker is ``kill -9``'d is
marked failed, its pool slots come back and Dagster's retry of it succeeds; after the
nightly jobs, ``marts_automation`` builds every mart.

The shipped ``deploy/dagster.yaml`` is copied unchanged: only the environment differs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

from dashtam_pipeline_tests.machine import skip_unless_available
from dashtam_pipeline_tests.postgres import postgres_unavailable_reason, throwaway_postgres

pytestmark = [
    pytest.mark.deployment,
    # one worker runs the whole module: one PostgreSQL, daemon and webserver
    pytest.mark.xdist_group("deployment"),
    skip_unless_available(postgres_unavailable_reason()),
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "dashtam_pipeline"
REPOSITORY = "__repository__"
T = TypeVar("T")

# The README's production commands, word for word (the webserver on a free port here).
COPY_YAML = 'mkdir -p "$DAGSTER_HOME" && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"'
MIGRATE = "dagster instance migrate"
POOLS = "python -m dashtam_pipeline.instance"
DAEMON = "dagster-daemon run -w workspace.yaml"
WEBSERVER = "dagster-webserver -w workspace.yaml -h 127.0.0.1 -p 3000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    env: dict[str, str]
    data_dir: Path
    graphql_url: str
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # --- GraphQL -------------------------------------------------------------------------
    def query(self, document: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            self.graphql_url, json={"query": document, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return dict(body["data"])

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.query(
            """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
                 ... on Runs { results { runId status jobName tags { key value }
                   repositoryOrigin { repositoryLocationName repositoryName } } } } }""",
            filter={"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        )
        return list(data["runsOrError"]["results"])

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.query(
            """query Run($id: ID!) { runOrError(runId: $id) {
                 ... on Run { runId status tags { key value }
                   repositoryOrigin { repositoryLocationName } } } }""",
            id=run_id,
        )
        return dict(data["runOrError"])

    def wait_finished(self, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            status = str(self.run(run_id)["status"])
            return status if status in {"SUCCESS", "FAILURE", "CANCELED"} else None

        return self.wait(f"run {run_id} to finish", finished, timeout)

    def launch(self, job: str, tags: dict[str, str]) -> str:
        data = self.query(
            """mutation Launch($p: ExecutionParams!) {
               launchPipelineExecution(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on Error { message } } }""",
            p={
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "pipelineName": job,
                },
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            },
        )
        result = data["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    # --- waiting and diagnostics ---------------------------------------------------------
    def wait(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    pytest.fail(f"{name} exited with {process.returncode}\n{self.diagnostics()}")
            try:
                value = probe()
            except (httpx.HTTPError, AssertionError, KeyError) as error:
                last_error, value = error, None
            if value:
                return value
            time.sleep(1)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} "
                    f"(last error: {last_error!r})\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        parts = []
        with contextlib.suppress(Exception):
            runs = self.runs()
            parts.append("----- runs (newest first) -----\n" + "\n".join(
                f"{r['runId'][:8]} {r['status']:<9} {r['jobName']} "
                + " ".join(f"{t['key']}={t['value']}" for t in r["tags"]
                           if not t["key"].startswith(".dagster"))
                for r in runs
            ))
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"----- {name} (last 4000 chars) -----\n{text[-4000:]}")
        return "\n".join(parts)

    def dashtam(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "dashtam"), *args], env=self.env, cwd=self.data_dir, text=True,
            capture_output=True, timeout=timeout,
        )


def _shell(command: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", "-c", command], env=env, cwd=ROOT, check=True, timeout=300,
                   capture_output=True)


def _start(name: str, command: str, env: dict[str, str], deployment: Deployment) -> None:
    log = deployment.data_dir / f"{name}.log"
    deployment.logs[name] = log
    argv = command.split()
    argv[0] = str(BIN / argv[0])
    with log.open("wb") as sink:
        deployment.processes[name] = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: torn down as a whole
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def readme_production_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running in production")
    end = text.index("\n## ", start + 1)
    return text[start:end]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("deployment")
    with throwaway_postgres() as url:
        pg = urlparse(url)
        port = _free_port()
        env = {
            **os.environ,
            "DAGSTER_PG_HOST": str(pg.hostname),
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_USER": str(pg.username),
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": pg.path.lstrip("/"),
            "DAGSTER_HOME": str(data_dir / "dagster_home"),
            "DASHTAM_DATA_DIR": str(data_dir),
            "DASHTAM_SANDBOX": "true",
            "DASHTAM_SYMBOLS": "AAPL,MSFT",
            "DASHTAM_FRED_SERIES": "GDP,UNRATE,DGS10",
            "PYTHONPATH": str(ROOT),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        deployment = Deployment(env, data_dir, f"http://127.0.0.1:{port}/graphql")
        try:
            _shell(COPY_YAML, env)
            assert (data_dir / "dagster_home" / "dagster.yaml").read_bytes() == (
                ROOT / "deploy" / "dagster.yaml"
            ).read_bytes()
            _shell(MIGRATE, env)
            _shell(POOLS, env)
            # the demo's sandbox Schwab login: the connection partitions sensor gives it a
            # partition and a first sync (positions for the marts)
            prepared = subprocess.run(
                [sys.executable, "-c",
                 "from dashtam_pipeline.demo import connect_sandbox_schwab;"
                 "from dashtam_pipeline.settings import load_settings;"
                 "connect_sandbox_schwab(load_settings())"],
                env=env, cwd=data_dir, capture_output=True, text=True, timeout=300,
            )
            assert prepared.returncode == 0, prepared.stderr
            _start("dagster-daemon", DAEMON, env, deployment)
            _start("dagster-webserver", WEBSERVER.replace("-p 3000", f"-p {port}"), env,
                   deployment)
            yield deployment
        finally:
            for process in deployment.processes.values():
                _stop(process)


def test_the_readme_runs_production_with_these_commands() -> None:
    section = readme_production_section()
    for command in (COPY_YAML, MIGRATE, POOLS, DAEMON, WEBSERVER):
        assert command in section, command
    for variable in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
                     "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "DAGSTER_HOME"):
        assert f"{variable}=" in section, variable
    assert "dagster schedule preview" in section and "Test schedule" in section


def test_the_code_location_loads_as_dashtam_pipeline(deployment: Deployment) -> None:
    def loaded() -> list[str] | None:
        data = deployment.query(
            """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename
                   ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"]["locationEntries"]
        if any(e["loadStatus"] != "LOADED" for e in entries):
            return None
        errors = [
            e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
        ]
        assert not errors, errors
        return [e["name"] for e in entries]

    assert deployment.wait("the code location to load", loaded, 300) == [LOCATION]


def test_sensors_tick(deployment: Deployment) -> None:
    def ticked() -> bool:
        data = deployment.query(
            """query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                 ... on Sensor { sensorState { status ticks(limit: 1) { status } } } } }""",
            s={"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "sensorName": "chase_inbox_sensor"},
        )
        state = data["sensorOrError"]["sensorState"]
        return state["status"] == "RUNNING" and bool(state["ticks"])

    deployment.wait("chase_inbox_sensor to tick", ticked, 240)


def test_a_dropped_chase_file_becomes_a_daemon_run_that_succeeds(deployment: Deployment) -> None:
    inbox = deployment.data_dir / "inbox" / "chase"
    inbox.mkdir(parents=True, exist_ok=True)
    sample = sorted((ROOT / "dashtam_pipeline" / "sandbox" / "samples").glob("*.CSV"))[0]
    shutil.copyfile(sample, inbox / sample.name)
    sensor_tags = {"dagster/sensor_name": "chase_inbox_sensor"}
    (run,) = deployment.wait(
        "the inbox sensor's run", lambda: deployment.runs(sensor_tags) or None, 240
    )
    assert run["repositoryOrigin"]["repositoryLocationName"] == LOCATION
    assert deployment.wait_finished(run["runId"], 300) == "SUCCESS", deployment.diagnostics()


def tag(run: dict[str, Any], key: str) -> str:
    """One tag of a run as the GraphQL API lists them."""
    return next(t["value"] for t in run["tags"] if t["key"] == key)


def first_syncs(deployment: Deployment) -> list[dict[str, Any]]:
    """The first-sync runs the connection partitions sensor launched, once there is one
    per connected provider (Schwab from the demo's login, Alpaca from the sandbox keys)."""
    runs = deployment.runs({"dagster/sensor_name": "connection_partitions_sensor"})
    providers = {tag["value"] for run in runs for tag in run["tags"]
                 if tag["key"] == "dashtam/provider"}
    return runs if providers >= {"schwab", "alpaca"} else []


def test_each_new_connection_gets_its_partition_and_a_first_sync(
    deployment: Deployment,
) -> None:
    runs = deployment.wait("the first-sync runs", lambda: first_syncs(deployment), 240)
    for run in runs:
        assert run["repositoryOrigin"]["repositoryLocationName"] == LOCATION
        assert deployment.wait_finished(run["runId"], 420) == "SUCCESS", (
            deployment.diagnostics())
    tags = {tag["key"]: tag["value"] for run in runs for tag in run["tags"]}
    assert tags["dashtam/first_sync"] == "1"


def test_a_cli_run_belongs_to_the_location_and_re_executes(deployment: Deployment) -> None:
    result = deployment.dashtam("materialize", "--select", "key:macro/fred_series",
                                "--partition", "GDP")
    assert result.returncode == 0, result.stdout + result.stderr + deployment.diagnostics()
    (run,) = deployment.runs({"dashtam/launched_by": "cli"})
    assert run["status"] == "SUCCESS"
    assert run["repositoryOrigin"] == {
        "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY
    }
    data = deployment.query(
        """mutation R($p: ReexecutionParams!) { launchPipelineReexecution(reexecutionParams: $p) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } ... on Error { message } } }""",
        p={"parentRunId": run["runId"], "strategy": "ALL_STEPS"},
    )
    relaunch = data["launchPipelineReexecution"]
    assert relaunch["__typename"] == "LaunchRunSuccess", relaunch
    child = relaunch["run"]["runId"]
    assert deployment.wait_finished(child, 300) == "SUCCESS", deployment.diagnostics()
    tags = {t["key"]: t["value"] for t in deployment.run(child)["tags"]}
    assert tags["dagster/parent_run_id"] == run["runId"]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _claimed_slots(run_id: str) -> int:
    """Slots the run holds in any pool (read from the instance the deployment shares)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        return sum(
            1
            for pool in storage.get_concurrency_keys()
            for slot in storage.get_concurrency_info(pool).claimed_slots
            if slot.run_id == run_id
        )


def _worker_pid(run_id: str) -> int | None:
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.get() as instance:
        records = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        if not records:
            return None  # kill only once a step holds its pool slot
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
            if found:
                return int(found.group(1))
    return None


def test_a_killed_run_fails_frees_its_slots_and_its_retry_succeeds(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
                "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, deployment.env[key])
    run_id = deployment.launch("nightly_fred_job", {
        "dagster/asset_partition_range_start": "GDP",
        "dagster/asset_partition_range_end": "DGS10",
    })
    pid = deployment.wait("the run's worker to start a step", lambda: _worker_pid(run_id), 240)
    assert _claimed_slots(run_id) > 0
    for victim in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    assert deployment.wait_finished(run_id, 120) == "FAILURE"
    deployment.wait("the killed run's pool slots to be freed",
                    lambda: _claimed_slots(run_id) == 0, 240)
    (retry,) = deployment.wait(
        "Dagster's retry of the killed run",
        lambda: deployment.runs({"dagster/parent_run_id": run_id}) or None, 180,
    )
    assert deployment.wait_finished(retry["runId"], 300) == "SUCCESS", deployment.diagnostics()


def test_after_the_nightly_jobs_the_marts_automation_builds_every_mart(
    deployment: Deployment,
) -> None:
    from dashtam_pipeline.assets.partitions import market_today, previous_trading_day

    day = previous_trading_day(market_today()).isoformat()
    connections = deployment.wait("the first-sync runs", lambda: first_syncs(deployment), 240)
    started = time.time()
    runs = [
        deployment.launch("nightly_daily_job", {"dagster/partition": day}),
        deployment.launch("nightly_fred_job", {
            "dagster/asset_partition_range_start": "GDP",
            "dagster/asset_partition_range_end": "DGS10",
        }),
        deployment.launch("nightly_snapshots_job", {}),
        # brokerage: each connection's partition, as nightly_<provider>_connections does
        *(deployment.launch(f"nightly_{tag(run, 'dashtam/provider')}_connections_job",
                            {"dagster/partition": tag(run, "dagster/partition")})
          for run in connections),
    ]
    for run_id in runs:
        assert deployment.wait_finished(run_id, 420) == "SUCCESS", deployment.diagnostics()

    def built() -> bool:
        data = deployment.query(
            """{ assetNodes(group: {groupName: "marts", repositoryName: "__repository__",
                   repositoryLocationName: "dashtam_pipeline"}) {
                 assetKey { path } assetMaterializations(limit: 1) { timestamp } } }"""
        )
        nodes = data["assetNodes"]
        assert len(nodes) == 4
        return all(
            n["assetMaterializations"]
            and float(n["assetMaterializations"][0]["timestamp"]) / 1000 > started
            for n in nodes
        )

    try:
        deployment.wait("marts_automation to build the three marts", built, 420)
    except pytest.fail.Exception as failure:
        pytest.fail(f"{failure}\n{_mart_evaluations(deployment)}")


def _mart_evaluations(deployment: Deployment) -> str:
    """The latest automation-condition evaluation of each mart, one line per sub-condition:
    which part of the condition held the mart back."""
    lines = []
    for name in ("holdings", "daily_portfolio_value", "net_worth", "macro_monthly_panel"):
        data = deployment.query(
            """query E($key: AssetKeyInput!) { assetConditionEvaluationRecordsOrError(
                 assetKey: $key, limit: 1) { ... on AssetConditionEvaluationRecords {
                   records { evaluationId evaluationNodes { expandedLabel numTrue } } } } }""",
            key={"path": ["marts", name]},
        )
        for record in data["assetConditionEvaluationRecordsOrError"].get("records", []):
            lines.append(f"marts/{name} evaluation {record['evaluationId']}:")
            lines += [f"  {node['numTrue']}  {' '.join(node['expandedLabel'])}"
                      for node in record["evaluationNodes"]]
    return "\n".join(lines)
