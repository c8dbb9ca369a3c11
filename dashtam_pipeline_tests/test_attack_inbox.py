"""Hostile inbox entries: links, pipes, devices, folders, files caught mid-write and names
Dagster would refuse. Only regular files are ever read; everything else is named in the
log and left alone; a cut-off last line never becomes a transaction; any name imports.

The FIFO test guards itself: opening a FIFO for reading blocks until a writer comes, so the
code under test runs in a thread, and after a timeout the test opens the FIFO for writing
to release it and fails, instead of hanging the suite."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, StaticPartitionsDefinition

from dashtam_pipeline.assets.partitions import (
    REFUSED_IN_PARTITION_KEYS,
    can_be_partition_key,
    encode_file_name,
    file_name_of,
    file_partition_key,
)
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.providers.chase_file.client import ChaseFileClient, parse_chase_csv
from dashtam_pipeline.sensors.chase_inbox import (
    PARTIAL_GRACE_SECONDS,
    PARTITIONS,
    scan_inbox,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.payloads import load_bytes
from dashtam_pipeline_tests.test_chase_inbox_sensor import (
    PROVIDER,
    drop,
    epoch_clock,
    inbox,
    query,
    run_partition,
    tick,
)

CARD = "chase_file/credit_card_personal_test_fixture_sample.csv"
SECRET = "TOP-SECRET-do-not-import"
GUARD_SECONDS = 20.0


def client() -> ChaseFileClient:
    settings = load_settings()
    return ChaseFileClient(settings.provider("chase_file"), inbox=settings.chase_inbox)


def secret_export(tmp_path: Path) -> Path:
    """A file outside the inbox that even looks like a Chase export: a link to it must
    still not be read."""
    secret = tmp_path / "secret.csv"
    secret.write_text("Transaction Date,Post Date,Description,Category,Type,Amount,Memo\n"
                      f"01/02/2024,01/02/2024,{SECRET},Shopping,Sale,-1.00,\n")
    return secret


def everything_landed() -> str:
    """Every transaction and quarantine record, as one text to search."""
    rows = query("select * from brokerage.transactions") + query("select * from ops.quarantine")
    return repr(rows)


def reason_files() -> str:
    quarantine = inbox().parent / "quarantine"
    return "".join(p.read_text() for p in quarantine.glob("*.reason.txt")) if quarantine.is_dir() \
        else ""


def with_timeout(action: Callable[[], Any], release: Callable[[], None]) -> Any:
    """``action()`` in a thread; if it has not returned after ``GUARD_SECONDS`` (it is
    blocked opening a FIFO), ``release()`` unblocks it and the test fails."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(GUARD_SECONDS)
    if worker.is_alive():
        release()
        worker.join(5)
        pytest.fail(f"blocked for {GUARD_SECONDS}s: the FIFO was opened")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_symlink_to_a_secret_file_is_never_read_but_reported_and_left(
    instance: DagsterInstance, tmp_path: Path,
) -> None:
    link = inbox() / "Chase1234_Activity_20240102.CSV"
    link.symlink_to(secret_export(tmp_path))
    drop("Chase5678_Activity_20260430.CSV", load_bytes(CARD))

    result = tick(instance, None)
    assert [file_name_of(r.partition_key) for r in result.run_requests] == [
        "Chase5678_Activity_20260430.CSV"]
    again = tick(instance, result.cursor)
    assert "Chase1234_Activity_20240102.CSV" in (again.skip_message or "")
    assert "not regular files, never read" in (again.skip_message or "")

    assert run_partition(instance, None).ok  # `dashtam materialize`: every file
    assert link.is_symlink() and SECRET in link.read_text()  # left as it was
    assert SECRET not in everything_landed() and SECRET not in reason_files()
    assert query(f"select count(*) from brokerage.transactions where provider = '{PROVIDER}'"
                 ) == [(6,)]

    # a run asking for the link by name (a partition made before it became one)
    fetched = client().fetch_transactions(FetchRequest(files=(link.name,)))
    assert fetched.frame.empty and fetched.rejected == []
    assert any("'Chase1234_Activity_20240102.CSV' is a symlink" in n for n in fetched.notes)


def test_a_fifo_is_never_opened(data_dir: Path) -> None:
    fifo = inbox() / "Chase1234_Activity_20240102.CSV"
    os.mkfifo(fifo)

    def release() -> None:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    scan = with_timeout(lambda: scan_inbox(inbox(), [], {}, now=time.time(),
                                           settle_seconds=0), release)
    assert scan.new_keys == [] and [(e.name, e.kind) for e in scan.refused] == [
        (fifo.name, "FIFO (named pipe)")]
    for request in (FetchRequest(), FetchRequest(files=(fifo.name,))):
        result = with_timeout(lambda r=request: client().fetch_transactions(r), release)
        assert result.frame.empty and result.rejected == []
        assert any("is a FIFO (named pipe), not a regular file" in n for n in result.notes)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_folders_and_devices_are_reported_and_left(data_dir: Path) -> None:
    folder = inbox() / "Chase1234_Activity_20240102.CSV"
    folder.mkdir()
    (inbox() / "zero.csv").symlink_to("/dev/zero")  # a device, reached through a link
    device = inbox() / "null.csv"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        device = None  # not root: the link to /dev/zero stands for devices
    result = client().fetch_transactions(FetchRequest())
    assert result.frame.empty and result.rejected == []
    notes = "\n".join(result.notes)
    assert "'Chase1234_Activity_20240102.CSV' is a folder" in notes
    assert "'zero.csv' is a symlink" in notes
    if device is not None:
        assert "'null.csv' is a device" in notes
    assert folder.is_dir() and (inbox() / "zero.csv").is_symlink()
    assert not (inbox().parent / "quarantine").exists()


def test_a_cut_off_last_line_waits_then_never_lands_as_a_phantom_row(
    instance: DagsterInstance,
) -> None:
    now = [time.time()]
    clock = epoch_clock(now)
    data = load_bytes(CARD)
    cut = data[: data.rindex(b"-14.31") + 4]  # "...,Food & Drink,Sale,-14." : no line end
    name = "Chase5678_Activity_20260430.CSV"
    path = drop(name, cut, age_seconds=60)  # a copy that kept its source's mtime

    waiting = tick(instance, None, clock=clock)
    assert waiting.run_requests == []
    assert parse_chase_csv(cut, name).cut_line == 7

    # the copy completes: the whole export is imported, nothing of the cut line
    path.write_bytes(data)
    os.utime(path, (now[0] - 60, now[0] - 60))
    now[0] += 30
    grown = tick(instance, waiting.cursor, clock=clock)  # it grew since the last tick: waits
    assert grown.run_requests == []
    now[0] += 30
    complete = tick(instance, grown.cursor, clock=clock)
    assert [r.partition_key for r in complete.run_requests] == [file_partition_key(name, data)]

    # a copy that never completes is imported after the grace, its cut line quarantined
    stalled = drop("Chase9999_Activity_20260430.CSV", cut, age_seconds=60)
    assert tick(instance, complete.cursor, clock=clock).run_requests == []
    os.utime(stalled, (now[0] - PARTIAL_GRACE_SECONDS - 1,) * 2)
    late = tick(instance, None, clock=clock)
    assert [file_name_of(r.partition_key) for r in late.run_requests] == [stalled.name]
    for request in complete.run_requests + late.run_requests:
        assert run_partition(instance, request.partition_key).ok
    amounts = query("select source_file, amount from brokerage.transactions "
                    "where amount between -15 and -14 order by source_file")
    assert amounts == [(name, -14.31)]  # never -14.0 from the cut line
    ((reason,),) = query("select reason from ops.quarantine")
    assert "line 7 is cut off" in reason and stalled.name in reason


WEIRD_NAMES = [
    "Chase1234_Activity...copy.CSV",
    "Chase1234 Activity 2024 (1).csv",
    "Chase1234_Relevé_été_口座.csv",
    "Chase1234_tab\there_esc\x1b.csv",
    "Chase1234_100%_sure.csv",
    "Chase1234_" + "x" * 230 + ".csv",
]


def test_any_file_name_imports_under_a_valid_key(instance: DagsterInstance) -> None:
    data = load_bytes(CARD)
    for number, name in enumerate(WEIRD_NAMES):
        # other dates per file: different bytes (or the sensor imports only the first) and
        # other transactions (or identical rows of one account would be one row)
        drop(name, data.replace(b"/2026", f"/{2000 + number}".encode())
             .replace(b"/2025", f"/{1990 + number}".encode()))
    result = tick(instance, None)
    keys = [r.partition_key for r in result.run_requests]
    assert sorted(file_name_of(k) for k in keys) == sorted(WEIRD_NAMES)
    assert all(can_be_partition_key(k) for k in keys)
    assert sorted(instance.get_dynamic_partitions(PARTITIONS.name)) == sorted(keys)
    assert run_partition(instance, None).ok
    landed = dict(query("select source_file, count(*) from brokerage.transactions group by 1"))
    assert landed == dict.fromkeys(WEIRD_NAMES, 6)


def test_our_statement_of_refused_key_substrings_is_dagsters() -> None:
    candidates = [chr(code) for code in range(0x80)] + ["..", "...", "\u2028", "é"]
    for text in candidates:
        key = f"a{text}b"
        try:
            StaticPartitionsDefinition([key])
            refused = False
        except Exception:
            refused = True
        assert refused == (not can_be_partition_key(key)), repr(text)
    assert {"...", "\n", "\0"} <= set(REFUSED_IN_PARTITION_KEYS)


@pytest.mark.parametrize("name", [*WEIRD_NAMES, "....", "a\udcffb.csv", "\u2028.csv", "%41"])
def test_the_key_encoding_is_reversible_and_plain_names_keep_theirs(name: str) -> None:
    key = file_partition_key(name, b"x")
    assert file_name_of(key) == name and can_be_partition_key(key)
    assert encode_file_name("Chase1234_Activity_20240131.CSV") == (
        "Chase1234_Activity_20240131.CSV")
