"""Shared fixtures, the rule that every recorded payload is a test case, and which
``dates`` tests run at which frozen instant."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline_tests.at_date import FROZEN_DATES
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.payloads import USED, all_payloads


@pytest.fixture(autouse=True)
def _no_fault_outlives_its_test() -> Iterator[None]:
    """The in-process sandbox is one per worker process (``SandboxApp.shared()``): a fault a
    test injects there must not reach the next test of that worker, which it did once (a
    permanent 400 on a sandbox user's Schwab transactions failed the demo test after it)."""
    yield
    from dashtam_pipeline.sandbox.app import SandboxApp

    if (shared := SandboxApp.shared_if_started()) is not None:
        shared.clear_faults()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty DASHTAM_DATA_DIR (and DAGSTER_HOME inside it) for one test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("DASHTAM_DATA_DIR", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.delenv("DASHTAM_STATE_URL", raising=False)
    monkeypatch.delenv("DASHTAM_SECRET_KEY", raising=False)
    monkeypatch.delenv("CHASE_IMPORT_DIR", raising=False)
    yield root


@pytest.fixture
def instance(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """The Dagster instance in the temporary DAGSTER_HOME, with the in-process sandbox
    settings (the sensor tests: partitions and runs live in a real instance)."""
    from dashtam_pipeline.instance import get_instance
    from dashtam_pipeline.settings import load_settings

    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    with get_instance(load_settings()) as test_instance:
        yield test_instance


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """At a named frozen instant of ``at_date`` (``DASHTAM_TEST_AT_NAME``), a ``dates``
    test that names the instants its outcome can differ at (``@pytest.mark.dates(at=(...))``,
    for the end-to-end ones whose minutes each instant would cost) runs only at those; one
    that names none runs at every instant."""
    name = os.environ.get("DASHTAM_TEST_AT_NAME")
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("dates")
        instants = marker.kwargs.get("at") if marker is not None else None
        if instants is not None and (unknown := set(instants) - set(FROZEN_DATES)):
            raise pytest.UsageError(
                f"{item.nodeid}: dates(at=...) names {sorted(unknown)}, not instants of "
                f"at_date.FROZEN_DATES ({', '.join(FROZEN_DATES)})")
        (drop if name and instants is not None and name not in instants else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` every test of an ``xdist_group`` must reach the same worker
    (a module's expensive fixtures, such as the UI's demo, run once): fail at once, by name,
    where pytest-xdist's grouping is not in effect, instead of silently doubling that work."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist's workers only
        return
    ungrouped = [item.nodeid for item in session.items
                 if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(
            f"--dist loadgroup is not grouping tests (first: {ungrouped[0]}); this pytest and "
            "pytest-xdist do not work together, see the pin in pyproject.toml")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Under pytest-xdist the payloads are read in the workers: gather what each read."""
    USED.update(getattr(node, "workeroutput", {}).get("payloads_used", ()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """When the whole suite ran, fail if a payload file was never read by a test."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand its reads to the controller
        workeroutput["payloads_used"] = sorted(USED)
        return
    # `make test` runs the suite as "not deployment" (that test runs alone after it): still
    # the whole suite as far as payloads go, since the deployment test reads none
    partial_marks = session.config.option.markexpr not in ("", "not deployment")
    if exitstatus != 0 or session.config.option.keyword or partial_marks:
        return
    args = [Path(a).resolve() for a in session.config.args]
    suite = Path(__file__).parent.resolve()
    if args and not any(a == suite or a == suite.parent for a in args):
        return
    unused = sorted(set(all_payloads()) - USED)
    if unused:
        print("\nRecorded payloads no test read (every payload file is a test case):")
        for name in unused:
            print(f"  {name}")
        session.exitstatus = 1


@pytest.fixture
def connections_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock patched in as the pipeline's (``connections.utcnow``); pass it to the
    sandbox too (``clocked_sandbox``) and both move together, so no test waits."""
    from dashtam_pipeline import connections

    fake = FakeClock()
    monkeypatch.setattr(connections, "utcnow", fake)
    return fake


@pytest.fixture
def clocked_sandbox(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, connections_clock: FakeClock
) -> Iterator[SandboxServer]:
    """The sandbox on loopback, configured as in production, on ``connections_clock``."""
    from dashtam_pipeline.sandbox.app import SandboxApp
    from dashtam_pipeline_tests.loopback import configured_sandbox

    with configured_sandbox(monkeypatch, app=SandboxApp(clock=connections_clock)) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole session (skips where none can be started)."""
    from dashtam_pipeline_tests.machine import skip_or_fail
    from dashtam_pipeline_tests.postgres import postgres_unavailable_reason, throwaway_postgres

    reason = postgres_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh state store URL of each kind: a SQLite file, and a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    import uuid

    import psycopg2

    server = request.getfixturevalue("postgres_url")
    name = f"state_{uuid.uuid4().hex[:12]}"
    con = psycopg2.connect(server)
    con.autocommit = True
    con.cursor().execute(f"CREATE DATABASE {name}")
    con.close()
    return server.rsplit("/", 1)[0] + f"/{name}"
