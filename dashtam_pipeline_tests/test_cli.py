"""End to end: the ``dashtam`` command as a user runs it (a real subprocess each time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def dashtam(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashtam_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DASHTAM_", "DAGSTER_", "FMP_", "POLYGON_", "FRED_", "NEWS_",
                                  "ALPACA_", "SCHWAB_", "CHASE_"))}
    clean["DASHTAM_DATA_DIR"] = str(tmp_path / "data")
    return clean


def query_row(sql: str, env: dict[str, str]) -> dict[str, object]:
    """``dashtam query SQL --format json`` of a one-row query: that row."""
    result = dashtam("query", sql, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    return row


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_providers_json_reports_settings_presence(env: dict[str, str]) -> None:
    result = dashtam("providers", "--json", env={**env, "FMP_API_KEY": "fmp-secret-value-1"})
    assert result.returncode == 0, result.stderr
    entries = {e["slug"]: e for e in json.loads(result.stdout)}
    assert list(entries) == ["fmp", "polygon", "fred", "newsapi", "schwab", "alpaca", "chase_file"]
    for entry in entries.values():
        assert set(entry) >= {"slug", "display_name", "category", "auth_type", "capabilities",
                              "required_settings", "settings_present", "circuit_state"}
    assert entries["fmp"]["settings_present"] is True
    assert entries["polygon"]["settings_present"] is False
    assert entries["schwab"]["auth_type"] == "oauth"
    assert entries["schwab"]["required_settings"] == ["SCHWAB_APP_KEY", "SCHWAB_APP_SECRET"]
    assert entries["chase_file"]["settings_present"] is True
    assert "fmp-secret-value-1" not in result.stdout + result.stderr

    human = dashtam("providers", env=env)
    assert human.returncode == 0 and "missing: FMP_API_KEY" in human.stdout


def test_query_before_any_data_says_what_to_do(env: dict[str, str]) -> None:
    result = dashtam("query", "select 1", env=env)
    assert result.returncode != 0
    no_traceback(result)
    assert "make demo" in result.stderr or "dashtam materialize" in result.stderr


def test_unknown_asset_is_named(env: dict[str, str]) -> None:
    result = dashtam("materialize", "--select", "key:market/nope", env=env)
    assert result.returncode != 0
    no_traceback(result)
    assert "market/nope" in result.stderr and "market/quotes" in result.stderr


def test_bad_setting_is_a_sentence(env: dict[str, str]) -> None:
    result = dashtam("providers", env={**env, "DASHTAM_RIGHTS_PROFILE": "platinum"})
    assert result.returncode != 0
    no_traceback(result)
    assert "DASHTAM_RIGHTS_PROFILE" in result.stderr


def test_demo_then_query_then_demo_again(env: dict[str, str]) -> None:
    """The demo fills every table through the multiprocess executor; a second run leaves
    every count unchanged; query reads it (and refuses to write)."""
    first = dashtam("demo", env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "rows per table" in first.stdout
    counts = query_row(
        "select (select count(*) from market.quotes) q, (select count(*) from macro.fred_latest) f,"
        " (select count(*) from brokerage.transactions) t,"
        " (select count(*) from marts.daily_portfolio_value) v", env)
    assert all(value > 0 for value in counts.values()), counts

    # three users' portfolios: the operator and user 2 on Schwab, user 3 with their own
    # Alpaca keys and Chase folder (README "Many users in the sandbox")
    users = query_row(
        "select (select count(distinct user_id) from brokerage.accounts) a,"
        " (select count(distinct user_id) from brokerage.positions) p,"
        " (select count(distinct user_id) from brokerage.transactions) t,"
        " (select count(distinct user_id) from marts.holdings) h,"
        " (select count(distinct user_id) from marts.daily_portfolio_value) v,"
        " (select count(distinct user_id) from marts.net_worth) n,"
        " (select count(distinct user_id) from brokerage.accounts where provider like '%schwab')"
        " s, (select count(distinct account_id) from brokerage.accounts) accounts,"
        " (select count(distinct user_id) from brokerage.transactions"
        "  where provider like '%chase_file') c", env)
    assert users == {"a": 3, "p": 3, "t": 3, "h": 3, "v": 3, "n": 3, "s": 2, "accounts": 4,
                     "c": 2}, users
    assert first.stdout.count("demo: user ") == 3

    csv_out = dashtam("query", "select symbol, provider from market.quotes order by symbol",
                      "--format", "csv", env=env)
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0] == "symbol,provider" and "BRK.B,sandbox:fmp" in lines

    refused = dashtam("query", "delete from market.quotes", env=env)
    assert refused.returncode != 0 and "read-only" in refused.stderr
    no_traceback(refused)
    bad = dashtam("query", "selec * from market.quotes", env=env)
    assert bad.returncode != 0 and "syntax" in bad.stderr.lower()
    no_traceback(bad)

    second = dashtam("demo", env=env, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert first.stdout.split("rows per table")[1] == second.stdout.split("rows per table")[1]

    runs = Path(env["DASHTAM_DATA_DIR"]) / "dagster_home" / "history"
    assert runs.is_dir(), "runs were not recorded in the instance the UI reads"


def test_workspace_definitions_validate(env: dict[str, str]) -> None:
    """What `make ui` loads: the workspace's code location validates."""
    root = Path(__file__).resolve().parents[1]
    home = Path(env["DASHTAM_DATA_DIR"]) / "dh"
    home.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root, env={**env, "DAGSTER_HOME": str(home)},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_fred_backfill_of_a_date_range_shows_progress_in_partitions(env: dict[str, str]) -> None:
    """30 series over one year of observation dates: two runs (25 series per run), a
    progress bar counted in series, and only that year's observations stored."""
    series = [f"GDP_{i}" for i in range(1, 31)]
    env = {**env, "DASHTAM_SANDBOX": "true", "DASHTAM_FRED_SERIES": ",".join(series)}
    result = dashtam("materialize", "--select", "group:macro",
                     "--from", "2020-01-01", "--to", "2020-12-31", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bars = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split("] ")[1].split(" partitions")[0].strip() for line in bars] == [
        "0/30", "25/30", "30/30"]
    assert "run 1/2: macro/fred_observations, macro/fred_series [GDP_1...GDP_25] " \
        "observations 2020-01-01..2020-12-31" in bars[0]
    stored = dashtam(
        "query", "select count(distinct series_id), min(date), max(date) "
        "from macro.fred_observations", "--format", "json", env=env,
    )
    (row,) = json.loads(stored.stdout)
    assert list(row.values()) == [30, "2020-01-01", "2020-10-01"]
