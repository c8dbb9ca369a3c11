"""ConnectionRepository on both state-store backends (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

from dashtam_pipeline.domain import (
    DEFAULT_USER_ID,
    ConnectionStatus,
    CredentialType,
    ProviderConnection,
    ProviderCredentials,
    provider_id_for,
)
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.state.store import StateStore

NOW = dt.datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=dt.UTC)


def active(slug: str, *, expires_in: dt.timedelta | None, alias: str | None = None,
           user_id: uuid.UUID = DEFAULT_USER_ID) -> ProviderConnection:
    conn = ProviderConnection.new(slug, now=NOW, alias=alias, user_id=user_id)
    creds = ProviderCredentials(
        f"blob-{slug}".encode(),
        CredentialType.OAUTH2 if expires_in else CredentialType.API_KEY,
        expires_at=NOW + expires_in if expires_in else None,
        refresh_expires_at=NOW + dt.timedelta(days=7) if expires_in else None,
    )
    assert conn.mark_connected(creds, now=NOW)
    return conn


def test_save_and_find_round_trip(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    conn = active("schwab", expires_in=dt.timedelta(minutes=30), alias="My Schwab IRA")
    assert conn.record_sync(NOW + dt.timedelta(seconds=1))
    repo.save(conn)
    assert repo.find_by_id(conn.id) == conn  # every field, timestamps to the microsecond
    assert repo.find_by_id(uuid.uuid4()) is None

    # save is an upsert: same id, new state
    assert conn.mark_expired(now=NOW + dt.timedelta(days=7), reason="refresh token expired")
    repo.save(conn)
    stored = repo.find_by_id(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.EXPIRED
    assert stored.status_reason == "refresh token expired"
    assert stored.credentials == conn.credentials
    assert len(repo.find_by_user_id(DEFAULT_USER_ID)) == 1


def test_pending_and_disconnected_have_no_credentials(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    pending = ProviderConnection.new("schwab", now=NOW)
    repo.save(pending)
    assert repo.find_by_id(pending.id) == pending
    gone = active("fmp", expires_in=None)
    assert gone.mark_disconnected(now=NOW)
    repo.save(gone)
    found = repo.find_by_id(gone.id)
    assert found is not None and found.credentials is None
    assert found.status is ConnectionStatus.DISCONNECTED


def test_queries_by_user_provider_and_status(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    other_user = uuid.uuid4()
    ira = active("schwab", expires_in=dt.timedelta(minutes=30), alias="IRA")
    brokerage = active("schwab", expires_in=dt.timedelta(minutes=30), alias="Brokerage")
    fmp = active("fmp", expires_in=None)
    expired = active("polygon", expires_in=None)
    assert expired.mark_revoked(now=NOW, reason="HTTP 401")
    theirs = active("schwab", expires_in=dt.timedelta(minutes=30), user_id=other_user)
    for conn in (ira, brokerage, fmp, expired, theirs):
        repo.save(conn)

    mine = repo.find_by_user_id(DEFAULT_USER_ID)
    assert {c.id for c in mine} == {ira.id, brokerage.id, fmp.id, expired.id}
    schwab = repo.find_by_user_and_provider(DEFAULT_USER_ID, provider_id_for("schwab"))
    assert {c.alias for c in schwab} == {"IRA", "Brokerage"}
    assert {c.id for c in repo.find_active_by_user(DEFAULT_USER_ID)} == {
        ira.id, brokerage.id, fmp.id}
    assert [c.id for c in repo.find_by_user_id(other_user)] == [theirs.id]
    assert len(repo.find_all()) == 5


def test_find_expiring_soon(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    soon = active("schwab", expires_in=dt.timedelta(minutes=10))
    later = active("schwab", expires_in=dt.timedelta(minutes=45))
    past = active("schwab", expires_in=dt.timedelta(minutes=-1))
    keys = active("fmp", expires_in=None)  # never expires
    lapsed = active("schwab", expires_in=dt.timedelta(minutes=5))
    assert lapsed.mark_expired(now=NOW)  # not ACTIVE: nothing to refresh
    for conn in (soon, later, past, keys, lapsed):
        repo.save(conn)
    assert [c.id for c in repo.find_expiring_soon(now=NOW)] == [past.id, soon.id]
    assert [c.id for c in repo.find_expiring_soon(minutes=60, now=NOW)] == [
        past.id, soon.id, later.id]
    assert repo.find_expiring_soon(minutes=0, now=NOW - dt.timedelta(hours=1)) == []


def test_delete(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    conn = active("fmp", expires_in=None)
    repo.save(conn)
    assert repo.delete(conn.id) is True
    assert repo.find_by_id(conn.id) is None
    assert repo.delete(conn.id) is False


def test_schema_is_shared_by_repositories_of_one_store(state_url: str) -> None:
    """Two processes' repositories (here: two stores on one URL) see each other's writes."""
    first = ConnectionRepository(StateStore(state_url))
    second = ConnectionRepository(StateStore(state_url))
    conn = active("schwab", expires_in=dt.timedelta(minutes=30))
    first.save(conn)
    assert second.find_by_id(conn.id) == conn


def test_every_status_a_connection_entered_is_kept_with_its_time(state_url: str) -> None:
    repo = ConnectionRepository(StateStore(state_url))
    conn = active("fmp", expires_in=None)
    repo.save(conn)
    conn.record_sync(NOW + dt.timedelta(minutes=1))
    repo.save(conn)  # same status: nothing new in the history
    revoked_at, back_at = NOW + dt.timedelta(hours=1), NOW + dt.timedelta(hours=2)
    assert conn.mark_revoked(now=revoked_at, reason="401 Unauthorized")
    repo.save(conn)
    assert conn.mark_connected(conn.credentials, now=back_at)  # type: ignore[arg-type]
    repo.save(conn)

    history = repo.status_changes(conn.id, after=NOW - dt.timedelta(seconds=1))
    assert [(c.status, c.reason, c.changed_at) for c in history] == [
        (ConnectionStatus.ACTIVE, None, NOW),
        (ConnectionStatus.REVOKED, "401 Unauthorized", revoked_at),
        (ConnectionStatus.ACTIVE, None, back_at),
    ]
    assert [c.status for c in repo.status_changes(conn.id, after=revoked_at)] == [
        ConnectionStatus.ACTIVE]
    assert repo.status_changes(uuid.uuid4(), after=NOW) == []
