"""The dead-letter queue: failed (asset, partition) pairs kept until a replay lands them.

A provider outage must not lose a day of data silently. When an asset partition cannot be
fetched, the failure is recorded here (table ``dead_letters`` in the state store, so every
Dagster step process and every machine of a deployment sees the same queue), and
``dashtam dlq replay`` re-materializes exactly those partitions later.

One *pending* entry exists per (asset key, partition key): repeated failures of the same
partition raise its ``attempts`` instead of piling up duplicates. The rule is enforced by
the database, not by a read-then-write in Python: ``pending_key`` is unique and set only
while an entry is pending, and recording is a single ``INSERT ... ON CONFLICT DO UPDATE``,
so concurrent processes on SQLite or PostgreSQL converge on one row. Once an entry is
replayed or abandoned its ``pending_key`` is cleared, and the next failure of that
partition opens a new entry (the history stays readable).

Nothing stored here may hold a secret: the request summary and every error text go through
``http.redact`` with the settings' secret values before they are written.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.errors import PipelineError, ProviderError
from dashtam_pipeline.http import REDACTED, SECRET_PARAM_NAMES, redact
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.store import Row, StateStore, state_store

PENDING = "pending"
#: The largest id an entry can have: SQLite's INTEGER and PostgreSQL's BIGINT are 64-bit,
#: and either driver raises ``OverflowError`` when asked for a larger one.
MAX_ENTRY_ID = 2**63 - 1
REPLAYED = "replayed"
ABANDONED = "abandoned"
STATUSES = (PENDING, REPLAYED, ABANDONED)

_COLUMNS = (
    "id, provider, dataset, asset_key, partition_key, request, error, error_kind, attempts, "
    "first_failed_at, last_failed_at, status, replay_count, last_replay_error, "
    "last_replay_at, abandoned_reason, replayed_at, run_id"
)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        dataset TEXT NOT NULL,
        asset_key TEXT NOT NULL,
        partition_key TEXT,
        request TEXT NOT NULL,
        error TEXT NOT NULL,
        error_kind TEXT,
        attempts INTEGER NOT NULL,
        first_failed_at TEXT NOT NULL,
        last_failed_at TEXT NOT NULL,
        status TEXT NOT NULL,
        replay_count INTEGER NOT NULL DEFAULT 0,
        last_replay_error TEXT,
        last_replay_at TEXT,
        abandoned_reason TEXT,
        replayed_at TEXT,
        run_id TEXT,
        pending_key TEXT UNIQUE
    )""",
    "CREATE INDEX IF NOT EXISTS dead_letters_status ON dead_letters (status, provider)",
]


class DeadLetterError(PipelineError):
    """A dead-letter id that does not exist, or an operation its status does not allow."""


@dataclass(frozen=True)
class DeadLetter:
    """One failed (asset, partition) and what has been tried since."""

    id: int
    provider: str
    dataset: str
    asset_key: str
    partition_key: str | None
    request: dict[str, Any]
    error: str
    error_kind: str | None
    attempts: int
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime
    status: str
    replay_count: int
    last_replay_error: str | None
    last_replay_at: dt.datetime | None
    abandoned_reason: str | None
    replayed_at: dt.datetime | None
    run_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The contract's keys (``dashtam dlq list --json``) followed by the extras."""
        return {
            "id": self.id,
            "provider": self.provider,
            "dataset": self.dataset,
            "partition_key": self.partition_key,
            "error": self.error,
            "attempts": self.attempts,
            "status": self.status,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "asset_key": self.asset_key,
            "error_kind": self.error_kind,
            "request": self.request,
            "replay_count": self.replay_count,
            "last_replay_error": self.last_replay_error,
            "last_replay_at": _iso(self.last_replay_at),
            "abandoned_reason": self.abandoned_reason,
            "replayed_at": _iso(self.replayed_at),
            "run_id": self.run_id,
        }


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value configured in ``settings`` (keys, app secrets, the state key),
    so redaction does not depend on which provider failed."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if hasattr(value, "get_secret_value") and value.get_secret_value():
            values.append(value.get_secret_value())
    return values


class DeadLetterQueue:
    """The ``dead_letters`` table; every method is one short transaction."""

    def __init__(self, store: StateStore, secrets: Iterable[str] = ()) -> None:
        self.store = store
        self.secrets = tuple(secrets)
        store.ensure_schema("dead_letters", SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterQueue:
        return cls(state_store(settings), settings_secrets(settings))

    # -- recording -----------------------------------------------------------------------
    def record_failure(
        self,
        asset_key: str,
        dataset: str,
        provider: str,
        partition_key: str | None,
        request: Mapping[str, Any] | None,
        error: ProviderError | str,
        run_id: str | None = None,
        secrets: Iterable[str] = (),
    ) -> DeadLetter:
        """Count one failure of (asset_key, partition_key): a new pending entry, or one
        more attempt on the pending entry that already exists."""
        hidden = (*self.secrets, *secrets)
        kind = error.kind.value if isinstance(error, ProviderError) else None
        now = _now()
        key = pending_key(asset_key, partition_key)
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO dead_letters (provider, dataset, asset_key, partition_key, "
                "request, error, error_kind, attempts, first_failed_at, last_failed_at, "
                "status, replay_count, run_id, pending_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, 0, ?, ?) "
                "ON CONFLICT (pending_key) DO UPDATE SET "
                "attempts = dead_letters.attempts + 1, "
                "last_failed_at = excluded.last_failed_at, provider = excluded.provider, "
                "request = excluded.request, error = excluded.error, "
                "error_kind = excluded.error_kind, run_id = excluded.run_id",
                (
                    provider,
                    dataset,
                    asset_key,
                    partition_key,
                    redact_request(request or {}, hidden),
                    redact(str(error), hidden),
                    kind,
                    now,
                    now,
                    PENDING,
                    run_id,
                    key,
                ),
            )
            row = tx.query_one(f"SELECT {_COLUMNS} FROM dead_letters WHERE pending_key = ?", (key,))
        assert row is not None  # just written in this transaction
        return _entry(row)

    def mark_replayed(self, ids: Iterable[int], run_id: str | None) -> builtins.list[DeadLetter]:
        """Close pending entries whose partition landed; others are left as they are."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        now = _now()
        marks = ", ".join("?" for _ in wanted)
        with self.store.transaction() as tx:
            tx.execute(
                "UPDATE dead_letters SET status = ?, replayed_at = ?, run_id = ?, "
                f"pending_key = NULL WHERE status = ? AND id IN ({marks})",
                (REPLAYED, now, run_id, PENDING, *wanted),
            )
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE id IN ({marks}) ORDER BY id",
                wanted,
            )
        return [_entry(r) for r in rows]

    def resolve(
        self, asset_key: str, partition_keys: Iterable[str | None], run_id: str | None
    ) -> builtins.list[DeadLetter]:
        """Close the pending entries of partitions that just landed by any run (a nightly
        run or a manual backfill fills a gap as well as a replay does)."""
        keys = [pending_key(asset_key, p) for p in partition_keys]
        if not keys:
            return []
        marks = ", ".join("?" for _ in keys)
        with self.store.transaction() as tx:
            ids = [r[0] for r in tx.query(
                f"SELECT id FROM dead_letters WHERE pending_key IN ({marks})", keys
            )]
        return self.mark_replayed(ids, run_id) if ids else []

    def abandon(self, ids: Iterable[int], reason: str) -> builtins.list[int]:
        """Close pending entries as abandoned with ``reason`` (redacted) without counting a
        replay that never happened: a permanent failure needs a person, not a replay.
        Returns the ids it closed."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        with self.store.transaction() as tx:
            closed = [
                int(r[0])
                for r in tx.query(
                    f"SELECT id FROM dead_letters WHERE status = ? AND id IN ({marks}) "
                    "FOR UPDATE",
                    (PENDING, *wanted),
                )
            ]
            if closed:
                tx.execute(
                    "UPDATE dead_letters SET status = ?, abandoned_reason = ?, "
                    f"pending_key = NULL WHERE id IN ({', '.join('?' for _ in closed)})",
                    (ABANDONED, redact(reason, self.secrets), *closed),
                )
        return closed

    def record_replay_failure(
        self, id: int, reason: str, max_replays: int, secrets: Iterable[str] = ()
    ) -> DeadLetter:
        """Count a replay that did not land; the ``max_replays``-th one abandons the entry
        with the reason, so a partition that never comes back stops being retried."""
        reason = redact(reason, (*self.secrets, *secrets))
        now = _now()
        with self.store.transaction() as tx:
            row = tx.query_one(
                "SELECT status, replay_count FROM dead_letters WHERE id = ? FOR UPDATE", (id,)
            )
            if row is None:
                raise DeadLetterError(f"no dead-letter entry {id}")
            status, replay_count = row
            if status != PENDING:
                raise DeadLetterError(f"dead-letter entry {id} is {status}, not pending")
            count = int(replay_count) + 1
            if count >= max_replays:
                tx.execute(
                    "UPDATE dead_letters SET replay_count = ?, last_replay_error = ?, "
                    "last_replay_at = ?, status = ?, abandoned_reason = ?, "
                    "pending_key = NULL WHERE id = ?",
                    (
                        count,
                        reason,
                        now,
                        ABANDONED,
                        f"not landed after {count} replay{'s' if count != 1 else ''}: {reason}",
                        id,
                    ),
                )
            else:
                tx.execute(
                    "UPDATE dead_letters SET replay_count = ?, last_replay_error = ?, "
                    "last_replay_at = ? WHERE id = ?",
                    (count, reason, now, id),
                )
            updated = tx.query_one(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (id,))
        assert updated is not None
        return _entry(updated)

    # -- reading -------------------------------------------------------------------------
    def list(
        self, status: str | None = None, provider: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Entries, oldest first, optionally of one status and/or one provider."""
        if status is not None and status not in STATUSES:
            raise DeadLetterError(
                f"unknown dead-letter status {status!r}; use one of {', '.join(STATUSES)}"
            )
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.store.query(f"SELECT {_COLUMNS} FROM dead_letters{where} ORDER BY id", params)
        return [_entry(r) for r in rows]

    def get(self, ids: Iterable[int]) -> builtins.list[DeadLetter]:
        """The entries with these ids, in id order; an unknown id is an error naming it.
        An id outside 1..``MAX_ENTRY_ID`` is unknown without asking the database (whose
        driver would raise ``OverflowError`` for it)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        storable = [i for i in wanted if 1 <= i <= MAX_ENTRY_ID]
        marks = ", ".join("?" for _ in storable)
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE id IN ({marks}) ORDER BY id", storable
        ) if storable else []
        entries = [_entry(r) for r in rows]
        missing = sorted(set(wanted) - {e.id for e in entries})
        if missing:
            raise DeadLetterError(
                f"no dead-letter entr{'y' if len(missing) == 1 else 'ies'} with id "
                f"{', '.join(map(str, missing))} (see `dashtam dlq list`)"
            )
        return entries

    def pending_for_provider(self, provider: str) -> builtins.list[DeadLetter]:
        """What a provider still owes, e.g. to replay once its circuit closes again."""
        return self.list(status=PENDING, provider=provider)


def pending_key(asset_key: str, partition_key: str | None) -> str:
    """The uniqueness key of a pending entry (``None`` and ``""`` partitions differ)."""
    return json.dumps([asset_key, partition_key])


def redact_request(request: Mapping[str, Any], secrets: Iterable[str]) -> str:
    """The request summary as JSON, with secret-named fields blanked and secret values
    (and secret-looking query parameters inside URLs) removed."""
    text = json.dumps(_blank_secret_fields(request), sort_keys=True, default=str)
    return redact(text, secrets)


def _blank_secret_fields(value: Any) -> Any:
    if isinstance(value, Mapping):
        lowered = {n.lower() for n in SECRET_PARAM_NAMES}
        return {
            str(k): REDACTED if str(k).lower() in lowered else _blank_secret_fields(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_blank_secret_fields(v) for v in value]
    return value


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _entry(row: Row) -> DeadLetter:
    (
        id_,
        provider,
        dataset,
        asset_key,
        partition_key,
        request,
        error,
        error_kind,
        attempts,
        first,
        last,
        status,
        replay_count,
        last_replay_error,
        last_replay_at,
        abandoned_reason,
        replayed_at,
        run_id,
    ) = row
    first_failed = _time(first)
    last_failed = _time(last)
    assert first_failed is not None and last_failed is not None  # NOT NULL columns
    return DeadLetter(
        id=int(id_),
        provider=provider,
        dataset=dataset,
        asset_key=asset_key,
        partition_key=partition_key,
        request=json.loads(request) if request else {},
        error=error,
        error_kind=error_kind,
        attempts=int(attempts),
        first_failed_at=first_failed,
        last_failed_at=last_failed,
        status=status,
        replay_count=int(replay_count),
        last_replay_error=last_replay_error,
        last_replay_at=_time(last_replay_at),
        abandoned_reason=abandoned_reason,
        replayed_at=_time(replayed_at),
        run_id=run_id,
    )
