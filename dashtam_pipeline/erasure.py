"""Erasing one user (``dashtam forget --user USER_ID --yes``).

A user's data lives in four places: their connections and encrypted credentials (the
state store), their rows in the lake (every table with a ``user_id`` column: the
brokerage tables, ``ops.quarantine``, and marts that carry the column), the warehouse,
whose tables are views over the lake — so erasing from the lake erases from the warehouse —
and their Chase exports on disk (``CHASE_IMPORT_DIR/<USER_ID>/`` and its quarantine
folder). The files go first: left behind, the next import would bring every erased
transaction back (``providers.chase_file.client.erase_user_files``, which never follows
a link and never opens another user's folder).

Each lake table is rewritten bucket by bucket with the lake's own primitives: under the
table's lock (the one every writer takes), each affected Parquet file is replaced
atomically by a copy without the user's rows, so a reader sees the old file or the new one,
never half of one, and every other row stays exactly as it was. The erasure is logged in
``erasure_audit`` with counts only (what was removed, never the removed data).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from dashtam_pipeline.providers.chase_file.client import UserFilesErased, erase_user_files
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.state.store import state_store
from dashtam_pipeline.storage.lake import _write_atomically  # the lake's atomic replace
from dashtam_pipeline.storage.locks import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    TableLock,
    configured_table_lock,
    table_lock_for,
)

AUDIT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS erasure_audit (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        erased_at TEXT NOT NULL,
        summary TEXT NOT NULL
    )""",
)


@dataclass
class ErasureReport:
    """What ``forget`` removed: connections (id, provider, alias), rows per table, and the
    user's Chase files (with what was left alone, and why)."""

    user_id: uuid.UUID
    connections: list[dict[str, str | None]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: UserFilesErased = field(default_factory=UserFilesErased)

    def lines(self) -> list[str]:
        out = [f"Erased user {self.user_id}:"]
        out += [f"  connection {c['id']} ({c['provider']}"
                f"{', ' + repr(c['alias']) if c['alias'] else ''}) and its credentials"
                for c in self.connections] or ["  no connections"]
        out += [f"  {n} row(s) from {t}" for t, n in sorted(self.rows.items()) if n] or [
            "  no rows in the lake or the warehouse"]
        out += [f"  {n} Chase file(s) from {os.fspath(folder)!r}"
                for folder, n in self.files.removed.items()] or ["  no Chase files"]
        out += [f"  folder {os.fspath(folder)!r} (emptied, removed)"
                for folder in self.files.folders_removed]
        out += [f"  kept: {sentence}" for sentence in self.files.left]
        return out


def erase_user_rows(
    lake_root: Path, user_id: uuid.UUID, table_lock: TableLock | None = None
) -> dict[str, int]:
    """Remove the user's rows from every lake table that has a ``user_id`` column; returns
    the rows removed per table (``schema.name``). ``table_lock`` is the lake writers' lock
    (default: the one the settings choose), so an erasure never interleaves with an upsert
    on any host."""
    lock = table_lock or configured_table_lock()
    removed: dict[str, int] = {}
    if not lake_root.is_dir():
        return removed
    for directory in sorted(p for p in lake_root.glob("*/*") if p.is_dir()):
        files = sorted(directory.glob("*.parquet"))
        if not any("user_id" in pq.read_schema(f).names for f in files):
            continue
        table = f"{directory.parent.name}.{directory.name}"
        with lock.hold(table, directory, timeout=DEFAULT_LOCK_TIMEOUT_SECONDS,
                       purpose=f"lake table {table} (forget)"):
            count = 0
            for path in sorted(directory.glob("*.parquet")):
                data = pq.read_table(path)
                if "user_id" not in data.column_names:
                    continue
                mine = pc.fill_null(pc.equal(data.column("user_id"), str(user_id)), False)
                hits = pc.sum(mine).as_py() or 0
                if hits:
                    _write_atomically(path, data.filter(pc.invert(mine)))
                    count += hits
        removed[table] = count
    return removed


def forget_user(settings: Settings, user_id: uuid.UUID) -> ErasureReport:
    """Erase one user: connections and credentials, their Chase files (first, so an import
    that starts after the erasure has nothing of theirs to land again), then their rows in
    every table; logged in ``erasure_audit`` (counts only: never file names, which carry
    account digits)."""
    repo = ConnectionRepository.from_settings(settings)
    report = ErasureReport(user_id)
    for connection in repo.delete_by_user(user_id):
        report.connections.append({"id": str(connection.id),
                                   "provider": connection.provider_slug,
                                   "alias": connection.alias})
    report.files = erase_user_files(settings.chase_inbox, user_id)
    report.rows = erase_user_rows(settings.lake_dir, user_id, table_lock_for(settings.state_url))
    store = state_store(settings)
    store.ensure_schema("erasure_audit", AUDIT_SCHEMA)
    summary = {"connections": [{k: c[k] for k in ("id", "provider")}
                               for c in report.connections], "rows": report.rows,
               "chase_files": report.files.files}
    with store.transaction() as tx:
        tx.execute("INSERT INTO erasure_audit (id, user_id, erased_at, summary) "
                   "VALUES (?, ?, ?, ?)",
                   (str(uuid.uuid4()), str(user_id),
                    dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    json.dumps(summary, sort_keys=True)))
    return report
