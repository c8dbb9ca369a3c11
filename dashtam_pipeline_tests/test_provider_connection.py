"""The ProviderConnection entity: its state machine, its queries on an injected clock."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest

from dashtam_pipeline.domain import (
    DEFAULT_USER_ID,
    ConnectionStatus,
    CredentialType,
    Failure,
    ProviderConnection,
    ProviderCredentials,
    Result,
    Success,
    provider_id_for,
)

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
S = ConnectionStatus


def oauth_credentials(now: dt.datetime = NOW) -> ProviderCredentials:
    return ProviderCredentials(b"ciphertext", CredentialType.OAUTH2,
                               expires_at=now + dt.timedelta(minutes=30),
                               refresh_expires_at=now + dt.timedelta(days=7))


def connection_in(status: ConnectionStatus) -> ProviderConnection:
    """A connection brought to ``status`` through legal transitions only."""
    conn = ProviderConnection.new("schwab", now=NOW)
    paths: dict[ConnectionStatus, list[Callable[[ProviderConnection], Result]]] = {
        S.PENDING: [],
        S.ACTIVE: [lambda c: c.mark_connected(oauth_credentials(), now=NOW)],
        S.EXPIRED: [lambda c: c.mark_connected(oauth_credentials(), now=NOW),
                    lambda c: c.mark_expired(now=NOW)],
        S.REVOKED: [lambda c: c.mark_connected(oauth_credentials(), now=NOW),
                    lambda c: c.mark_revoked(now=NOW)],
        S.FAILED: [lambda c: c.mark_failed("code refused", now=NOW)],
        S.DISCONNECTED: [lambda c: c.mark_disconnected(now=NOW)],
    }
    for step in paths[status]:
        assert step(conn)
    assert conn.status is status
    return conn


ACTIONS: dict[str, Callable[[ProviderConnection], Result]] = {
    "connect": lambda c: c.mark_connected(oauth_credentials(), now=NOW),
    "expire": lambda c: c.mark_expired(now=NOW),
    "revoke": lambda c: c.mark_revoked(now=NOW),
    "fail": lambda c: c.mark_failed("refused", now=NOW),
    "disconnect": lambda c: c.mark_disconnected(now=NOW),
    "update": lambda c: c.update_credentials(oauth_credentials(), now=NOW),
    "sync": lambda c: c.record_sync(NOW),
}
#: (status, action) pairs that succeed; every other pair is refused.
ALLOWED = {
    (S.PENDING, "connect"), (S.PENDING, "fail"), (S.PENDING, "disconnect"),
    (S.ACTIVE, "expire"), (S.ACTIVE, "revoke"), (S.ACTIVE, "disconnect"),
    (S.ACTIVE, "update"), (S.ACTIVE, "sync"),
    (S.EXPIRED, "connect"), (S.EXPIRED, "disconnect"),
    (S.REVOKED, "connect"), (S.REVOKED, "disconnect"),
    (S.FAILED, "connect"), (S.FAILED, "disconnect"),
    (S.DISCONNECTED, "disconnect"),  # idempotent
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_state_machine(status: ConnectionStatus, action: str) -> None:
    conn = connection_in(status)
    before = (conn.status, conn.credentials, conn.updated_at)
    result = ACTIONS[action](conn)
    if (status, action) in ALLOWED:
        assert isinstance(result, Success), result
    else:
        assert isinstance(result, Failure)
        assert status.value in result.reason  # says what state refused it
        assert (conn.status, conn.credentials, conn.updated_at) == before  # unchanged


def test_lifecycle_keeps_identity_and_history() -> None:
    conn = ProviderConnection.new("schwab", now=NOW, alias="My Schwab IRA")
    assert conn.user_id == DEFAULT_USER_ID
    assert conn.provider_id == provider_id_for("schwab")
    assert isinstance(conn.id, uuid.UUID) and conn.alias == "My Schwab IRA"
    assert conn.status is S.PENDING and not conn.is_connected()

    later = NOW + dt.timedelta(hours=1)
    match conn.mark_connected(oauth_credentials(), now=NOW):
        case Success():
            pass
        case Failure(reason):
            pytest.fail(reason)
    assert conn.is_connected() and conn.connected_at == NOW
    assert conn.mark_expired(now=later, reason="refresh token expired")
    assert conn.needs_reauthentication() and conn.status_reason == "refresh token expired"
    assert conn.credentials is not None  # kept: its dates explain the expiry

    reconnect_at = NOW + dt.timedelta(days=8)
    assert conn.mark_connected(oauth_credentials(reconnect_at), now=reconnect_at)
    assert conn.connected_at == NOW  # first connection time is history
    assert conn.status_reason is None and conn.updated_at == reconnect_at

    assert conn.record_sync(reconnect_at)
    assert conn.record_sync(reconnect_at - dt.timedelta(days=1))  # a late report
    assert conn.last_sync_at == reconnect_at  # an older sync never moves it back

    assert conn.mark_disconnected(now=reconnect_at)
    assert conn.credentials is None and not conn.is_connected()


def test_provider_id_is_derived_from_the_slug() -> None:
    assert provider_id_for("schwab") == provider_id_for("schwab")
    assert provider_id_for("schwab") != provider_id_for("fmp")
    assert ProviderConnection.new("fmp", now=NOW).provider_id == provider_id_for("fmp")


def test_expiry_queries_follow_the_injected_clock() -> None:
    conn = connection_in(S.ACTIVE)  # access token until NOW+30m, refresh until NOW+7d
    assert not conn.is_credentials_expiring_soon(NOW + dt.timedelta(minutes=24))
    assert conn.is_credentials_expiring_soon(NOW + dt.timedelta(minutes=26))  # 4 min left
    assert not conn.is_credentials_expired(NOW + dt.timedelta(minutes=29))
    assert conn.is_credentials_expired(NOW + dt.timedelta(minutes=30))
    # an expired access token can still be renewed unattended: syncing is possible
    assert conn.can_sync(NOW + dt.timedelta(days=6))
    assert not conn.can_sync(NOW + dt.timedelta(days=7))
    assert conn.is_refresh_expiring_within(NOW + dt.timedelta(days=6), dt.timedelta(days=1))
    assert not conn.is_refresh_expiring_within(NOW, dt.timedelta(days=1))


def test_api_key_credentials_never_expire() -> None:
    conn = ProviderConnection.new("fmp", now=NOW)
    assert conn.mark_connected(ProviderCredentials(b"x", CredentialType.API_KEY), now=NOW)
    far = NOW + dt.timedelta(days=3650)
    assert conn.can_sync(far)
    assert not conn.is_credentials_expired(far) and not conn.is_credentials_expiring_soon(far)


@pytest.mark.parametrize("status", [S.PENDING, S.EXPIRED, S.REVOKED, S.FAILED, S.DISCONNECTED])
def test_only_active_connections_can_sync(status: ConnectionStatus) -> None:
    conn = connection_in(status)
    assert not conn.is_connected() and not conn.can_sync(NOW)
    assert conn.needs_reauthentication() is (status in (S.EXPIRED, S.REVOKED, S.FAILED))


def test_construction_errors_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ProviderCredentials(b"", CredentialType.OAUTH2)
    with pytest.raises(ValueError, match="timezone-aware"):
        ProviderCredentials(b"x", CredentialType.OAUTH2, expires_at=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ProviderConnection.new("schwab", now=dt.datetime(2026, 1, 1))


def test_credentials_blob_stays_out_of_repr() -> None:
    creds = ProviderCredentials(b"SECRET-BLOB", CredentialType.OAUTH2)
    assert "SECRET-BLOB" not in repr(creds)
    conn = connection_in(S.ACTIVE)
    assert "ciphertext" not in repr(conn)
