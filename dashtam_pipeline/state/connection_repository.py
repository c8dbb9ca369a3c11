"""Provider connections in the state store (table ``provider_connections``).

The connection store must be shared by every process (the CLI that connects Schwab, each
Dagster step that calls it, the sensors that refresh it), so it lives in the state store:
SQLite by default, PostgreSQL through ``DASHTAM_STATE_URL``. The repository maps rows to
``ProviderConnection`` entities and back and nothing more: credentials arrive here already
encrypted (an opaque blob) and are stored as such, so no token or key is ever written in
clear. Expiries are stored beside the blob, in clear, because they are not secret and
``find_expiring_soon`` must select on them. Timestamps are UTC ISO-8601 text with a fixed
width (microseconds always written), so they compare correctly as text on both backends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.domain.provider_connection import (
    ConnectionStatus,
    CredentialType,
    ProviderConnection,
    ProviderCredentials,
)
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.store import Row, StateStore, state_store

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS provider_connections (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        provider_slug TEXT NOT NULL,
        alias TEXT,
        status TEXT NOT NULL,
        status_reason TEXT,
        credential_type TEXT,
        credentials BLOB,
        expires_at TEXT,
        refresh_expires_at TEXT,
        connected_at TEXT,
        last_sync_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS provider_connections_user "
    "ON provider_connections (user_id, provider_id)",
    # an alias tells a user's live connections of one provider apart: unique among them
    # (a DISCONNECTED one is history, and its alias may be used again)
    "CREATE UNIQUE INDEX IF NOT EXISTS provider_connections_alias "
    "ON provider_connections (user_id, provider_id, alias) "
    "WHERE alias IS NOT NULL AND status <> 'DISCONNECTED'",
    "CREATE INDEX IF NOT EXISTS provider_connections_provider "
    "ON provider_connections (provider_slug, status)",
    # ``newest_sealed``, asked by every ``load_cipher``: an index lookup, not a sort of
    # every connection each time a client is built
    "CREATE INDEX IF NOT EXISTS provider_connections_sealed "
    "ON provider_connections (updated_at) WHERE credentials IS NOT NULL",
    # one row per status a connection entered, written by ``save`` in the same
    # transaction: sensors that tick now and then still see a drop-and-return between ticks
    """CREATE TABLE IF NOT EXISTS provider_connection_status_changes (
        connection_id TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        changed_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS provider_connection_status_changes_at "
    "ON provider_connection_status_changes (connection_id, changed_at)",
    # when each dataset of a connection last synced: a connection's first sync of its
    # transactions takes the whole history even when its accounts synced a minute before
    """CREATE TABLE IF NOT EXISTS provider_connection_syncs (
        connection_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        PRIMARY KEY (connection_id, dataset)
    )""",
)

_COLUMNS = (
    "id, user_id, provider_id, provider_slug, alias, status, status_reason, credential_type, "
    "credentials, expires_at, refresh_expires_at, connected_at, last_sync_at, created_at, "
    "updated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM provider_connections"
_ORDER = " ORDER BY provider_slug, created_at"


def to_text(value: dt.datetime | None) -> str | None:
    """A UTC timestamp as fixed-width ISO-8601 text (orders correctly as a string)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _from_text(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class StatusChange:
    """A status a connection entered, and when."""

    status: ConnectionStatus
    reason: str | None
    changed_at: dt.datetime


class ConnectionRepository:
    """Find, save (upsert) and delete provider connections: the Python API through which
    the Dashtam app hands users' connections to the pipeline.

    The app writes a ``ProviderConnection`` (``ProviderConnection.new(slug, now=...,
    user_id=..., alias=...)``, credentials sealed with ``connections.seal``) with ``save``;
    the pipeline's connection sensor adds a partition for each ACTIVE one and syncs it.
    Queries: ``find_by_id``, ``find_by_user_id``, ``find_active_by_user``,
    ``find_by_user_and_provider``, ``find_by_provider``, ``find_expiring_soon``,
    ``find_all``; erasure: ``delete_by_user``. An alias is unique among a user's live
    connections of one provider (a unique index on both SQLite and PostgreSQL).
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store
        store.ensure_schema("provider_connections", SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionRepository:
        return cls(state_store(settings))

    # -- queries ---------------------------------------------------------------------------
    def find_by_id(self, connection_id: uuid.UUID) -> ProviderConnection | None:
        rows = self.store.query(f"{_SELECT} WHERE id = ?", (str(connection_id),))
        return _entity(rows[0]) if rows else None

    def find_by_user_id(self, user_id: uuid.UUID) -> list[ProviderConnection]:
        """Every connection of the user, in every status (DISCONNECTED included)."""
        return self._many(f"{_SELECT} WHERE user_id = ?{_ORDER}", (str(user_id),))

    def find_by_user_and_provider(
        self, user_id: uuid.UUID, provider_id: uuid.UUID
    ) -> list[ProviderConnection]:
        """The user's connections to one provider (several accounts, or history)."""
        return self._many(
            f"{_SELECT} WHERE user_id = ? AND provider_id = ?{_ORDER}",
            (str(user_id), str(provider_id)),
        )

    def find_active_by_user(self, user_id: uuid.UUID) -> list[ProviderConnection]:
        return self._many(
            f"{_SELECT} WHERE user_id = ? AND status = ?{_ORDER}",
            (str(user_id), ConnectionStatus.ACTIVE.value),
        )

    def find_expiring_soon(
        self, minutes: int = 30, *, now: dt.datetime
    ) -> list[ProviderConnection]:
        """ACTIVE connections whose credentials expire within ``minutes`` of ``now`` (or
        already have): what a refresh job should renew, soonest first."""
        horizon = to_text(now + dt.timedelta(minutes=minutes))
        return self._many(
            f"{_SELECT} WHERE status = ? AND expires_at IS NOT NULL AND expires_at <= ? "
            "ORDER BY expires_at",
            (ConnectionStatus.ACTIVE.value, horizon),
        )

    def find_by_provider(self, provider_slug: str) -> list[ProviderConnection]:
        """Every user's connections of one provider (what its connection partitions
        follow), oldest first."""
        return self._many(f"{_SELECT} WHERE provider_slug = ?{_ORDER}", (provider_slug,))

    def user_ids(self) -> list[uuid.UUID]:
        """Every user that holds at least one connection."""
        rows = self.store.query("SELECT DISTINCT user_id FROM provider_connections "
                                "ORDER BY user_id")
        return [uuid.UUID(str(r[0])) for r in rows]

    def newest_sealed(self) -> tuple[str, bytes] | None:
        """The provider slug and sealed blob of the most recently saved credentials (any
        user, any status): what a secret key must open before it may seal anything new."""
        rows = self.store.query(
            "SELECT provider_slug, credentials FROM provider_connections "
            "WHERE credentials IS NOT NULL ORDER BY updated_at DESC LIMIT 1")
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    def find_all(self) -> list[ProviderConnection]:
        """Every connection of every user (the CLI's listing)."""
        return self._many(f"{_SELECT}{_ORDER}")

    # -- commands --------------------------------------------------------------------------
    def save(self, connection: ProviderConnection) -> None:
        """Insert the connection, or replace every field of the stored one (same id); a
        new status is also appended to the connection's status history."""
        values = _row(connection)
        names = [c.strip() for c in _COLUMNS.split(",")]
        updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
        with self.store.transaction() as tx:
            stored = tx.query_one(
                "SELECT status FROM provider_connections WHERE id = ?", (str(connection.id),)
            )
            tx.execute(
                f"INSERT INTO provider_connections ({_COLUMNS}) VALUES "
                f"({', '.join('?' for _ in names)}) ON CONFLICT (id) DO UPDATE SET {updates}",
                values,
            )
            if stored is None or stored[0] != connection.status.value:
                tx.execute(
                    "INSERT INTO provider_connection_status_changes "
                    "(connection_id, status, status_reason, changed_at) VALUES (?, ?, ?, ?)",
                    (str(connection.id), connection.status.value, connection.status_reason,
                     to_text(connection.updated_at)),
                )

    def status_changes(
        self, connection_id: uuid.UUID, *, after: dt.datetime
    ) -> list[StatusChange]:
        """The statuses the connection entered after ``after``, oldest first."""
        rows = self.store.query(
            "SELECT status, status_reason, changed_at FROM provider_connection_status_changes "
            "WHERE connection_id = ? AND changed_at > ? ORDER BY changed_at",
            (str(connection_id), to_text(after)),
        )
        return [
            StatusChange(ConnectionStatus(str(status)), reason and str(reason),
                         dt.datetime.fromisoformat(str(at)))
            for status, reason, at in rows
        ]

    def delete(self, connection_id: uuid.UUID) -> bool:
        """Remove the record for good (``mark_disconnected`` keeps it); False if absent."""
        with self.store.transaction() as tx:
            return tx.execute(
                "DELETE FROM provider_connections WHERE id = ?", (str(connection_id),)
            ) > 0

    def last_synced(self, connection_id: uuid.UUID, dataset: str) -> dt.datetime | None:
        """When ``dataset`` of the connection last synced (``None``: never, so the next
        sync takes the whole history)."""
        row = self.store.query(
            "SELECT synced_at FROM provider_connection_syncs WHERE connection_id = ? "
            "AND dataset = ?", (str(connection_id), dataset))
        return _from_text(str(row[0][0])) if row else None

    def mark_synced(self, connection_id: uuid.UUID, dataset: str, at: dt.datetime) -> None:
        """Record a good sync of ``dataset`` of the connection."""
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO provider_connection_syncs (connection_id, dataset, synced_at) "
                "VALUES (?, ?, ?) ON CONFLICT (connection_id, dataset) DO UPDATE SET "
                "synced_at = excluded.synced_at", (str(connection_id), dataset, to_text(at)))

    def delete_by_user(self, user_id: uuid.UUID) -> list[ProviderConnection]:
        """Erase every connection of the user, credentials and status history included
        (``dashtam forget``); returns what was removed (for the report, never printed with
        its credentials)."""
        removed = self.find_by_user_id(user_id)
        with self.store.transaction() as tx:
            for connection in removed:
                for table in ("provider_connection_status_changes",
                              "provider_connection_syncs"):
                    tx.execute(f"DELETE FROM {table} WHERE connection_id = ?",
                               (str(connection.id),))
            tx.execute("DELETE FROM provider_connections WHERE user_id = ?", (str(user_id),))
        return removed

    def _many(self, sql: str, params: Sequence[Any] = ()) -> list[ProviderConnection]:
        return [_entity(row) for row in self.store.query(sql, params)]


def _row(c: ProviderConnection) -> tuple[Any, ...]:
    creds = c.credentials
    return (
        str(c.id), str(c.user_id), str(c.provider_id), c.provider_slug, c.alias,
        c.status.value, c.status_reason,
        creds.credential_type.value if creds else None,
        creds.encrypted_data if creds else None,
        to_text(creds.expires_at) if creds else None,
        to_text(creds.refresh_expires_at) if creds else None,
        to_text(c.connected_at), to_text(c.last_sync_at),
        to_text(c.created_at), to_text(c.updated_at),
    )


def _entity(row: Row) -> ProviderConnection:
    (id_, user_id, provider_id, slug, alias, status, reason, cred_type, blob, expires_at,
     refresh_expires_at, connected_at, last_sync_at, created_at, updated_at) = row
    credentials = None
    if blob is not None and cred_type is not None:
        credentials = ProviderCredentials(
            encrypted_data=bytes(blob),
            credential_type=CredentialType(cred_type),
            expires_at=_from_text(expires_at),
            refresh_expires_at=_from_text(refresh_expires_at),
        )
    created = _from_text(created_at)
    updated = _from_text(updated_at)
    assert created is not None and updated is not None  # NOT NULL columns
    return ProviderConnection(
        id=uuid.UUID(id_), user_id=uuid.UUID(user_id), provider_id=uuid.UUID(provider_id),
        provider_slug=slug, alias=alias, status=ConnectionStatus(status),
        status_reason=reason, credentials=credentials,
        connected_at=_from_text(connected_at), last_sync_at=_from_text(last_sync_at),
        created_at=created, updated_at=updated,
    )
