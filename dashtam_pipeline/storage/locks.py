"""Cross-process exclusive locks: lock files (``fcntl.flock``) and lake table locks.

The lake is written by several processes at once (a multiprocess Dagster run, a backfill,
a replay, Celery workers on other hosts), so a read-merge-write of one table must not
interleave with another.

``flock`` locks belong to an open file description: they work across processes and across
threads that open the file separately, and the kernel releases them when a process dies, so
a crashed writer can never leave a table locked. But they only exclude processes of *one
kernel* (and most network filesystems ignore or emulate them), so two hosts writing one
shared lake would each get "their" lock and lose each other's rows. When the state store is
PostgreSQL -- the one thing every host of a scaled-out deployment already shares -- a table
is locked there instead, with a session-level advisory lock: PostgreSQL releases it when the
holder's connection ends, so a killed writer cannot leave a table locked there either.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from dashtam_pipeline.errors import PipelineError

#: How long a writer waits for another writer of the same table before giving up.
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
_POLL_SECONDS = 0.05
#: Name of the per-table lock file of ``FileTableLock``.
LOCK_FILE_NAME = ".lock"


class LockTimeout(PipelineError):
    """Another process held a lock for longer than the caller was willing to wait."""

    def __init__(self, path: Path | str, timeout: float, purpose: str) -> None:
        self.path = path
        self.timeout = timeout
        self.purpose = purpose
        super().__init__(
            f"could not lock {purpose} within {timeout:g}s: another process holds {path}; "
            "wait for the other run to finish (or raise the timeout) and retry"
        )


@contextmanager
def exclusive_lock(
    path: Path, *, timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS, purpose: str | None = None
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Polls with a non-blocking lock so the wait is bounded: a stuck holder yields a
    ``LockTimeout`` naming what was being locked instead of hanging the run forever.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(path, timeout, purpose or str(path)) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- lake table locks --------------------------------------------------------------------
@runtime_checkable
class TableLock(Protocol):
    """Excludes the other writers of one lake table for a read-merge-write.

    ``table`` is the table's name (``market.daily_bars``), the same on every host;
    ``directory`` is where this host sees the table's files (a lock that lives next to the
    files may use it).
    """

    def hold(
        self, table: str, directory: Path, *, timeout: float, purpose: str
    ) -> AbstractContextManager[None]: ...


class FileTableLock:
    """``flock`` on ``<table dir>/.lock``: enough while every writer runs on one host."""

    def hold(
        self, table: str, directory: Path, *, timeout: float, purpose: str
    ) -> AbstractContextManager[None]:
        return exclusive_lock(directory / LOCK_FILE_NAME, timeout=timeout, purpose=purpose)

    def __repr__(self) -> str:
        return "FileTableLock()"


def advisory_lock_key(table: str) -> int:
    """A stable signed 64-bit key for ``table`` (what ``pg_advisory_lock`` takes).

    Python's ``hash()`` is salted per process, so two hosts would disagree; the first eight
    bytes of a SHA-256 are the same everywhere. The prefix keeps the lake's keys apart from
    any other advisory lock user of the same database.
    """
    digest = hashlib.sha256(f"dashtam-lake-table:{table}".encode()).digest()[:8]
    return int.from_bytes(digest, "big", signed=True)


class PostgresTableLock:
    """A session-level ``pg_advisory_lock`` per table, on a connection of its own.

    Its own connection (opened per hold, closed after) so the lock never rides on a
    connection that a transaction of the state store might roll back or share, and so a
    writer killed mid-upsert loses the connection and with it the lock. The wait polls
    ``pg_try_advisory_lock`` so it is bounded like the file lock's.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def _held(self, table: str, timeout: float, purpose: str) -> Iterator[None]:
        import psycopg2

        key = advisory_lock_key(table)
        connection = psycopg2.connect(self.url, connect_timeout=max(1, int(timeout)))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                deadline = time.monotonic() + timeout
                while True:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                    row = cursor.fetchone()
                    if row is not None and row[0]:
                        break
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"PostgreSQL advisory lock {key}", timeout, purpose)
                    time.sleep(_POLL_SECONDS)
                try:
                    yield
                finally:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            connection.close()

    def hold(
        self, table: str, directory: Path, *, timeout: float, purpose: str
    ) -> AbstractContextManager[None]:
        return self._held(table, timeout, purpose)

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return "PostgresTableLock(<state store>)"


def table_lock_for(state_url: str) -> TableLock:
    """The lock the lake uses with this state store: PostgreSQL's when the state store is
    PostgreSQL (shared by every host), the local file lock otherwise."""
    scheme = state_url.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return PostgresTableLock(state_url.replace("postgresql+psycopg2://", "postgresql://"))
    return FileTableLock()


def configured_table_lock() -> TableLock:
    """The lock for the settings in force now (``DASHTAM_STATE_URL``)."""
    from dashtam_pipeline.settings import load_settings

    return table_lock_for(load_settings().state_url)
