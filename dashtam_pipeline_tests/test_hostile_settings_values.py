"""Hostile settings that used to pass the load and fail later, deep inside a run or a
command: numbers too large to use, blank paths that meant the working directory, a data
dir that is a file or cannot be created, a ``.env`` that is not UTF-8. Each is now refused
(or, for a blank path, read as unset) when the settings are read, in one sentence that
names the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashtam_pipeline.cli import _log_dir
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.settings import load_settings


def refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# -- numbers: an upper bound for every duration and count ---------------------------------
@pytest.mark.parametrize(("name", "value", "sentence"), [
    # 1e300 s overflowed the request deadline ("timestamp out of range") inside a run
    ("FMP_TIMEOUT_SECONDS", "1e300", "FMP_TIMEOUT_SECONDS must be at most 3,600 seconds, "
                                     "got 1e300"),
    ("SCHWAB_TIMEOUT_SECONDS", "3600.5", "SCHWAB_TIMEOUT_SECONDS must be at most 3,600 "
                                         "seconds"),
    # 1e23 s overflowed a C int ("Python int too large to convert to C int")
    ("FMP_CIRCUIT_BREAKER_TIMEOUT", "1e23", "FMP_CIRCUIT_BREAKER_TIMEOUT must be at most "
                                           "86,400 seconds, got 1e23"),
    ("POLYGON_CIRCUIT_BREAKER_THRESHOLD", "1e23", "POLYGON_CIRCUIT_BREAKER_THRESHOLD must be "
                                                  "at most 1,000,000, got 1e23"),
    ("FRED_REQUESTS_PER_DAY", "99999999999999999999999", "FRED_REQUESTS_PER_DAY must be at "
                                                         "most 1,000,000,000"),
    ("DASHTAM_DLQ_MAX_REPLAYS", "1e23", "DASHTAM_DLQ_MAX_REPLAYS must be at most 1,000,000"),
    ("DASHTAM_FRED_SERIES_PER_RUN", "1e9", "DASHTAM_FRED_SERIES_PER_RUN must be at most "
                                          "1,000,000"),
    ("DASHTAM_SANDBOX_USERS", "1e23", "DASHTAM_SANDBOX_USERS must be at most 1,000,000"),
    ("DASHTAM_CELERY_VISIBILITY_TIMEOUT", "1e23", "DASHTAM_CELERY_VISIBILITY_TIMEOUT must "
                                                  "be at most 2,592,000 seconds"),
])
def test_a_number_above_its_bound_is_refused_at_load(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, sentence: str
) -> None:
    assert sentence in refusal(monkeypatch, name, value)


def test_the_bounds_themselves_are_accepted(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"FMP_TIMEOUT_SECONDS": "3600", "FMP_CIRCUIT_BREAKER_TIMEOUT": "86400",
                        "FMP_CIRCUIT_BREAKER_THRESHOLD": "1000000",
                        "FMP_REQUESTS_PER_MINUTE": "1e9"}.items():
        monkeypatch.setenv(name, value)
    fmp = load_settings().provider("fmp")
    assert (fmp.timeout_seconds, fmp.breaker_timeout_seconds, fmp.breaker_threshold,
            fmp.requests_per_minute) == (3600.0, 86400.0, 1_000_000, 1_000_000_000)


def test_below_range_keeps_its_sentence(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert refusal(monkeypatch, "FMP_TIMEOUT_SECONDS", "-1") == (
        "FMP_TIMEOUT_SECONDS must be a number of seconds greater than 0, got -1")


# -- blank paths are unset -------------------------------------------------------------
@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_path_setting_is_its_default_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("DASHTAM_DATA_DIR", "DAGSTER_HOME", "CHASE_IMPORT_DIR"):
        monkeypatch.setenv(name, blank)
    monkeypatch.delenv("DASHTAM_STATE_URL", raising=False)
    settings = load_settings()
    assert settings.data_dir == work / "data"
    assert settings.dagster_home_dir == work / "data" / "dagster_home"
    # before: Path("") == the working directory, whose files the import quarantined
    assert settings.chase_inbox == work / "data" / "inbox" / "chase"
    assert _log_dir() == work / "data" / "logs"  # the CLI's log folder agrees
    # and the instance: a blank DAGSTER_HOME is no folder named " " in the working directory
    from dashtam_pipeline.instance import ensure_dagster_home

    assert ensure_dagster_home(settings) == work / "data" / "dagster_home"
    assert sorted(p.name for p in work.iterdir()) == ["data"]


def test_a_blank_chase_import_dir_in_dotenv_is_unset(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CHASE_IMPORT_DIR=\n")
    assert load_settings().chase_inbox == data_dir / "inbox" / "chase"


# -- the data dir must be a folder we can have ---------------------------------------------
def test_a_data_dir_that_is_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    for path in (file, Path(os.devnull)):
        message = refusal(monkeypatch, "DASHTAM_DATA_DIR", str(path))
        assert message.startswith(f"DASHTAM_DATA_DIR must be a folder, but {path} exists")


def test_a_data_dir_that_cannot_be_created_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    message = refusal(monkeypatch, "DASHTAM_DATA_DIR", str(file / "data"))
    assert message.startswith(f"DASHTAM_DATA_DIR {file / 'data'} cannot be created (")


def test_a_new_data_dir_is_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHTAM_DATA_DIR", str(tmp_path / "new" / "data"))
    monkeypatch.delenv("DASHTAM_STATE_URL", raising=False)
    assert load_settings().data_dir.is_dir()
    assert (tmp_path / "new" / "data").stat().st_mode & 0o777 == 0o700


def test_a_home_of_no_user_is_refused(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, "CHASE_IMPORT_DIR", "~no-such-user-8c1f/inbox")
    assert message.startswith("CHASE_IMPORT_DIR must be a folder path")


# -- .env -------------------------------------------------------------------------------
def test_a_dotenv_that_is_not_utf8_is_one_sentence(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes("FMP_API_KEY=k-77\n".encode("utf-16"))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value).startswith(f".env in {tmp_path} is not UTF-8 text")
    assert _log_dir() == data_dir / "logs"  # the log folder still resolves


def test_a_dotenv_with_a_utf8_byte_order_mark_reads_its_first_variable(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DASHTAM_RIGHTS_PROFILE", raising=False)
    monkeypatch.delenv("FMP_API_KEY", raising=False)
    (tmp_path / ".env").write_bytes(
        b"\xef\xbb\xbfDASHTAM_RIGHTS_PROFILE=pro\nFMP_API_KEY=k-77\n")
    settings = load_settings()
    assert settings.dashtam_rights_profile == "pro"
    assert settings.missing_settings("fmp") == []
