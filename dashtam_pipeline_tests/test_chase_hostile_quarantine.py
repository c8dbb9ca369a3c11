"""Moving a rejected Chase file never goes through a link: a ``quarantine/<USER_ID>`` (or
``quarantine`` itself) planted as a symlink, or a file in a folder's place, is refused in
one sentence and the rejected file stays in the inbox; nothing is written where the link
points. The move still works across file systems (the inbox a mount of its own)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.providers.chase_file.client import ChaseFileClient
from dashtam_pipeline_tests.user_helpers import ALICE

NOT_CHASE = b"Date,Payee,Account,Amount\n2024-01-02,Coffee,9876543210,-3.50\n"


def make_client(tmp_path: Path) -> ChaseFileClient:
    from dashtam_pipeline.settings import load_settings

    settings = load_settings()
    return ChaseFileClient(settings.provider("chase_file"), inbox=tmp_path / "inbox" / "chase")


def drop_bad(client: ChaseFileClient, user_folder: str | None) -> Path:
    folder = client.inbox / user_folder if user_folder else client.inbox
    folder.mkdir(parents=True, exist_ok=True)
    bad = folder / "bank_of_elsewhere.csv"
    bad.write_bytes(NOT_CHASE)
    return bad


def import_and_move(client: ChaseFileClient) -> list[str]:
    result = client.fetch_transactions(FetchRequest())
    assert len(result.rejected) == 1
    return client.after_landed()


@pytest.mark.parametrize("linked", ["user folder", "quarantine root"])
def test_a_symlinked_quarantine_folder_is_refused_and_the_file_stays(
    tmp_path: Path, data_dir: Path, linked: str,
) -> None:
    client = make_client(tmp_path)
    bad = drop_bad(client, str(ALICE))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    quarantine = client.quarantine_dir
    if linked == "user folder":
        quarantine.mkdir(parents=True)
        (quarantine / str(ALICE)).symlink_to(elsewhere, target_is_directory=True)
        shown = quarantine / str(ALICE)
    else:
        quarantine.symlink_to(elsewhere, target_is_directory=True)
        shown = quarantine

    [note] = import_and_move(client)

    assert note == (f"chase_file: '{ALICE}/bank_of_elsewhere.csv' is left in the inbox, not "
                    f"moved to quarantine: {shown} is a symlink, not a folder (a quarantine "
                    "folder must be a real folder, never a link)")
    assert bad.read_bytes() == NOT_CHASE
    assert list(elsewhere.rglob("*")) == []  # nothing written where the link points


def test_a_file_in_the_quarantine_folders_place_is_refused(tmp_path: Path, data_dir: Path) -> None:
    client = make_client(tmp_path)
    bad = drop_bad(client, None)
    client.quarantine_dir.write_text("not a folder\n")
    [note] = import_and_move(client)
    assert "is a regular file, not a folder" in note and bad.exists()
    assert client.quarantine_dir.read_text() == "not a folder\n"


def test_a_link_at_the_target_name_is_neither_followed_nor_replaced(
    tmp_path: Path, data_dir: Path,
) -> None:
    client = make_client(tmp_path)
    bad = drop_bad(client, str(ALICE))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    folder = client.quarantine_dir / str(ALICE)
    folder.mkdir(parents=True)
    (folder / bad.name).symlink_to(victim)

    [note] = import_and_move(client)

    assert note.startswith("chase_file: moved refused file 'bank_of_elsewhere.")
    assert victim.read_text() == "keep me\n" and (folder / bad.name).is_symlink()
    [moved] = [p for p in folder.iterdir() if p.suffix == ".csv" and not p.is_symlink()]
    assert moved.read_bytes() == NOT_CHASE and not bad.exists()
    assert "not a Chase export" in (folder / f"{moved.name}.reason.txt").read_text()


def test_a_move_across_file_systems_copies_then_removes(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(tmp_path)
    bad = drop_bad(client, str(ALICE))

    def cross_device(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "rename", cross_device)
    [note] = import_and_move(client)
    moved = client.quarantine_dir / str(ALICE) / bad.name
    assert note == f"chase_file: moved refused file {bad.name!r} to {moved.parent}"
    assert moved.read_bytes() == NOT_CHASE and not bad.exists()
