"""Steps on Celery workers, for real: PostgreSQL (Dagster storage and the state store),
Redis (broker and result backend), ``dagster-daemon`` and two ``dagster-celery`` workers,
each started with the README's command in its own working directory, ``HOME`` and
``DAGSTER_HOME`` -- as on two hosts, except that they share the lake's path and the
machine -- over the loopback sandbox, with ``DASHTAM_EXECUTOR=celery``.

Proved from the event log and the lake: a backfill (30 FRED series in two runs, 20 trading
days of daily bars) and an 8-connection Alpaca sync run their steps on both workers, every row
lands once (keys unique, every series/day/connection present), no lock timeout or missing
file anywhere; then a worker is ``kill -9``'d while it runs a step, that step is delivered
again to the other worker (the broker's visibility timeout) and the table ends exactly as
the clean run left it. (The sizes are what proves the spread at the least CI time; the
100-partition, 1-vs-2-worker measurement is ``bench/scale.py``.)

The deployment fixtures' helpers (PostgreSQL, process start/stop, README commands) are
those of ``test_deployment.py``; this module adds Redis and the workers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from dashtam_pipeline_tests.loopback import KEYS
from dashtam_pipeline_tests.machine import skip_unless_available
from dashtam_pipeline_tests.postgres import postgres_unavailable_reason, throwaway_postgres
from dashtam_pipeline_tests.test_deployment import (
    BIN,
    COPY_YAML,
    DAEMON,
    MIGRATE,
    POOLS,
    ROOT,
    Deployment,
    _free_port,
    _shell,
    _start,
    _stop,
)

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.xdist_group("celery"),
    skip_unless_available(postgres_unavailable_reason()),
    skip_unless_available(None if shutil.which("redis-server") else
                          "redis-server is not installed (apt-get install redis-server)"),
]

#: The README's worker command, word for word (``{name}`` differs per worker); one step at
#: a time per worker, so two concurrent steps must use both.
WORKER = "dagster-celery worker start -A dashtam_pipeline.celery_app --name {name} -- " \
         "--concurrency 1"
WORKERS = ("worker-a", "worker-b")
#: The backfill is 100 partitions: 50 series (two runs, a backfill run holds 25) and 50
#: trading days of daily bars (two runs, a month of sessions each at most).
FRED_COUNT = 50
DAILY_FROM, DAILY_TO = "2024-01-02", "2024-03-13"
SYMBOLS = ("AAPL", "MSFT")
CONNECTIONS = 8
#: Seconds before the broker hands a dead worker's unacknowledged step to another worker:
#: above the longest step (seconds here, tens of seconds on a loaded 2-core machine), or a
#: step still running would be delivered twice.
VISIBILITY_TIMEOUT = 60
#: FRED observations fetched: every series, half a year (steps stay short).
FRED_FROM, FRED_TO = "2024-01-01", "2024-06-30"
#: Every provider request waits this long: steps last long enough to be caught running.
LATENCY_SECONDS = 0.05
ERROR_PATTERNS = re.compile(
    r"could not lock|LockTimeout|No such file|FileNotFoundError|file not found", re.IGNORECASE
)


def _redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=(directory / "redis.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return process
        time.sleep(0.1)
    _stop(process)
    pytest.fail("redis-server did not start")


def _start_worker(name: str, env: dict[str, str], deployment: Deployment) -> None:
    """A worker as on its own host: its own cwd, HOME and DAGSTER_HOME (with the shipped
    dagster.yaml), nothing from the launching process but the environment variables."""
    home = deployment.data_dir / "hosts" / name
    (home / "dagster_home").mkdir(parents=True)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    worker_env = {**env, "HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    worker_env.pop("PYTHONPATH", None)  # the package is installed: no path into the clone
    log = deployment.data_dir / f"{name}.log"
    deployment.logs[name] = log
    argv = WORKER.format(name=name).split()
    argv[0] = str(BIN / argv[0])
    with log.open("wb") as sink:
        deployment.processes[name] = subprocess.Popen(
            argv, env=worker_env, cwd=home, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def celery_cluster(
    data_dir: Path,
    *,
    workers: tuple[str, ...] = WORKERS,
    executor: str = "celery",
    fred_count: int = FRED_COUNT,
    latency_seconds: float = LATENCY_SECONDS,
    connections: int = CONNECTIONS,
) -> Iterator[tuple[Deployment, Any]]:
    """PostgreSQL, Redis, the loopback sandbox (every request ``latency_seconds`` late), the
    daemon and ``workers`` (none with ``executor="multiprocess"``); yields the deployment and
    the sandbox app (its request counts). ``bench/scale.py`` uses it too."""
    from cryptography.fernet import Fernet

    from dashtam_pipeline.sandbox.app import SandboxApp
    from dashtam_pipeline.sandbox.fred_data import benchmark_series_ids
    from dashtam_pipeline.sandbox.server import environment_lines, serve

    app = SandboxApp()
    app.add_fault(r".", delay_seconds=latency_seconds)  # every request, forever
    redis_port = _free_port()
    with throwaway_postgres() as url, serve(app=app) as sandbox:
        import psycopg2

        con = psycopg2.connect(url)
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE dashtam_state")
        con.close()
        pg = urlparse(url)
        broker = f"redis://127.0.0.1:{redis_port}/0"
        env = {
            **os.environ,
            "DAGSTER_PG_HOST": str(pg.hostname),
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_USER": str(pg.username),
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": pg.path.lstrip("/"),
            "DAGSTER_HOME": str(data_dir / "dagster_home"),
            "DASHTAM_DATA_DIR": str(data_dir),
            "DASHTAM_STATE_URL": url.rsplit("/", 1)[0] + "/dashtam_state",
            "DASHTAM_SECRET_KEY": Fernet.generate_key().decode(),
            "DASHTAM_EXECUTOR": executor,
            "DASHTAM_CELERY_BROKER": broker,
            "DASHTAM_CELERY_BACKEND": broker,
            "DASHTAM_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "DASHTAM_SANDBOX": "false",
            "DASHTAM_SYMBOLS": ",".join(SYMBOLS),
            "DASHTAM_FRED_SERIES": ",".join(benchmark_series_ids(fred_count)),
            # code-server calls on a loaded machine take longer than Dagster's 60 s default
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "180",
            "PYTHONPATH": str(ROOT),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **KEYS,
            **dict(line.split("=", 1) for line in environment_lines(sandbox.url)),
            # provider rate limits are not what these tests and bench/scale.py measure: a
            # limit caps throughput whatever the number of workers (FRED's 120 a minute
            # alone made a 100-series backfill take two minutes)
            **{f"{p}_REQUESTS_PER_MINUTE": "100000"
               for p in ("FMP", "POLYGON", "NEWS", "FRED")},
        }
        deployment = Deployment(env, data_dir, "")
        redis = _redis(redis_port, data_dir)
        try:
            _shell(COPY_YAML, env)
            _shell(MIGRATE, env)
            _shell(POOLS, env)
            _connect_users(env, connections)
            for name in workers if executor == "celery" else ():
                _start_worker(name, env, deployment)
            _start("dagster-daemon", DAEMON, env, deployment)
            if executor == "celery":
                _wait_for_workers(deployment, workers)
            yield deployment, app
        finally:
            for process in deployment.processes.values():
                _stop(process)
            _stop(redis)


@pytest.fixture(scope="module")
def cluster_and_sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, Any]]:
    with celery_cluster(tmp_path_factory.mktemp("celery")) as running:
        yield running


@pytest.fixture
def cluster(cluster_and_sandbox: tuple[Deployment, Any]) -> Deployment:
    return cluster_and_sandbox[0]


def _connect_users(env: dict[str, str], connections: int) -> None:
    """``connections`` users, each with their own Alpaca keys (in the shared state store)."""
    script = (
        "import uuid\n"
        "from dashtam_pipeline.connections import connect_user_keys\n"
        "from dashtam_pipeline.settings import load_settings\n"
        "s = load_settings()\n"
        f"for i in range({connections}):\n"
        "    connect_user_keys(s, 'alpaca', user_id=uuid.UUID(int=i + 1), alias='paper',\n"
        "                      key_id=f'key-{i}', secret_key=f'secret-{i}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=env["DASHTAM_DATA_DIR"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _wait_for_workers(deployment: Deployment, workers: tuple[str, ...]) -> None:
    def ready() -> bool:
        return all(deployment.logs[n].exists()
                   and "ready." in deployment.logs[n].read_text(errors="replace")
                   for n in workers)

    deployment.wait("both Celery workers to be ready", ready, 120)


# --- reading what happened ----------------------------------------------------------------
@contextlib.contextmanager
def _instance(deployment: Deployment) -> Iterator[Any]:
    from dagster import DagsterInstance

    keys = ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
            "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
    with pytest.MonkeyPatch.context() as patch:
        for key in keys:
            patch.setenv(key, deployment.env[key])
        with DagsterInstance.get() as instance:
            yield instance


def _celery_steps(instance: Any, run_ids: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(run id, step key, worker) of every "Executing steps ... in celery worker" event."""
    from dagster import DagsterEventType

    found = []
    for run in instance.get_runs():
        if run_ids is not None and run.run_id not in run_ids:
            continue
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            metadata = event.engine_event_data.metadata if event.engine_event_data else {}
            worker = metadata.get("Celery worker")
            if worker is not None:
                name = str(getattr(worker, "value", worker))
                found.append((run.run_id, str(event.step_key), name))
    return found


def _step_pids(instance: Any) -> set[int]:
    from dagster import DagsterEventType

    pids = set()
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS):
            if entry.dagster_event.pid is not None:
                pids.add(entry.dagster_event.pid)
    return pids


def _all_messages(instance: Any) -> list[str]:
    messages = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            messages.append(entry.message or "")
            if entry.dagster_event is not None and entry.dagster_event.is_step_failure:
                messages.append(str(entry.dagster_event.step_failure_data.error))
    return messages


def _materialize_at_once(deployment: Deployment, commands: list[tuple[str, ...]]) -> None:
    """``dashtam materialize`` for each argument list, all at once (their runs queue
    together, their steps compete for the two workers)."""
    processes = [
        subprocess.Popen([str(BIN / "dashtam"), "materialize", *args], env=deployment.env,
                         cwd=deployment.data_dir, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
        for args in commands
    ]
    outputs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (output + deployment.diagnostics()
                                         + _run_statuses(deployment))


def _run_statuses(deployment: Deployment) -> str:
    """Every run's status and partitions, and why each run that did not succeed stopped."""
    lines = []
    with _instance(deployment) as instance:
        for run in instance.get_runs():
            tags = {k: v for k, v in run.tags.items() if not k.startswith(".")}
            lines.append(f"{run.run_id[:8]} {run.status.value} {tags}")
            if run.status.value == "SUCCESS":
                continue
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or not (event.is_failure or event.event_type_value in (
                        "RUN_FAILURE", "ENGINE_EVENT", "STEP_FAILURE")):
                    continue
                error = str(getattr(event.event_specific_data, "error", None) or "")
                lines.append(f"    {event.event_type_value} {event.step_key or ''} "
                             f"{(entry.message or '')[:300]} {error[:1500]}")
    return "\n".join(lines)


def _wait_until_no_run_is_in_progress(deployment: Deployment, timeout: float = 600) -> None:
    def quiet() -> bool:
        with _instance(deployment) as instance:
            return all(r.is_finished for r in instance.get_runs())

    deployment.wait("every run to finish", quiet, timeout)


def _table(deployment: Deployment, table: str) -> pa.Table:
    from dashtam_pipeline.storage.lake import Lake, table_layout

    data = Lake(deployment.data_dir / "lake").read(table)
    key = table_layout(table).key
    duplicated = data.group_by(list(key)).aggregate([([], "count_all")]).filter(
        pa.compute.greater(pa.compute.field("count_all"), 1)
    )
    assert duplicated.num_rows == 0, f"{table}: duplicate keys {duplicated.slice(0, 5)}"
    return data.sort_by([(k, "ascending") for k in key])


# --- the tests ----------------------------------------------------------------------------
def test_the_readme_starts_workers_with_this_command() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Scaling out"):]
    assert WORKER.format(name="worker-1") in section


def test_a_backfill_and_a_sync_spread_over_both_workers_exactly_once(
    cluster: Deployment,
) -> None:
    from dashtam_pipeline.sandbox.fred_data import benchmark_series_ids
    from dashtam_pipeline.trading_calendar import is_trading_day

    started = time.monotonic()
    _materialize_at_once(cluster, [
        ("--select", "group:macro", "--from", FRED_FROM, "--to", FRED_TO),
        ("--select", "key:market/daily_bars", "--from", DAILY_FROM, "--to", DAILY_TO),
        ("--select", "key:brokerage/alpaca_*"),
    ])
    elapsed = time.monotonic() - started
    _wait_until_no_run_is_in_progress(cluster)  # retries, and marts built from the backfill

    with _instance(cluster) as instance:
        # the backfill's runs (marts_automation may still be building marts from them)
        # every run succeeded, or failed outside the steps and Dagster's retry of it succeeded
        # (on an overloaded machine the daemon's call to the code server can time out)
        status = {r.run_id: r.status.value for r in instance.get_runs()}
        retried = {r.run_id: r.tags.get("dagster/auto_retry_run_id")
                   for r in instance.get_runs()}
        assert status and all(
            s == "SUCCESS" or status.get(retried[run_id] or "") == "SUCCESS"
            for run_id, s in status.items()
        ), _run_statuses(cluster) + cluster.diagnostics()
        steps = _celery_steps(instance)
        workers = {worker.split("@")[0] for _, _, worker in steps}
        assert workers == set(WORKERS), steps
        assert len(_step_pids(instance)) >= 2  # step events name the worker processes
        errors = [m for m in _all_messages(instance) if ERROR_PATTERNS.search(m)]
    assert not errors, errors[:5]
    for name in WORKERS:
        log = cluster.logs[name].read_text(errors="replace")
        assert not ERROR_PATTERNS.search(log), log[-3000:]

    observations = _table(cluster, "macro.fred_observations")
    assert set(observations.column("series_id").to_pylist()) == set(
        benchmark_series_ids(FRED_COUNT))
    bars = _table(cluster, "market.daily_bars")
    first, last = dt.date.fromisoformat(DAILY_FROM), dt.date.fromisoformat(DAILY_TO)
    days = [first + dt.timedelta(n) for n in range((last - first).days + 1)]
    expected = {(s, d) for s in SYMBOLS for d in days if is_trading_day(d)}
    got = set(zip(bars.column("symbol").to_pylist(), bars.column("date").to_pylist(),
                  strict=True))
    assert {(s, d if isinstance(d, dt.date) else d.date()) for s, d in got} == expected
    accounts = _table(cluster, "brokerage.accounts")
    users = {str(uuid.UUID(int=i + 1)) for i in range(CONNECTIONS)}
    assert users <= set(accounts.column("user_id").to_pylist())
    _table(cluster, "brokerage.transactions")
    _table(cluster, "brokerage.positions")
    print(f"\nceleryd backfill + sync: {elapsed:.1f} s over {len(steps)} celery steps")


def test_a_killed_workers_step_is_retried_on_the_other_and_the_data_is_unchanged(
    cluster_and_sandbox: tuple[Deployment, Any],
) -> None:
    from dashtam_pipeline.storage.lake import Lake

    cluster, sandbox = cluster_and_sandbox
    daily_bars = ("--select", "key:market/daily_bars", "--from", DAILY_FROM, "--to", DAILY_TO)
    clean = _table(cluster, "market.daily_bars")
    if clean.num_rows == 0:  # run alone: the clean run first
        _materialize_at_once(cluster, [daily_bars])
        _wait_until_no_run_is_in_progress(cluster)
        clean = _table(cluster, "market.daily_bars")
    # slow providers (the first matching fault wins): the step is still running when its
    # worker is killed
    sandbox.clear_faults()
    sandbox.add_fault(r".", delay_seconds=5)
    shutil.rmtree(Lake(cluster.data_dir / "lake").table_dir("market.daily_bars"))
    with _instance(cluster) as instance:
        before = {r.run_id for r in instance.get_runs()}
    materialize = subprocess.Popen(
        [str(BIN / "dashtam"), "materialize", *daily_bars],
        env=cluster.env, cwd=cluster.data_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )

    def running_step() -> tuple[str, str, str] | None:
        with _instance(cluster) as instance:
            # this backfill's runs (not a marts run the automation launched meanwhile)
            new = [r.run_id for r in instance.get_runs() if r.run_id not in before
                   and r.tags.get("dashtam/launched_by") == "cli"]
            steps = _celery_steps(instance, new) if new else []
            return steps[0] if steps else None

    run_id, step_key, worker = cluster.wait("a step to start on a worker", running_step, 240)
    victim = worker.split("@")[0]
    process = cluster.processes.pop(victim)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    sandbox.clear_faults()  # the retry need not wait

    output, _ = materialize.communicate(timeout=600)
    assert materialize.returncode == 0, output.decode(errors="replace") + _run_statuses(cluster)
    with _instance(cluster) as instance:
        again = [w for r, s, w in _celery_steps(instance, [run_id]) if s == step_key]
    survivor = next(n for n in WORKERS if n != victim)
    assert [w.split("@")[0] for w in again] == [victim, survivor], again
    assert _table(cluster, "market.daily_bars").equals(clean)
