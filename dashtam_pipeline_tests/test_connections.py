"""Connections at work, on both state-store backends: credentials encrypted at rest (rotation,
wrong key), the Schwab token source refreshing and expiring its connection, and API-key
providers' connections following their keys. Schwab's token endpoint is the sandbox's,
in process, on a clock the test moves."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from dashtam_pipeline import connections
from dashtam_pipeline.cli import main
from dashtam_pipeline.clients.base import sandbox_base_url
from dashtam_pipeline.connections import (
    SecretKeyError,
    StoredTokens,
    connect_oauth_provider,
    current_connection,
    ensure_api_key_connections,
    load_cipher,
    mark_auth_failure,
    record_successful_sync,
    token_source_for,
)
from dashtam_pipeline.domain import ConnectionStatus, CredentialType, Failure
from dashtam_pipeline.errors import ConfigurationError, ErrorKind, PipelineError, ProviderError
from dashtam_pipeline.providers.schwab import client as schwab
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline_tests.clocks import FakeClock

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

START = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
SCHWAB = ProviderSlug.SCHWAB
KEY = Fernet.generate_key().decode()
CALLBACK = "https://127.0.0.1:8182"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sandbox(clock: FakeClock) -> httpx.BaseTransport:
    return httpx.WSGITransport(app=SandboxApp(clock=clock))


@pytest.fixture
def settings(state_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("FMP_API_KEY", "POLYGON_API_KEY", "FRED_API_KEY", "NEWS_API_KEY",
                 "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return schwab_settings(state_url, KEY)


def schwab_settings(state_url: str, secret_key: str, **extra: object) -> Settings:
    return load_settings(
        dashtam_state_url=state_url, dashtam_secret_key=secret_key, dashtam_sandbox=False,
        schwab_app_key="app-key-SECRET-A", schwab_app_secret="app-secret-SECRET-B",
        schwab_base_url=sandbox_base_url(SCHWAB), schwab_callback_url=CALLBACK, **extra,
    )


def login(settings: Settings, transport: httpx.BaseTransport) -> str:
    """The browser's part: open the authorize URL, get redirected with a code."""
    with httpx.Client(transport=transport, follow_redirects=False) as browser:
        response = browser.get(schwab.authorize_url(settings))
    assert response.status_code in (302, 303)
    return response.headers["location"]


def connect(settings: Settings, transport: httpx.BaseTransport, clock: FakeClock):
    return connect_oauth_provider("schwab", settings, redirect_url=login(settings, transport),
                                  transport=transport, now=clock())


def tokens_of(settings: Settings) -> StoredTokens:
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.credentials is not None
    return StoredTokens.unseal(load_cipher(settings), conn.credentials, "schwab")


def raw_rows(settings: Settings) -> bytes:
    rows = ConnectionRepository.from_settings(settings).store.query(
        "SELECT * FROM provider_connections")
    return b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                    for row in rows for v in row)


def refused_refresh() -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "refresh_token_authentication_error",
                                         "error_description": "Failed refresh token"})
    return httpx.MockTransport(answer)


def no_call() -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request to {request.url.path}")
    return httpx.MockTransport(answer)


# -- encryption ----------------------------------------------------------------------------
def test_tokens_encrypted_at_rest_with_rotation_and_wrong_key(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock, state_url: str
) -> None:
    conn = connect(settings, sandbox, clock)
    assert conn.status is ConnectionStatus.ACTIVE
    assert conn.credentials is not None
    assert conn.credentials.credential_type is CredentialType.OAUTH2
    assert conn.credentials.expires_at == START + dt.timedelta(minutes=30)
    assert conn.credentials.refresh_expires_at == START + dt.timedelta(days=7)
    tokens = tokens_of(settings)

    raw = raw_rows(settings)
    for secret in (tokens.access_token, tokens.refresh_token, tokens.id_token or "-", KEY,
                   "app-key-SECRET-A", "app-secret-SECRET-B"):
        assert secret.encode() not in raw
    assert b"access_token" not in raw  # the token payload itself is sealed

    rotated = schwab_settings(state_url, f"{Fernet.generate_key().decode()},{KEY}")
    assert tokens_of(rotated) == tokens
    wrong = schwab_settings(state_url, Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match="cannot decrypt the credentials already stored"):
        token_source_for(SCHWAB, wrong, transport=sandbox, clock=clock).access_token()


def test_a_wrong_key_seals_nothing(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock, state_url: str
) -> None:
    """A wrong key is refused before it seals anything: new credentials sealed with it
    would sit beside the old ones, and no single key could open the store again."""
    connect(settings, sandbox, clock)
    before = raw_rows(settings)
    wrong = schwab_settings(state_url, Fernet.generate_key().decode(),
                            fmp_api_key="fmp-key-SECRET-1")
    with pytest.raises(SecretKeyError) as caught:
        ensure_api_key_connections(wrong, START)
    message = str(caught.value)
    assert message.startswith("DASHTAM_SECRET_KEY cannot decrypt the credentials already "
                              "stored (the newest are schwab's)")
    assert KEY not in message and wrong.dashtam_secret_key is not None
    assert wrong.dashtam_secret_key.get_secret_value() not in message
    assert raw_rows(settings) == before  # no connection made, none changed
    # the right key still opens everything, and may go on sealing
    keyed = schwab_settings(state_url, KEY, fmp_api_key="fmp-key-SECRET-1")
    assert [c.provider_slug for c in ensure_api_key_connections(keyed, START)] == ["fmp"]
    assert tokens_of(keyed).access_token


def test_generated_key_file_is_private(data_dir: Path) -> None:
    load_cipher(load_settings())
    key_file = data_dir / ".secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # a malformed key is refused when the settings are read, without quoting it
    with pytest.raises(ConfigurationError, match="DASHTAM_SECRET_KEY must be one or more") as e:
        load_settings(dashtam_secret_key="not-a-key")
    assert "not-a-key" not in str(e.value)


# -- Schwab: the token source --------------------------------------------------------------
def test_token_source_refreshes_within_five_minutes_of_expiry(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    connect(settings, sandbox, clock)
    source = token_source_for(SCHWAB, settings, transport=sandbox, clock=clock)
    first = source.access_token()
    clock.advance(minutes=24)
    assert source.access_token() == first  # 6 minutes left: still good
    clock.advance(minutes=2)
    fresh = source.access_token()  # 4 minutes left: refreshed
    assert fresh != first
    stored = tokens_of(settings)
    assert stored.access_token == fresh
    assert stored.expires_at == clock() + dt.timedelta(minutes=30)
    assert stored.refresh_expires_at == START + dt.timedelta(days=7)  # never extended
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.status is ConnectionStatus.ACTIVE


def test_lapsed_refresh_token_expires_the_connection_without_a_call(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    connect(settings, sandbox, clock)
    clock.advance(days=7, seconds=1)
    source = token_source_for(SCHWAB, settings, transport=no_call(), clock=clock)
    with pytest.raises(ProviderError) as caught:
        source.access_token()
    assert caught.value.kind is ErrorKind.NOT_CONNECTED
    assert caught.value.message == (
        "Schwab login expired on 2026-11-29 12:00 UTC: run `dashtam connect schwab`")
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.status is ConnectionStatus.EXPIRED
    assert conn.needs_reauthentication()
    with pytest.raises(ProviderError, match="login expired on 2026-11-29"):
        source.access_token()  # stays expired: no call, same reason


def test_refused_refresh_token_expires_the_connection(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    connect(settings, sandbox, clock)
    clock.advance(days=2)  # the refresh token should live, but Schwab refuses it
    source = token_source_for(SCHWAB, settings, transport=refused_refresh(), clock=clock)
    with pytest.raises(ProviderError, match=r"login expired on 2026-11-24 12:00 UTC: run "
                                            r"`dashtam connect schwab`") as caught:
        source.access_token()
    assert caught.value.kind is ErrorKind.NOT_CONNECTED
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.status is ConnectionStatus.EXPIRED
    assert conn.status_reason == "the provider refused the refresh token"


def test_refused_app_credentials_skip_but_keep_the_connection(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    connect(settings, sandbox, clock)
    clock.advance(minutes=28)

    def invalid_client(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client",
                                         "error_description": "Unauthorized"})

    source = token_source_for(SCHWAB, settings, transport=httpx.MockTransport(invalid_client),
                              clock=clock)
    with pytest.raises(ProviderError, match="SCHWAB_APP_KEY") as caught:
        source.access_token()
    assert caught.value.kind is ErrorKind.NOT_CONNECTED
    conn = current_connection(ConnectionRepository.from_settings(settings), SCHWAB)
    assert conn is not None and conn.status is ConnectionStatus.ACTIVE  # a config problem


def test_reconnect_reactivates_the_same_connection(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    first = connect(settings, sandbox, clock)
    clock.advance(days=8)
    with pytest.raises(ProviderError):
        token_source_for(SCHWAB, settings, transport=sandbox, clock=clock).access_token()
    again = connect(settings, sandbox, clock)
    assert again.id == first.id and again.status is ConnectionStatus.ACTIVE
    assert again.connected_at == START
    assert again.credentials is not None
    assert again.credentials.refresh_expires_at == clock() + dt.timedelta(days=7)
    assert token_source_for(SCHWAB, settings, transport=sandbox, clock=clock).access_token()


def test_refused_code_leaves_no_connection_until_a_good_login(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    # a new connection is stored only once its code is exchanged: mistyped codes under
    # new aliases used to leave one junk FAILED connection each
    for alias in (None, "IRA", "typo"):
        with pytest.raises(ProviderError) as refused:
            connect_oauth_provider("schwab", settings, code="C0.bogus.code@",
                                   transport=sandbox, now=clock(), alias=alias)
        # the code was refused, not a refresh token: the sentence says what to do now
        assert "Schwab refused the authorization code" in str(refused.value)
        assert "refresh token" not in str(refused.value) and "bogus" not in str(refused.value)
    repo = ConnectionRepository.from_settings(settings)
    assert repo.find_all() == []
    with pytest.raises(ProviderError, match="no Schwab connection"):
        token_source_for(SCHWAB, settings, transport=sandbox, clock=clock).access_token()
    fixed = connect(settings, sandbox, clock)
    assert fixed.status is ConnectionStatus.ACTIVE
    assert [c.id for c in repo.find_all()] == [fixed.id]


@pytest.mark.parametrize("alias", ["", "   ", "evil\nalias\x1b[31m", "a\u202eb", "x" * 100_000])
def test_a_bad_alias_is_refused_before_anything_is_stored(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock, alias: str
) -> None:
    with pytest.raises(PipelineError, match=r"^alias must be 1 to 64 printable characters"):
        connect_oauth_provider("schwab", settings, redirect_url=login(settings, sandbox),
                               transport=sandbox, now=clock(), alias=alias)
    with pytest.raises(PipelineError, match=r"^alias must be 1 to 64 printable characters"):
        connections.connect_user_keys(settings, "alpaca", user_id=uuid.uuid4(), alias=alias,
                                      key_id="PKKEY", secret_key="secret")
    assert ConnectionRepository.from_settings(settings).find_all() == []


def test_an_alias_is_stored_stripped_and_found_again(
    settings: Settings, sandbox: httpx.BaseTransport, clock: FakeClock
) -> None:
    first = connect_oauth_provider("schwab", settings, redirect_url=login(settings, sandbox),
                                   transport=sandbox, now=clock(), alias="  My Schwab IRA ")
    assert first.alias == "My Schwab IRA"
    again = connect_oauth_provider("schwab", settings, redirect_url=login(settings, sandbox),
                                   transport=sandbox, now=clock(), alias="My Schwab IRA")
    assert again.id == first.id


@pytest.mark.parametrize(("key_id", "secret"), [
    ("ключ", "Sx9-q"), ("PK 77", "Sx9-q"), ("PKKEY", "Sx\x009-q"), ("PKKEY", "S" * 257),
    ("PK\u00e9", "Sx9-q"),
])
def test_user_keys_that_cannot_travel_in_a_header_are_refused_unshown(
    settings: Settings, key_id: str, secret: str
) -> None:
    with pytest.raises(PipelineError, match="visible ASCII characters") as caught:
        connections.connect_user_keys(settings, "alpaca", user_id=uuid.uuid4(),
                                      alias="paper", key_id=key_id, secret_key=secret)
    assert key_id not in str(caught.value) and secret not in str(caught.value)
    assert ConnectionRepository.from_settings(settings).find_all() == []


def test_never_connected_says_what_to_run(settings: Settings, clock: FakeClock) -> None:
    with pytest.raises(ProviderError, match="no Schwab connection: run `dashtam connect "
                                            "schwab`") as caught:
        token_source_for(SCHWAB, settings, transport=no_call(), clock=clock).access_token()
    assert caught.value.kind is ErrorKind.NOT_CONNECTED


# -- API-key providers ---------------------------------------------------------------------
@pytest.fixture
def keyed(state_url: str, settings: Settings) -> Iterator[Settings]:
    yield schwab_settings(state_url, KEY, fmp_api_key="fmp-key-SECRET-1")


def by_provider(settings: Settings) -> dict[str, ConnectionStatus]:
    return {c.provider_slug: c.status for c in
            ConnectionRepository.from_settings(settings).find_all()}


def test_api_key_connections_follow_the_keys(keyed: Settings, state_url: str) -> None:
    found = ensure_api_key_connections(keyed, START)
    assert [(c.provider_slug, c.status) for c in found] == [("fmp", ConnectionStatus.ACTIVE)]
    fmp = found[0]
    assert fmp.credentials is not None
    assert fmp.credentials.credential_type is CredentialType.API_KEY
    assert fmp.credentials.expires_at is None
    assert b"fmp-key-SECRET-1" not in raw_rows(keyed)
    # nothing changed: nothing written
    again = ensure_api_key_connections(keyed, START + dt.timedelta(hours=1))
    assert again[0].updated_at == START

    # a 401 on a key that worked: REVOKED, and it stays so while the key is the same
    assert mark_auth_failure(keyed, "fmp", "HTTP 401 Invalid API KEY", START)
    ensure_api_key_connections(keyed, START + dt.timedelta(hours=2))
    assert by_provider(keyed) == {"fmp": ConnectionStatus.REVOKED}
    assert isinstance(record_successful_sync(keyed, "fmp", START), Failure)

    # a new key: the same connection, ACTIVE again
    new_key = schwab_settings(state_url, KEY, fmp_api_key="fmp-key-SECRET-2")
    (reactivated,) = ensure_api_key_connections(new_key, START + dt.timedelta(hours=3))
    assert reactivated.id == fmp.id and reactivated.status is ConnectionStatus.ACTIVE
    assert record_successful_sync(new_key, "fmp", START + dt.timedelta(hours=4))
    synced = current_connection(ConnectionRepository.from_settings(new_key), "fmp")
    assert synced is not None and synced.last_sync_at == START + dt.timedelta(hours=4)

    # keys removed: DISCONNECTED (kept as history); set again: a new connection
    no_key = schwab_settings(state_url, KEY)
    assert ensure_api_key_connections(no_key, START + dt.timedelta(hours=5))[0].status is (
        ConnectionStatus.DISCONNECTED)
    (fresh,) = ensure_api_key_connections(new_key, START + dt.timedelta(hours=6))
    assert fresh.id != fmp.id and fresh.status is ConnectionStatus.ACTIVE
    statuses = sorted(c.status for c in
                      ConnectionRepository.from_settings(new_key).find_all())
    assert statuses == [ConnectionStatus.ACTIVE, ConnectionStatus.DISCONNECTED]


def test_sync_on_a_provider_never_listed_creates_its_connection(keyed: Settings) -> None:
    assert record_successful_sync(keyed, "fmp", START)
    conn = current_connection(ConnectionRepository.from_settings(keyed), "fmp")
    assert conn is not None and conn.status is ConnectionStatus.ACTIVE
    assert conn.last_sync_at == START
    assert isinstance(mark_auth_failure(keyed, "polygon", "HTTP 403", START), Failure)


def test_reconnect_re_enables_refused_keys(keyed: Settings) -> None:
    ensure_api_key_connections(keyed, START)
    assert mark_auth_failure(keyed, "fmp", "HTTP 403", START)
    conn = connections.reconnect_api_key_provider(keyed, "fmp", START + dt.timedelta(hours=1))
    assert conn.status is ConnectionStatus.ACTIVE and conn.status_reason is None


# -- the CLI -------------------------------------------------------------------------------
def test_connections_command(
    keyed: Settings, state_url: str, monkeypatch: pytest.MonkeyPatch,
    sandbox: httpx.BaseTransport, clock: FakeClock, capsys: pytest.CaptureFixture[str],
) -> None:
    connect(keyed, sandbox, clock)
    monkeypatch.setenv("DASHTAM_STATE_URL", state_url)
    monkeypatch.setenv("DASHTAM_SECRET_KEY", KEY)
    monkeypatch.setenv("FMP_API_KEY", "fmp-key-SECRET-1")
    capsys.readouterr()
    assert main(["connections", "--json"]) == 0
    entries = {e["provider"]: e for e in json.loads(capsys.readouterr().out)}
    assert set(entries) == {"fmp", "schwab"}
    contract = {"id", "provider", "alias", "status", "expires_at", "refresh_expires_at",
                "last_sync_at"}
    assert all(contract <= set(e) for e in entries.values())
    assert entries["schwab"]["status"] == "ACTIVE"
    assert entries["schwab"]["expires_at"] == "2026-11-22T12:30:00.000000+00:00"
    assert entries["schwab"]["refresh_expires_at"] == "2026-11-29T12:00:00.000000+00:00"
    assert entries["fmp"]["expires_at"] is None and entries["fmp"]["last_sync_at"] is None

    assert main(["connections"]) == 0
    table = capsys.readouterr().out
    assert "schwab" in table and "2026-11-29 12:00" in table and "ACTIVE" in table
    assert "SECRET" not in table

    assert mark_auth_failure(keyed, "fmp", "HTTP 401", START)
    assert main(["connect", "fmp"]) == 0
    assert "Connected fmp (ACTIVE)" in capsys.readouterr().out
    assert main(["connect", "fmp", "--code", "x"]) == 1
    assert "API keys" in capsys.readouterr().err
