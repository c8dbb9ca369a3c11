"""Lake table locks across hosts: a lock file that writers do not share cannot stop a lost
update; PostgreSQL's advisory lock (chosen when the state store is PostgreSQL) does.

Two "hosts" are two ``Lake`` objects over one shared root whose file locks live in
different directories (as each host's own ``flock`` would, or a network filesystem that
does not propagate it). Each writer pauses between reading a bucket and publishing it, so
the read-merge-writes are sure to overlap when nothing excludes them: the test is
deterministic, not a race that may or may not show up.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa
import pytest

from dashtam_pipeline.storage import lake as lake_module
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.locks import (
    FileTableLock,
    PostgresTableLock,
    TableLock,
    advisory_lock_key,
    exclusive_lock,
    table_lock_for,
)
from dashtam_pipeline_tests.test_lake import BAR_KEY, BARS, bars_frame

DAY = dt.date(2024, 1, 2)  # every writer's row falls into the same month bucket
PAUSE_SECONDS = 1.0  # long beside thread start-up even on a loaded machine


class HostLocalFileLock:
    """A ``flock`` kept in this "host's" own directory: real, but not shared."""

    def __init__(self, lock_root: Path) -> None:
        self.lock_root = lock_root

    def hold(
        self, table: str, directory: Path, *, timeout: float, purpose: str
    ) -> AbstractContextManager[None]:
        return exclusive_lock(self.lock_root / table / ".lock", timeout=timeout, purpose=purpose)


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bucket read is followed by a pause: the window in which another writer that is
    not excluded reads the same old file."""
    read = lake_module._read_conformed

    def read_then_pause(path: Path, schema: pa.Schema) -> pa.Table:
        data = read(path, schema)
        time.sleep(PAUSE_SECONDS)
        return data

    monkeypatch.setattr(lake_module, "_read_conformed", read_then_pause)


def _two_hosts_write(root: Path, locks: tuple[TableLock, TableLock]) -> list[str]:
    """Seed the bucket, then let two hosts each upsert one new symbol into it at once;
    returns the symbols the bucket holds afterwards."""
    Lake(root, table_lock=FileTableLock()).upsert(BARS, bars_frame(["AAPL"], [DAY]))
    hosts = [Lake(root, table_lock=lock) for lock in locks]
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=30)

    def write(lake: Lake, symbol: str) -> None:
        try:
            start.wait()
            lake.upsert(BARS, bars_frame([symbol], [DAY]))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(lake, symbol))
               for lake, symbol in zip(hosts, ["MSFT", "NVDA"], strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    frame = Lake(root).read_frame(BARS)
    assert not frame.duplicated(subset=BAR_KEY).any()
    return sorted(frame["symbol"])


def test_writers_that_do_not_share_a_file_lock_lose_an_update(
    tmp_path: Path, slow_reads: None
) -> None:
    locks = (HostLocalFileLock(tmp_path / "host-a"), HostLocalFileLock(tmp_path / "host-b"))
    symbols = _two_hosts_write(tmp_path / "shared-lake", locks)
    assert symbols != ["AAPL", "MSFT", "NVDA"]  # one writer's row was overwritten
    assert len(symbols) == 2 and "AAPL" in symbols


def test_the_postgresql_lock_loses_no_update(
    tmp_path: Path, slow_reads: None, postgres_url: str
) -> None:
    locks = (PostgresTableLock(postgres_url), PostgresTableLock(postgres_url))
    started = time.monotonic()
    assert _two_hosts_write(tmp_path / "shared-lake", locks) == ["AAPL", "MSFT", "NVDA"]
    # the second writer waited for the first: two pauses each, one after the other
    assert time.monotonic() - started >= 2 * PAUSE_SECONDS


def test_the_postgresql_lock_times_out_clearly_and_frees_on_exit(postgres_url: str) -> None:
    from dashtam_pipeline.storage.locks import LockTimeout

    lock = PostgresTableLock(postgres_url)
    other = PostgresTableLock(postgres_url)
    purpose = "lake table market.daily_bars"
    with (
        lock.hold(BARS, Path("unused"), timeout=5, purpose=purpose),
        pytest.raises(LockTimeout, match=r"market\.daily_bars"),
        other.hold(BARS, Path("unused"), timeout=0.3, purpose=purpose),
    ):
        pass  # pragma: no cover - never reached
    with PostgresTableLock(postgres_url).hold(BARS, Path("unused"), timeout=1, purpose="x"):
        pass
    assert "postgres" not in repr(lock).split("(")[1]  # the URL (a password) is not shown


def test_keys_are_stable_64_bit_integers_per_table() -> None:
    key = advisory_lock_key(BARS)
    assert -(2**63) <= key < 2**63
    assert key == advisory_lock_key("market.daily_bars")  # no per-process salt
    assert key != advisory_lock_key("market.quotes")


@pytest.fixture
def postgres_state(data_dir: Path, postgres_url: str,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DASHTAM_STATE_URL", postgres_url)
    yield postgres_url


def test_the_lock_is_chosen_from_the_state_store(data_dir: Path) -> None:
    assert isinstance(table_lock_for("sqlite:////tmp/state.db"), FileTableLock)
    assert isinstance(table_lock_for("postgresql://u@db:5432/x"), PostgresTableLock)
    assert isinstance(table_lock_for("postgres://u@db:5432/x"), PostgresTableLock)
    assert isinstance(Lake(data_dir / "lake").table_lock, FileTableLock)  # SQLite default


def test_a_lake_on_a_postgresql_state_store_locks_there(
    postgres_state: str, data_dir: Path
) -> None:
    lake = Lake(data_dir / "lake")
    assert isinstance(lake.table_lock, PostgresTableLock)
    lake.upsert(BARS, bars_frame(["AAPL"], [DAY]))
    assert not (lake.table_dir(BARS) / ".lock").exists()  # no local lock file involved
