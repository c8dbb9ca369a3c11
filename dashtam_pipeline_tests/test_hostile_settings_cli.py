"""Hostile command lines: each used to end as "unexpected error: SomeException" (or, for an
empty ``--select``, to do the opposite of what was asked). Each is now one sentence naming
the argument, with a usage exit (2) and nothing done. In process (``cli.main``), in a
private data dir with the sandbox on."""

from __future__ import annotations

import io
import socket
import sys
import uuid
from pathlib import Path

import pytest

from dashtam_pipeline import cli
from dashtam_pipeline.resilience.dlq import DeadLetterError, DeadLetterQueue
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository

USER = "00000000-0000-5000-8000-0000000000a7"


@pytest.fixture(autouse=True)
def sandbox(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    return data_dir


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse's refusal: exit 2, and the error line (after the usage line)."""
    with pytest.raises(SystemExit) as caught:
        cli.main(list(argv))
    assert caught.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected error" not in err
    return err.strip().splitlines()[-1]


def one_sentence(capsys: pytest.CaptureFixture[str], status: int, *argv: str) -> str:
    assert cli.main(list(argv)) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "unexpected error" not in err
    return err.strip()


# -- dlq replay ---------------------------------------------------------------------------
@pytest.mark.parametrize("entry_id", ["99999999999999999999999", "0", "-3", "9" * 5000])
def test_a_dlq_id_outside_sqlite_range_is_a_usage_sentence(
    capsys: pytest.CaptureFixture[str], entry_id: str
) -> None:
    line = usage_error(capsys, "dlq", "replay", entry_id)
    assert line.startswith("dashtam dlq replay: error: argument ID: an entry id is a whole "
                           "number from 1 to 9223372036854775807, got ")


def test_the_queue_reports_an_id_beyond_64_bits_as_unknown() -> None:
    queue = DeadLetterQueue.from_settings(load_settings())
    with pytest.raises(DeadLetterError, match=r"no dead-letter entry with id 1180591620717"):
        queue.get([2**70])


# -- sandbox serve ------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999999", "-1", "65536", "http"])
def test_a_port_out_of_range_is_a_usage_sentence(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    line = usage_error(capsys, "sandbox", "serve", "--port", port)
    assert line.startswith("dashtam sandbox serve: error: argument --port: a port is a whole "
                           "number from 0 to 65535, got ")


@pytest.mark.parametrize("host", ["bad host", "", "a\x1b[31mb"])
def test_a_host_that_cannot_be_one_is_a_usage_sentence(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    line = usage_error(capsys, "sandbox", "serve", "--host", host)
    assert line.startswith("dashtam sandbox serve: error: argument --host: a host is a name "
                           "or IP address")
    assert "\x1b" not in line


def test_a_port_in_use_is_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_sentence(capsys, cli.EXIT_FAILED, "sandbox", "serve", "--port", str(port))
    assert line.startswith(f"dashtam sandbox: cannot serve the sandbox on host '127.0.0.1' "
                           f"port {port}: ")


# -- materialize / demo --select ------------------------------------------------------------
@pytest.mark.parametrize("command", ["materialize", "demo"])
@pytest.mark.parametrize("selection", ["", "  "])
def test_an_empty_selection_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], sandbox: Path, command: str, selection: str
) -> None:
    line = one_sentence(capsys, cli.EXIT_USAGE, command, "--select", selection)
    assert line == (f"dashtam {command}: --select must name the assets to materialize (e.g. "
                    "'group:market' or 'key:market/quotes'), got an empty selection; leave "
                    "--select out to materialize everything")
    assert not (sandbox / "dagster_home").exists()
    assert not (sandbox / "inbox").exists()  # the demo did not drop its sample files


# -- connect: aliases --------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["evil\nalias\x1b[31m", "", "   ", "x" * 100_000, "a\u202eb"])
@pytest.mark.parametrize("command", [
    ["connect", "schwab", "--redirect-url", "https://127.0.0.1:8182/?code=C0.x"],
    ["connect", "alpaca", "--user", USER, "--stdin"],
])
def test_a_bad_alias_is_refused_before_any_connection_exists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, alias: str,
    command: list[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"PKKEY\nSx9-q\n")))
    line = one_sentence(capsys, cli.EXIT_USAGE, *command, "--alias", alias)
    assert line.startswith("dashtam connect: --alias must be 1 to 64 printable characters")
    assert "\x1b" not in line and len(line) < 300
    assert ConnectionRepository.from_settings(load_settings()).find_all() == []


def test_a_refused_code_under_a_new_alias_leaves_no_connection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for alias in ("IRA", "IRA2"):
        one_sentence(capsys, cli.EXIT_FAILED, "connect", "schwab", "--code", "C0.bogus@",
                     "--alias", alias)
    assert ConnectionRepository.from_settings(load_settings()).find_all() == []


# -- connect alpaca --stdin: keys that an HTTP header can carry -----------------------------
@pytest.mark.parametrize(("stdin", "sentence"), [
    ("ключ\nSx9-q\n".encode(), "the Alpaca Markets key id must be 1 to 256 visible ASCII"),
    (b"PK KEY\nSx9-q\n", "the Alpaca Markets key id must be 1 to 256 visible ASCII"),
    (b"PKKEY\nS\x01x9-q\n", "the Alpaca Markets secret key must be 1 to 256 visible ASCII"),
    (b"PKKEY\n" + b"S" * 300 + b"\n", "the Alpaca Markets secret key must be 1 to 256"),
    (b"PKKEY\nSx9-q\nextra\n", "standard input must hold exactly two lines, the key id then "
                               "the secret key, but it holds 3"),
    (b"PKKEY\n", "standard input must hold exactly two lines"),
    (b"PK\xff\xfeKEY\nSx9-q\n", "it is not UTF-8 text"),
    (b"K" * 200_000, "but it holds more than 1024 bytes"),
])
def test_user_keys_that_cannot_be_sent_are_refused_unshown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: bytes,
    sentence: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    line = one_sentence(capsys, cli.EXIT_FAILED, "connect", "alpaca", "--user", USER,
                        "--alias", "paper", "--stdin")
    assert sentence in line
    assert "nothing was stored" in line
    for word in (b"Sx9-q", b"KEY", "ключ".encode(), b"SSSS", b"KKKK"):
        assert word.decode() not in line
    assert ConnectionRepository.from_settings(load_settings()).find_all() == []


def test_good_user_keys_with_a_trailing_blank_line_connect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"PKKEY77\r\nSx9-q/+=\r\n\n")))
    assert cli.main(["connect", "alpaca", "--user", USER, "--alias", " paper ",
                     "--stdin"]) == cli.EXIT_OK
    assert "as 'paper' (ACTIVE)" in capsys.readouterr().out
    (stored,) = ConnectionRepository.from_settings(load_settings()).find_by_user_id(
        uuid.UUID(USER))
    assert stored.alias == "paper"


# -- settings, as a command sees them ----------------------------------------------------
def test_a_non_utf8_dotenv_is_one_sentence_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes("FMP_API_KEY=k-77\n".encode("utf-16"))
    line = one_sentence(capsys, cli.EXIT_USAGE, "providers")
    assert line.startswith(f"dashtam providers: .env in {tmp_path} is not UTF-8 text")


@pytest.mark.parametrize("where", ["/dev/null", "/dev/null/data"])
def test_a_data_dir_that_is_no_folder_is_one_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    monkeypatch.setenv("DASHTAM_DATA_DIR", where)
    line = one_sentence(capsys, cli.EXIT_USAGE, "providers")
    assert line.startswith("dashtam providers: DASHTAM_DATA_DIR ")
