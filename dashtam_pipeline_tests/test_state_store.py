"""The state store on both backends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing

import pytest

from dashtam_pipeline.state.store import StateStore, StateStoreError

SCHEMA = ["CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"]


def _increment(url: str, times: int) -> None:
    store = StateStore(url)
    store.ensure_schema("counters", SCHEMA)
    for _ in range(times):
        with store.transaction() as tx:
            row = tx.query_one("SELECT value FROM counters WHERE name = ? FOR UPDATE", ("n",))
            tx.execute("UPDATE counters SET value = ? WHERE name = ?", (row[0] + 1, "n"))


def test_read_modify_write_is_atomic_across_processes(state_url: str) -> None:
    store = StateStore(state_url)
    store.ensure_schema("counters", SCHEMA)
    store.execute("INSERT INTO counters VALUES (?, ?)", ("n", 0))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment, args=(state_url, 25)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert store.query("SELECT value FROM counters WHERE name = ?", ("n",)) == [(100,)]


def test_failed_transaction_rolls_back(state_url: str) -> None:
    store = StateStore(state_url)
    store.ensure_schema("counters", SCHEMA)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO counters VALUES (?, ?)", ("x", 1))
        raise RuntimeError("boom")
    assert store.query("SELECT count(*) FROM counters") == [(0,)]


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(StateStoreError, match="sqlite:/// or postgresql://"):
        StateStore("mysql://localhost/x")
