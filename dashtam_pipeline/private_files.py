"""Files and folders that hold secrets are the pipeline user's alone.

``$DASHTAM_DATA_DIR`` holds the key that opens every stored credential (``.secret_key``),
the encrypted credentials, DLQ and call audit (``state.db`` and its ``-wal``/``-shm``), the
warehouse and the lake with users' brokerage rows. With the usual umask (022) everything the
pipeline creates would be world-readable on a shared host, so what the pipeline creates is
made private explicitly: folders 0700, secret-bearing files 0600.

Only what the pipeline *creates* is made private: an existing folder or file keeps the mode
an operator gave it (a deployment may share a folder with a group on purpose), and nothing
here ever fails on an existing one. No process-wide ``umask`` is changed either: it would
also apply to the other threads of a Dagster process, whose files are not ours to decide.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(path: Path) -> Path:
    """Create ``path`` and every missing parent with mode 0700; existing folders are left
    as they are. ``Path.mkdir(parents=True, mode=...)`` would give the mode to the last
    folder only, and ``DASHTAM_DATA_DIR`` is usually a parent of what is asked for."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # another process made it first: its mode stands
            folder.mkdir(mode=PRIVATE_DIR_MODE)
            # mkdir's mode passes through the umask: only ever narrower than 0700, but a
            # chmod makes the result exact whatever the umask
            os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 (its folders 0700) unless it exists; True when
    it was created here. For files whose writer keeps the mode of an existing file (SQLite,
    which also gives its ``-wal`` and ``-shm`` files the database file's mode)."""
    make_private_dirs(Path(path).parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)
    return True


def make_private(path: Path) -> None:
    """``chmod 0600`` a file this process just created through a library that creates files
    with the umask's mode (DuckDB). A file that is already gone, or that belongs to another
    user (not ours to change), is no error."""
    with suppress(FileNotFoundError, PermissionError):
        os.chmod(path, PRIVATE_FILE_MODE)
