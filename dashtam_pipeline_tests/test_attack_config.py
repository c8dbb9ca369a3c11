"""Hostile settings through the real command line: every bad value is refused at once.

Each case runs the installed ``dashtam`` console script in a subprocess with one bad
environment variable (or ``.env`` line) and expects what an operator can act on: exit code
2 (nothing ran: a setting is wrong), exactly one line on stderr that names the variable
and says what is wrong with the value, no traceback, no pydantic error dump, and never the
value of a secret or the password of a state URL.

Before these checks, ``FMP_TIMEOUT_SECONDS=-1``, ``DASHTAM_SYMBOLS=,,,`` or an ``ftp://``
base URL were accepted and failed later inside a run (or never), and a value pydantic
could not parse printed its own multi-part message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashtam_pipeline.errors import ConfigurationError

#: The console script the project installs, beside this interpreter (as users run it).
DASHTAM = Path(sys.executable).with_name("dashtam")
#: A password that must never be printed back.
STATE_PASSWORD = "s3cr3t-pw-81f2"
SECRET_KEY_VALUE = "not-a-fernet-key-5d1c"

PREFIXES = ("FMP", "POLYGON", "FRED", "NEWS", "ALPACA", "SCHWAB")

#: (variable, value, words the sentence must contain besides the variable's name)
CASES: list[tuple[str, str, str]] = [
    # timeouts: > 0 and finite
    *[(f"{p}_TIMEOUT_SECONDS", v, "greater than 0")
      for p, v in zip(PREFIXES, ("-1", "0", "nan", "inf", "abc", ""), strict=True)],
    ("FMP_TIMEOUT_SECONDS", "1e400", "greater than 0"),
    ("FRED_TIMEOUT_SECONDS", "-inf", "greater than 0"),
    ("NEWS_TIMEOUT_SECONDS", "5 seconds", "greater than 0"),
    # breaker thresholds: whole numbers >= 1
    *[(f"{p}_CIRCUIT_BREAKER_THRESHOLD", v, "at least 1")
      for p, v in zip(PREFIXES, ("0", "-1", "1.5", "abc", "nan", ""), strict=True)],
    # breaker timeouts: > 0 and finite
    *[(f"{p}_CIRCUIT_BREAKER_TIMEOUT", v, "greater than 0")
      for p, v in zip(PREFIXES, ("0", "-5", "inf", "nan", "abc", ",,,"), strict=True)],
    # base URLs: http(s) with a host
    ("FMP_BASE_URL", "ftp://example.com/stable", "http"),
    ("POLYGON_BASE_URL", "", "http"),
    ("FRED_BASE_URL", "not a url", "http"),
    ("NEWS_BASE_URL", "http://", "host"),
    ("ALPACA_BASE_URL", "file:///etc/passwd", "http"),
    ("SCHWAB_BASE_URL", "http://host:notaport/x", "http"),
    ("SCHWAB_CALLBACK_URL", "javascript:alert(1)", "http"),
    ("FMP_BASE_URL", "https://:443/stable", "host"),
    # symbols: non-empty, the symbol grammar
    ("DASHTAM_SYMBOLS", "", "at least one symbol"),
    ("DASHTAM_SYMBOLS", ",,,", "at least one symbol"),
    ("DASHTAM_SYMBOLS", "aapl;drop", "ticker symbols"),
    ("DASHTAM_SYMBOLS", "AAPL,../../etc/passwd", "ticker symbols"),
    ("DASHTAM_SYMBOLS", "AAPL,MS FT", "ticker symbols"),
    ("DASHTAM_SYMBOLS", "1ABC", "ticker symbols"),
    ("DASHTAM_SYMBOLS", "TOOLONGSYMBOL", "ticker symbols"),
    ("DASHTAM_SYMBOLS", "AAPL,'; DROP TABLE x; --", "ticker symbols"),
    # FRED series: non-empty, FRED's id grammar
    ("DASHTAM_FRED_SERIES", "", "at least one FRED series"),
    ("DASHTAM_FRED_SERIES", ",,,", "at least one FRED series"),
    ("DASHTAM_FRED_SERIES", "gdp;drop", "FRED series ids"),
    ("DASHTAM_FRED_SERIES", "GDP,../x", "FRED series ids"),
    ("DASHTAM_FRED_SERIES", "A" * 31, "FRED series ids"),
    ("DASHTAM_FRED_SERIES", "GDP,UN RATE", "FRED series ids"),
    # news queries: printable, NewsAPI's length limit
    ("DASHTAM_NEWS_QUERIES", "x" * 501, "at most 500"),
    ("DASHTAM_NEWS_QUERIES", "apple,bell\x07", "printable"),
    # enumerations
    ("DASHTAM_RIGHTS_PROFILE", "gold", "basic, pro"),
    ("DASHTAM_RIGHTS_PROFILE", "", "basic, pro"),
    ("FMP_LICENSE_TIER", "gold", "free"),
    ("NEWS_LICENSE_TIER", "enterprise;", "developer"),
    ("DASHTAM_SANDBOX", "maybe", "true or false"),
    # limits and counters
    ("FMP_REQUESTS_PER_MINUTE", "0", "at least 1"),
    ("POLYGON_REQUESTS_PER_DAY", "-1", "at least 1"),
    ("FRED_REQUESTS_PER_MINUTE", "abc", "at least 1"),
    ("DASHTAM_DLQ_MAX_REPLAYS", "0", "at least 1"),
    ("DASHTAM_SANDBOX_SEED", "-3", "whole number"),
    ("DASHTAM_SANDBOX_USERS", "0", "at least 1"),
    ("DASHTAM_SANDBOX_USERS", "many", "whole number of sandbox users"),
    # secrets: refused without being quoted back
    ("DASHTAM_SECRET_KEY", SECRET_KEY_VALUE, "Fernet"),
    ("DASHTAM_SECRET_KEY", ",", "Fernet"),
    ("DASHTAM_STATE_URL", f"mysql://admin:{STATE_PASSWORD}@db/x", "sqlite:///"),
    ("DASHTAM_STATE_URL", f"postgresql://admin:{STATE_PASSWORD}@db:port/x", "numeric port"),
    ("DASHTAM_STATE_URL", f"postgresql://admin:{STATE_PASSWORD}@/x", "host"),
    ("DASHTAM_STATE_URL", "sqlite://", "sqlite:///"),
]

#: Variables whose value is a secret (or holds one): never echoed.
SECRET_VALUES = (STATE_PASSWORD, SECRET_KEY_VALUE)


def clean_environment(data_dir: Path) -> dict[str, str]:
    """The parent's environment without any of the pipeline's settings (so only the one
    under attack is bad), pointing at an empty data dir."""
    prefixes = ("DASHTAM_", "DAGSTER_HOME", "CHASE_", *(f"{p}_" for p in PREFIXES))
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["DASHTAM_DATA_DIR"] = str(data_dir)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(DASHTAM)] if DASHTAM.exists() else [sys.executable, "-m",
                                                       "dashtam_pipeline.cli"]
    return subprocess.run(
        [*command, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_one_sentence(
    result: subprocess.CompletedProcess[str], variable: str, words: str
) -> str:
    """Exit 2, one non-empty stderr line naming ``variable`` with ``words``; no dump."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert variable in line, line
    assert words.lower() in line.lower(), line
    for leak in ("Traceback", "pydantic", "validation error", "For further information",
                 "input_value", *SECRET_VALUES):
        assert leak not in result.stderr, (leak, result.stderr)
    return line


@pytest.mark.parametrize(
    ("variable", "value", "words"), CASES,
    ids=[f"{v}={value[:20]!r}" for v, value, _ in CASES],
)
def test_bad_setting_is_one_sentence_and_exit_2(
    variable: str, value: str, words: str, tmp_path: Path
) -> None:
    env = clean_environment(tmp_path / "data") | {variable: value}
    result = run_cli(["providers", "--json"], env, tmp_path)
    assert_one_sentence(result, variable, words)
    assert result.stdout == ""  # no half a JSON document


@pytest.mark.parametrize(
    "args",
    [
        ["materialize", "--select", "key:macro/fred_series"],
        ["demo", "--select", "key:macro/fred_series"],
        ["dlq", "list"],
        ["dlq", "replay"],
        ["connections", "--json"],
        ["connect", "schwab", "--code", "abc"],
        ["query", "select 1"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_every_command_refuses_a_bad_setting_the_same_way(args: list[str], tmp_path: Path) -> None:
    env = clean_environment(tmp_path / "data") | {"FMP_TIMEOUT_SECONDS": "-1"}
    line = assert_one_sentence(run_cli(args, env, tmp_path), "FMP_TIMEOUT_SECONDS",
                               "greater than 0")
    assert line.endswith("got -1"), line
    assert not (tmp_path / "data" / "dagster_home").exists()  # nothing ran


def test_a_bad_value_in_dotenv_is_named_like_one_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POLYGON_CIRCUIT_BREAKER_THRESHOLD=0\n")
    result = run_cli(["providers"], clean_environment(tmp_path / "data"), tmp_path)
    assert_one_sentence(result, "POLYGON_CIRCUIT_BREAKER_THRESHOLD", "at least 1")


def test_good_values_still_load(tmp_path: Path) -> None:
    """The other side of the fence: edge values that are fine are not refused."""
    env = clean_environment(tmp_path / "data") | {
        "FMP_TIMEOUT_SECONDS": "0.25",
        "SCHWAB_CIRCUIT_BREAKER_THRESHOLD": "1",
        "FRED_CIRCUIT_BREAKER_TIMEOUT": "0.5",
        "FMP_BASE_URL": "http://127.0.0.1:8765/fmp/stable",
        "DASHTAM_SYMBOLS": " aapl , brk-b,BRK/B, BF.B ",
        "DASHTAM_FRED_SERIES": "gdp,T10Y2Y,BAMLH0A0HYM2",
        "DASHTAM_RIGHTS_PROFILE": " PRO ",
        "FMP_REQUESTS_PER_DAY": "",
        "DASHTAM_SANDBOX": "1",
    }
    result = run_cli(["providers", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_bad_setting_at_code_location_load_is_the_same_sentence(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dagster dev``/the daemon load ``definitions.py``, which reads settings: a bad
    value stops the load with the same sentence (Dagster shows the error's message)."""
    from dashtam_pipeline.definitions import load_definitions

    monkeypatch.setenv("NEWS_TIMEOUT_SECONDS", "nan")
    with pytest.raises(ConfigurationError) as caught:
        load_definitions()
    message = str(caught.value)
    assert message == "NEWS_TIMEOUT_SECONDS must be a number of seconds greater than 0, got nan"


def test_several_bad_values_are_all_named_on_one_line(tmp_path: Path) -> None:
    env = clean_environment(tmp_path / "data") | {
        "FMP_TIMEOUT_SECONDS": "0", "DASHTAM_SYMBOLS": ",,,",
    }
    result = run_cli(["providers"], env, tmp_path)
    line = assert_one_sentence(result, "FMP_TIMEOUT_SECONDS", "greater than 0")
    assert "DASHTAM_SYMBOLS" in line
