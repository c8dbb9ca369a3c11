"""``dashtam forget`` removes the user's Chase exports too (their inbox folder and their
quarantine folder), or the next import would land every erased transaction again; it never
follows a link and never touches another user's files, and says what it removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance

from dashtam_pipeline.cli import main
from dashtam_pipeline_tests.test_chase_inbox_sensor import inbox, query, run_partition
from dashtam_pipeline_tests.test_users import EXPORT
from dashtam_pipeline_tests.user_helpers import ALICE, BOB

EXPORT_NAME = "Chase1234_Activity_20240107.CSV"
NOT_CHASE = "Date,Payee\n2024-01-02,Coffee\n"


def rows_of(user: object) -> int:
    return query(f"select count(*) from brokerage.transactions where user_id = '{user}'")[0][0]


def user_folder(user: object) -> Path:
    folder = inbox() / str(user)
    folder.mkdir(exist_ok=True)
    return folder


def test_import_forget_import_again_the_users_rows_stay_gone(
    instance: DagsterInstance, capsys: pytest.CaptureFixture[str],
) -> None:
    (user_folder(ALICE) / EXPORT_NAME).write_text(EXPORT)
    (user_folder(ALICE) / "not_chase.csv").write_text(NOT_CHASE)  # quarantined on import
    (user_folder(BOB) / EXPORT_NAME).write_text(EXPORT)
    assert run_partition(instance, None).ok
    quarantine = inbox().parent / "quarantine"
    assert (quarantine / str(ALICE) / "not_chase.csv").is_file()
    assert rows_of(ALICE) == 2 and rows_of(BOB) == 2

    capsys.readouterr()
    assert main(["forget", "--user", str(ALICE), "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"1 Chase file(s) from '{inbox() / str(ALICE)}'" in out
    assert f"2 Chase file(s) from '{quarantine / str(ALICE)}'" in out  # file + its reason
    assert f"folder '{inbox() / str(ALICE)}' (emptied, removed)" in out
    assert not (inbox() / str(ALICE)).exists() and not (quarantine / str(ALICE)).exists()

    # the same export dropped again by nobody: the next import has nothing of Alice's
    assert run_partition(instance, None).ok
    assert rows_of(ALICE) == 0 and rows_of(BOB) == 2
    assert (inbox() / str(BOB) / EXPORT_NAME).read_text() == EXPORT


def test_forget_follows_no_link_and_leaves_other_users_alone(
    instance: DagsterInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    bob = user_folder(BOB)
    (bob / EXPORT_NAME).write_text(EXPORT)
    secret = tmp_path / "secret.txt"
    secret.write_text("not Alice's\n")
    alice = user_folder(ALICE)
    (alice / EXPORT_NAME).write_text(EXPORT)
    (alice / "link.csv").symlink_to(secret)
    quarantine = inbox().parent / "quarantine"
    quarantine.mkdir()
    (quarantine / str(ALICE)).symlink_to(bob, target_is_directory=True)  # planted

    assert main(["forget", "--user", str(ALICE), "--yes"]) == 0
    out = capsys.readouterr().out

    assert (bob / EXPORT_NAME).read_text() == EXPORT  # never reached through the link
    assert secret.read_text() == "not Alice's\n" and (alice / "link.csv").is_symlink()
    assert not (alice / EXPORT_NAME).exists()
    assert f"1 Chase file(s) from '{alice}'" in out
    assert f"kept: '{alice / 'link.csv'}' is a symlink, not a regular file: left alone" in out
    assert f"kept: {quarantine / str(ALICE)} is a symlink, not a folder: left alone" in out
    assert (quarantine / str(ALICE)).is_symlink()
