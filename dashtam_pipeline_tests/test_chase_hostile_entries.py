"""``dashtam materialize`` reports the inbox entries it will not read, as the sensor does:
one warning per entry that is not a regular file (a symlink, a FIFO, a folder, a folder not
named by a user id, an upper-case user id, a user folder that is a link to ``/etc``), naming
it and why; the entry is never opened and stays where it is."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.runner import plan_runs
from dashtam_pipeline.sensors.chase_inbox import chase_asset_key
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.payloads import load_bytes
from dashtam_pipeline_tests.test_attack_inbox import CARD
from dashtam_pipeline_tests.test_chase_inbox_sensor import drop, inbox

USER = "a11ce000-0000-4000-8000-000000000001"


def plant_hostile_entries(tmp_path: Path) -> dict[str, str]:
    """Every kind of entry the inbox refuses → the words its warning must carry."""
    secret = tmp_path / "secret.csv"
    secret.write_text("Transaction Date,Post Date,Description,Category,Type,Amount,Memo\n")
    (inbox() / "link.csv").symlink_to(secret)
    os.mkfifo(inbox() / "pipe.csv")
    (inbox() / "folder.csv").mkdir()
    (inbox() / "not-a-user").mkdir()
    (inbox() / USER.upper()).mkdir()
    (inbox() / "b0b00000-0000-4000-8000-000000000002").symlink_to(
        "/etc", target_is_directory=True)
    (inbox() / USER).mkdir()
    (inbox() / USER / "nested").mkdir()
    return {
        "'link.csv' is a symlink": "",
        "'pipe.csv' is a FIFO (named pipe)": "",
        "'folder.csv' is a folder": "only a folder named by a user id, a UUID, is read",
        "'not-a-user' is a folder": "only a folder named by a user id, a UUID, is read",
        f"{USER.upper()!r} is a folder": "named by the user id in lower case",
        "'b0b00000-0000-4000-8000-000000000002' is a symlink": "",
        f"'{USER}/nested' is a folder": "a user's folder holds files only",
    }


def test_materialize_warns_once_per_refused_entry_and_leaves_it(
    instance: DagsterInstance, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    expected = plant_hostile_entries(tmp_path)
    drop("Chase1001_Activity_20260430.CSV", load_bytes(CARD))
    before = sorted(os.listdir(inbox()))

    with caplog.at_level(logging.WARNING):
        plans = plan_runs(build_definitions(load_settings()), [chase_asset_key()],
                          instance=instance)  # what `dashtam materialize` plans

    assert [len(p.partitions) for p in plans] == [1]  # the good file only
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(expected), warnings
    for start, why in expected.items():
        [line] = [w for w in warnings if f"chase_file: {start}, not a regular file" in w]
        assert why in line and line.endswith("not read, left where it is")
    assert sorted(os.listdir(inbox())) == before  # every entry left where it was
    assert (inbox() / "pipe.csv").is_fifo() and (inbox() / "link.csv").is_symlink()
