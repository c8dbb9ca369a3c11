"""The Schwab connection end to end over the sandbox's OAuth server on loopback, as a
user and the pipeline live it: connect with the CLI (the browser's redirect followed with
httpx), a data call, the access token refreshed after 31 minutes, the login expired after
8 days (the connection EXPIRED, Schwab's assets skipped with the command to run), then a
reconnect. One clock drives the sandbox and the pipeline, so no test waits."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dashtam_pipeline import connections
from dashtam_pipeline.cli import main
from dashtam_pipeline.clients import build_client
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.connections import StoredTokens, current_connection, load_cipher
from dashtam_pipeline.domain import ConnectionStatus
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.loopback import (
    KEYS,
    connect_schwab_with_cli,
    materialize,
)

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: token expiries across New York's DST jump and
#: years ahead
pytestmark = [pytest.mark.integration,
              pytest.mark.dates(at=("dst_spring", "years_ahead"))]

SCHWAB = ProviderSlug.SCHWAB


def schwab_connection(capsys: pytest.CaptureFixture[str]) -> dict:
    """Schwab's entry in `dashtam connections --json`."""
    assert main(["connections", "--json"]) == 0
    return next(e for e in json.loads(capsys.readouterr().out) if e["provider"] == "schwab")


def stored_tokens() -> StoredTokens:
    settings = load_settings()
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.credentials is not None
    return StoredTokens.unseal(load_cipher(settings), conn.credentials, "schwab")


def fetch_accounts() -> int:
    """A data call through the production client (token source, resilience hooks)."""
    client = build_client(SCHWAB, load_settings())
    try:
        return len(client.fetch_accounts(FetchRequest()).frame)
    finally:
        client.close()


def test_connect_refresh_expire_reconnect(
    clocked_sandbox: SandboxServer, connections_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    start = connections_clock()
    printed = connect_schwab_with_cli(capsys)
    relogin = start + dt.timedelta(days=7)
    assert f"re-login needed by {relogin:%Y-%m-%d %H:%M} UTC" in printed
    entry = schwab_connection(capsys)
    assert entry["status"] == "ACTIVE"
    assert entry["refresh_expires_at"] == relogin.isoformat(timespec="microseconds")
    connection_id = entry["id"]

    # a data call works, and the sync is recorded
    assert fetch_accounts() > 0
    assert connections.record_successful_sync(load_settings(), "schwab", connections_clock())
    synced_at = connections_clock().isoformat(timespec="microseconds")
    assert schwab_connection(capsys)["last_sync_at"] == synced_at
    seen = [stored_tokens()]

    # 31 minutes later the access token has lapsed: the token source refreshes it
    connections_clock.advance(minutes=31)
    assert fetch_accounts() > 0
    seen.append(stored_tokens())
    assert seen[1].access_token != seen[0].access_token
    assert seen[1].refresh_expires_at == relogin  # Schwab never extends the login
    renewed = connections_clock() + dt.timedelta(minutes=30)
    assert schwab_connection(capsys)["expires_at"] == renewed.isoformat(timespec="microseconds")

    # 8 days later the login is over: EXPIRED, and the message says what to run
    connections_clock.advance(days=8)
    with pytest.raises(ProviderError) as caught:
        fetch_accounts()
    assert caught.value.kind is ErrorKind.NOT_CONNECTED
    assert caught.value.message == (
        f"Schwab login expired on {relogin:%Y-%m-%d %H:%M} UTC: run `dashtam connect schwab`")
    assert schwab_connection(capsys)["status"] == "EXPIRED"
    # the pipeline skips Schwab's assets with that reason instead of failing
    report = materialize("key:brokerage/schwab_accounts")
    asset = report.assets["brokerage/schwab_accounts"]
    assert (asset.status, report.ok) == ("skipped", True), asset.detail
    assert "run `dashtam connect schwab`" in asset.detail

    # reconnect: the same connection, ACTIVE again, data flows
    printed = connect_schwab_with_cli(capsys)
    relogin_by = connections_clock() + dt.timedelta(days=7)
    assert f"re-login needed by {relogin_by:%Y-%m-%d %H:%M} UTC" in printed
    entry = schwab_connection(capsys)
    assert (entry["id"], entry["status"]) == (connection_id, ConnectionStatus.ACTIVE.value)
    assert fetch_accounts() > 0
    seen.append(stored_tokens())

    # nothing under DASHTAM_DATA_DIR holds a token or a provider key in clear
    settings = load_settings()
    stored = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    secrets = [t for tokens in seen for t in (tokens.access_token, tokens.refresh_token,
                                               tokens.id_token) if t]
    for value in [*secrets, *KEYS.values()]:
        assert value.encode() not in stored, "a secret is stored in clear"
    key = (settings.data_dir / ".secret_key").read_bytes().strip()
    state = b"".join(p.read_bytes() for p in settings.data_dir.glob("state.db*"))
    assert key not in state
