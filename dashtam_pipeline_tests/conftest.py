"""Shared fixtures, and the rule that every recorded payload is a test case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.payloads import USED, all_payloads


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
    from dashtam_pipeline_tests.postgres import postgres_unavailable_reason, throwaway_postgres

    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
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
