"""The operational state store: what every process of a deployment must agree on.

Dagster runs each step in its own process, so circuit breakers, rate-limit windows,
quotas, the call audit, the dead-letter queue and provider connections cannot live in
memory: they live here, in one SQLite file (default ``$DASHTAM_DATA_DIR/state.db``) or a
PostgreSQL database (``DASHTAM_STATE_URL=postgresql://...``), behind short transactions.

Components write portable SQL with ``?`` placeholders; the store translates them for
PostgreSQL. ``transaction()`` takes the write lock up front (SQLite ``BEGIN IMMEDIATE``;
PostgreSQL row locks via ``SELECT ... FOR UPDATE``, which the store strips for SQLite),
so read-modify-write sequences such as "count this failure and open the breaker" are
atomic across processes.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from dashtam_pipeline.errors import PipelineError
from dashtam_pipeline.private_files import create_private_file, make_private_dirs
from dashtam_pipeline.settings import Settings

Row = tuple[Any, ...]


class StateStoreError(PipelineError):
    """The state store URL is unusable or the database refused an operation."""


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def fetchall(self) -> list[Row]: ...

    def fetchone(self) -> Row | None: ...


_FOR_UPDATE = re.compile(r"\s+FOR\s+UPDATE\b", re.IGNORECASE)


class StateStore:
    """A small transactional key-value-ish store over SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            self.dialect = "sqlite"
            self.path = Path(url.removeprefix("sqlite:///")).expanduser()
            make_private_dirs(self.path.parent)
        elif parsed.scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
            self.path = None
        else:
            raise StateStoreError(
                f"DASHTAM_STATE_URL must start with sqlite:/// or postgresql:// (got "
                f"{parsed.scheme or 'no scheme'}://...)"
            )
        self._local = threading.local()
        self._ensured: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        return cls(settings.state_url)

    # -- connections -------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            # created 0600 before SQLite opens it: the file holds the encrypted credentials,
            # the DLQ and the call audit, and SQLite gives its -wal and -shm files the
            # database file's mode, so they are private too
            create_private_file(self.path)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            return con
        import psycopg2

        try:
            con = psycopg2.connect(self.url)
        except psycopg2.OperationalError as exc:
            host = urlparse(self.url).hostname or "localhost"
            raise StateStoreError(
                f"cannot connect to the PostgreSQL state store at {host}: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from None
        con.autocommit = False
        return con

    def _connection(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return _FOR_UPDATE.sub("", sql)
        return sql.replace("?", "%s")

    # -- statements --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """One atomic unit of work; the write lock is taken at the start."""
        con = self._connection()
        for attempt in range(5):
            try:
                if self.dialect == "sqlite":
                    con.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        tx = _Tx(self, con)
        try:
            yield tx
        except BaseException:
            con.rollback() if self.dialect == "postgresql" else con.execute("ROLLBACK")
            raise
        else:
            con.commit() if self.dialect == "postgresql" else con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.transaction() as tx:
            tx.execute(sql, params)

    def ensure_schema(self, name: str, statements: Sequence[str]) -> None:
        """Run a component's ``CREATE TABLE IF NOT EXISTS`` statements once per process.

        Types are written once for both dialects: ``BLOB`` becomes ``BYTEA`` and
        ``REAL`` becomes ``DOUBLE PRECISION`` on PostgreSQL; an ``INTEGER PRIMARY KEY
        AUTOINCREMENT`` id becomes ``BIGSERIAL PRIMARY KEY``.
        """
        if name in self._ensured:
            return
        with self.transaction() as tx:
            if self.dialect == "postgresql":
                # concurrent CREATE TABLE IF NOT EXISTS can collide on PostgreSQL's
                # catalog; the first step of each process creates, the others wait
                tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"schema:{name}",))
            for statement in statements:
                if self.dialect == "postgresql":
                    statement = (
                        statement.replace(
                            "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"
                        )
                        .replace(" BLOB", " BYTEA")
                        .replace(" REAL", " DOUBLE PRECISION")
                    )
                tx.execute(statement)
        self._ensured.add(name)


class _Tx:
    """Statements inside one transaction (placeholders translated for the dialect)."""

    def __init__(self, store: StateStore, con: Any) -> None:
        self._store = store
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = self._con.cursor()
        cursor.execute(self._store._sql(sql), tuple(params))
        return cursor.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._con.cursor()
        cursor.execute(self._store._sql(sql), tuple(params))
        return [tuple(r) for r in cursor.fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None


_stores: dict[str, StateStore] = {}
_stores_lock = threading.Lock()


def state_store(settings: Settings) -> StateStore:
    """The process-wide store for ``settings.state_url`` (connections are per thread)."""
    with _stores_lock:
        store = _stores.get(settings.state_url)
        if store is None:
            store = _stores[settings.state_url] = StateStore(settings.state_url)
        return store
