"""Hostile conditions at run time: what each failure looks like to the operator.

* A Schwab data endpoint answering 5xx (with an OAuth-looking ``{"error": ...}`` body, as
  gateways send) is transient: retried, counted by the circuit breaker, and it leaves the
  login alone. Before, it was a permanent "token endpoint refused the request", sent once.
* A data endpoint's 401 refreshes the access token once (the token endpoint decides).
* A failing provider and an unreachable ``DASHTAM_STATE_URL`` make ``dashtam
  materialize`` exit 1 with one line per failed asset that names it and the root cause
  (not ``DagsterExecutionStepExecutionError``); a wrong ``DASHTAM_SECRET_KEY`` is refused
  before any run starts, in one sentence. No stack trace, no DEBUG line and no secret on
  the terminal.
* ``dashtam connect schwab`` with no terminal says to pass ``--code``/``--redirect-url``.
* Three first runs started together on an empty data dir all succeed (before, Dagster's
  SQLite migrations raced: ``sqlite3.IntegrityError``).

Sandbox over real loopback sockets with faults injected through ``POST /_sandbox/faults``;
the CLI checks run the installed ``dashtam`` script in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from dashtam_pipeline import connections
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore
from dashtam_pipeline_tests.loopback import (
    KEYS,
    configured_sandbox,
    connect_schwab_like_a_user,
    materialize,
)

pytestmark = pytest.mark.integration

DASHTAM = Path(sys.executable).with_name("dashtam")
SCHWAB_DATA_ROUTE = r"^/schwab/trader/"
#: What an API gateway in front of Schwab answers when the service behind it is down:
#: an OAuth-looking body on a data endpoint.
GATEWAY_500_BODY = json.dumps({"error": "Internal Server Error",
                               "error_description": "upstream unavailable"})
#: Words that must never reach the terminal of a failed run.
NOT_ON_STDERR = ("Traceback", "DEBUG", "DagsterExecutionStepExecutionError",
                 "Stack Trace", 'File "')


@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        yield running
        running.app.clear_faults()


# -- helpers -------------------------------------------------------------------------------
def inject(server: SandboxServer, **fault: object) -> None:
    """``POST /_sandbox/faults``, as an operator's chaos script would."""
    response = httpx.post(f"{server.url}/_sandbox/faults", json=fault, timeout=10)
    assert response.status_code == 201, response.text


def requests_to(server: SandboxServer, prefix: str) -> int:
    counts = httpx.get(f"{server.url}/_sandbox/requests", timeout=10).json()
    return sum(n for key, n in counts.items() if key.startswith(prefix))


def state(sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    return StateStore(load_settings().state_url).query(sql, params)


def schwab_status() -> str:
    connection = connections.current_connection(
        connections.ConnectionRepository.from_settings(load_settings()), ProviderSlug.SCHWAB)
    assert connection is not None
    return connection.status.value


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [str(DASHTAM)] if DASHTAM.exists() else [sys.executable, "-m",
                                                       "dashtam_pipeline.cli"]
    return subprocess.run([*command, *args], env=env or dict(os.environ), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_clean_stderr(stderr: str, *secrets: str) -> None:
    for word in (*NOT_ON_STDERR, *secrets):
        assert word not in stderr, (word, stderr)


# -- Schwab: 5xx on a data endpoint is transient -------------------------------------------
def test_schwab_5xx_on_a_data_endpoint_is_retried_and_counted_by_the_breaker(
    server: SandboxServer,
) -> None:
    connect_schwab_like_a_user()
    inject(server, route_regex=SCHWAB_DATA_ROUTE, status=503, body=GATEWAY_500_BODY)

    report = materialize("key:brokerage/schwab_positions")

    entry = report.assets["brokerage/schwab_positions"]
    assert entry.status == "failed"
    assert "schwab" in entry.detail and "unavailable" in entry.detail, entry.detail
    assert "HTTP 503" in entry.detail and "token endpoint" not in entry.detail
    assert "DagsterExecutionStepExecutionError" not in entry.detail
    assert requests_to(server, "schwab /trader/") == 3  # the attempt and its two retries
    outcomes = [r[0] for r in state(
        "SELECT outcome FROM call_audit WHERE provider = 'schwab' ORDER BY id")]
    assert outcomes.count("unavailable") == 3
    (row,) = state("SELECT state, consecutive_failures FROM circuit_breakers "
                   "WHERE provider = 'schwab'")
    assert (row[0], int(row[1])) == ("open", 3)
    assert schwab_status() == "ACTIVE"  # a data endpoint's outage is not a login problem


def test_a_burst_of_schwab_gateway_500s_is_absorbed_by_retries(server: SandboxServer) -> None:
    connect_schwab_like_a_user()
    inject(server, route_regex=SCHWAB_DATA_ROUTE, status=500, body=GATEWAY_500_BODY, count=2)

    report = materialize("key:brokerage/schwab_positions")

    assert report.ok, report.assets
    assert requests_to(server, "schwab /trader/") == 3
    assert schwab_status() == "ACTIVE"


def test_a_refused_access_token_is_refreshed_once_and_the_login_kept(
    server: SandboxServer,
) -> None:
    connect_schwab_like_a_user()
    token_calls = requests_to(server, "schwab /v1/oauth/token")
    inject(server, route_regex=SCHWAB_DATA_ROUTE, status=401,
           body=json.dumps({"message": "Client not authorized", "errors": ["expired"]}),
           count=1)

    report = materialize("key:brokerage/schwab_positions")

    assert report.ok, report.assets
    assert requests_to(server, "schwab /v1/oauth/token") == token_calls + 1  # one refresh
    assert schwab_status() == "ACTIVE"


# -- the CLI: one line per failure, no traceback -------------------------------------------
def test_a_failing_provider_is_named_with_its_root_cause_and_no_traceback(
    server: SandboxServer,
) -> None:
    inject(server, route_regex=r"^/fred/", status=503)

    env = dict(os.environ) | {"DASHTAM_FRED_SERIES": "GDP"}  # one series: its 503s decide
    result = run_cli("materialize", "--select", "key:macro/fred_series", env=env)

    assert result.returncode == 1, result.stderr
    failure = [line for line in result.stderr.splitlines()
               if line.startswith("materialize: macro/fred_series failed:")]
    assert len(failure) == 1, result.stderr
    assert failure[0].startswith("materialize: macro/fred_series failed: fred: unavailable")
    assert "HTTP 503" in failure[0], failure[0]
    assert_clean_stderr(result.stderr, *KEYS.values())
    assert "FAIL  macro/fred_series" in result.stdout


def test_a_wrong_secret_key_is_a_sentence(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    monkeypatch.setenv("DASHTAM_SECRET_KEY", old_key)
    from dashtam_pipeline.demo import connect_sandbox_schwab

    connect_sandbox_schwab(load_settings())  # tokens stored under the old key

    env = dict(os.environ) | {"DASHTAM_SECRET_KEY": new_key}
    result = run_cli("materialize", "--select", "key:brokerage/schwab_positions", env=env)

    # refused before any run starts (load_cipher checks the newest sealed blob), so the
    # wrong key never seals anything beside the old key's credentials
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one sentence, one line
    assert result.stderr.startswith(
        "dashtam materialize: DASHTAM_SECRET_KEY cannot decrypt the credentials already "
        "stored (the newest are schwab's), so nothing was read or sealed with it: "), \
        result.stderr
    assert_clean_stderr(result.stderr, old_key, new_key)


def test_an_unreachable_state_store_is_a_sentence_without_its_password(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg2")
    password = "pg-pass-6b1e0c"
    env = dict(os.environ) | {
        "DASHTAM_SANDBOX": "true",
        "DASHTAM_STATE_URL": f"postgresql://dashtam:{password}@127.0.0.1:1/dashtam",
        "DASHTAM_FRED_SERIES": "GDP",
    }
    result = run_cli("materialize", "--select", "key:macro/fred_series", env=env)

    assert result.returncode == 1, result.stderr
    assert "macro/fred_series" in result.stderr
    assert "cannot connect to the PostgreSQL state store at 127.0.0.1" in result.stderr
    assert_clean_stderr(result.stderr, password)


def test_connect_without_a_terminal_says_what_to_pass(data_dir: Path) -> None:
    env = dict(os.environ) | {"DASHTAM_SANDBOX": "true"}
    result = run_cli("connect", "schwab", env=env)  # stdin is /dev/null

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "dashtam connect: no terminal to paste the redirect URL into: pass --code or "
        "--redirect-url"
    ]
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr


# -- concurrent first runs -----------------------------------------------------------------
def test_three_first_runs_at_once_on_an_empty_data_dir_all_succeed(data_dir: Path) -> None:
    assert not any(data_dir.iterdir())
    env = dict(os.environ) | {"DASHTAM_SANDBOX": "true", "DASHTAM_FRED_SERIES": "GDP,UNRATE"}
    command = [str(DASHTAM)] if DASHTAM.exists() else [sys.executable, "-m",
                                                       "dashtam_pipeline.cli"]
    runs = [
        subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for args in (["materialize", "--select", "key:macro/fred_series"],
                     ["materialize", "--select", "key:macro/fred_series"],
                     ["demo", "--select", "key:macro/fred_series"])
    ]
    results = [(run.returncode, *run.communicate(timeout=600)) for run in runs]
    results = [(run.returncode, out, err) for run, (_, out, err) in zip(runs, results,
                                                                         strict=True)]
    for code, out, err in results:
        assert code == 0, err
        assert "ok    macro/fred_series" in out, out
        assert_clean_stderr(err)  # no DEBUG line, no traceback when nothing failed
    secret_key = data_dir / ".secret_key"
    assert len(secret_key.read_bytes().strip()) == 44  # one whole key, not two halves
