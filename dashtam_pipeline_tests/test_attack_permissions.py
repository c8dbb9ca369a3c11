"""Attacks by another local user: the files that hold secrets must not be readable by them.

A demo-style run (and a plain ``materialize``) in a data dir the pipeline creates itself
leaves ``.secret_key``, ``state.db`` with its ``-wal``/``-shm``, and ``warehouse.duckdb``
0600 inside a 0700 data dir: no group or other bit anywhere on them. Tests run as whoever
runs them (often root, who reads everything), so the modes are what is checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashtam_pipeline.demo import prepare_demo
from dashtam_pipeline.private_files import create_private_file, make_private_dirs
from dashtam_pipeline.state.store import StateStore
from dashtam_pipeline_tests.test_pipeline_sandbox import materialize_all

SECRET_FILES = (".secret_key", "state.db", "state.db-wal", "state.db-shm", "warehouse.duckdb")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fresh_data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``DASHTAM_DATA_DIR`` (and the default ``DAGSTER_HOME`` in it) not created yet: the
    pipeline makes it, as on a first ``make demo``. The usual umask 022 is in force, so
    only the pipeline's own care can make anything private."""
    fresh = data_dir / "operator" / "data"
    monkeypatch.setenv("DASHTAM_DATA_DIR", str(fresh))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    monkeypatch.setenv("DASHTAM_SYMBOLS", "AAPL")
    monkeypatch.setenv("DASHTAM_FRED_SERIES", "GDP")
    return fresh


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def assert_private(data: Path) -> None:
    assert mode(data) == 0o700, oct(mode(data))
    assert mode(data / "dagster_home") == 0o700
    present = [name for name in SECRET_FILES if (data / name).exists()]
    assert {".secret_key", "state.db", "warehouse.duckdb"} <= set(present)
    for name in present:
        assert mode(data / name) & 0o077 == 0, f"{name} is {oct(mode(data / name))}"


@pytest.mark.integration
def test_a_demo_run_leaves_the_secrets_private(fresh_data_dir: Path, usual_umask: None) -> None:
    prepare_demo()  # drops Chase samples, connects the sandbox Schwab, creates the warehouse
    report = materialize_all("key:brokerage/chase_file_transactions")
    assert report.ok
    assert_private(fresh_data_dir)
    assert (fresh_data_dir / "state.db-wal").exists()  # the sidecars were checked too


@pytest.mark.integration
def test_a_first_materialize_leaves_the_secrets_private(
    fresh_data_dir: Path, usual_umask: None
) -> None:
    """Without ``prepare_demo``: the Dagster instance and the state store are what create
    the data dir here."""
    from dashtam_pipeline.connections import load_cipher
    from dashtam_pipeline.settings import load_settings

    assert materialize_all("group:macro").ok
    load_cipher(load_settings())  # a first connection would create the key file
    assert_private(fresh_data_dir)


def test_existing_folders_and_files_keep_their_mode_and_keep_working(
    tmp_path: Path, usual_umask: None
) -> None:
    """An operator's own choice (a data dir shared with a group) is not overridden, and an
    existing state store opens as before."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    store = StateStore(f"sqlite:///{shared / 'state.db'}")
    store.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    store.execute("INSERT INTO t VALUES (1)")
    store.close()
    os.chmod(shared / "state.db", 0o640)

    again = StateStore(f"sqlite:///{shared / 'state.db'}")
    assert again.query("SELECT v FROM t") == [(1,)]
    again.close()
    assert mode(shared) == 0o750 and mode(shared / "state.db") == 0o640
    assert create_private_file(shared / "state.db") is False


def test_private_folders_are_0700_at_every_level_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        made = make_private_dirs(tmp_path / "a" / "b" / "c")
        assert create_private_file(made / "key") is True
    finally:
        os.umask(previous)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", made):
        assert mode(folder) == 0o700
    assert mode(made / "key") == 0o600
