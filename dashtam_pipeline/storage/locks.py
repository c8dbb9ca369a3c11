"""Cross-process exclusive locks on lock files (``fcntl.flock``).

The lake is written by several processes at once (a multiprocess Dagster run, a backfill,
a replay), so a read-merge-write of one table must not interleave with another. ``flock``
locks belong to an open file description: they work across processes and across threads
that open the file separately, and the kernel releases them when a process dies, so a
crashed writer can never leave a table locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dashtam_pipeline.errors import PipelineError

#: How long a writer waits for another writer of the same table before giving up.
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
_POLL_SECONDS = 0.05


class LockTimeout(PipelineError):
    """Another process held a lock for longer than the caller was willing to wait."""

    def __init__(self, path: Path, timeout: float, purpose: str) -> None:
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
