"""Attacks on ``dashtam query``: SQL that tries to reach past the warehouse and its lake.

One small sandbox materialization (a crafted Chase export and the FRED GDP series) builds a
real data dir: ``.secret_key``, ``state.db``, ``dagster_home`` beside the lake and the
warehouse, plus planted canaries outside the lake (a CSV, a JSON file, a Parquet file) and a
canary in the environment. Every attack goes through the real command line (``cli.main``,
in-process for speed; a few through a subprocess exactly as a user runs it) and must be
refused with one sentence on stderr and exit 1 — never a traceback, and never a byte of a
secret on stdout or stderr. Legitimate analyst SQL keeps working beside them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dashtam_pipeline.cli import main
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.lake import TABLE_LAYOUTS
from dashtam_pipeline.storage.query import refusal
from dashtam_pipeline.storage.warehouse import Warehouse, WarehouseError
from dashtam_pipeline_tests.test_pipeline_sandbox import materialize_all

pytestmark = pytest.mark.integration

HYPERLINK = '=HYPERLINK("http://evil.example/x","click")'
#: A Chase export whose descriptions are spreadsheet formulas (what a hostile merchant name
#: or a tampered file would carry into the warehouse).
CHASE_EXPORT = (
    "Details,Posting Date,Description,Amount,Type,Balance,Check or Slip #\n"
    'DEBIT,01/04/2024,"=HYPERLINK(""http://evil.example/x"",""click"")",-12.50,DEBIT_CARD,'
    "494.68,,\n"
    "CREDIT,01/03/2024,\"@SUM(1+1)*cmd|' /C calc'!A0\",100.00,MISC_CREDIT,507.18,,\n"
)


@dataclass(frozen=True)
class Target:
    """The built data dir, and what must never come out of a query."""

    data: Path
    lake: Path
    env: dict[str, str]
    secrets: tuple[str, ...]

    def sql(self, template: str) -> str:
        return template.format(data=self.data, lake=self.lake)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One sandbox materialization for the whole module (attacks do not change it: that
    they cannot is part of what is checked)."""
    data = tmp_path_factory.mktemp("attack") / "data"
    inbox = data / "inbox" / "chase"
    canary = f"canary-{uuid.uuid4().hex}"
    env_canary = f"envcanary-{uuid.uuid4().hex}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DAGSTER_HOME", "DASHTAM_STATE_URL", "DASHTAM_SECRET_KEY", "CHASE_IMPORT_DIR",
                     "DASHTAM_NEWS_QUERIES"):
            mp.delenv(name, raising=False)
        mp.setenv("DASHTAM_DATA_DIR", str(data))
        mp.setenv("DASHTAM_SANDBOX", "true")
        mp.setenv("DASHTAM_SYMBOLS", "AAPL")
        mp.setenv("DASHTAM_FRED_SERIES", "GDP")
        mp.setenv("DASHTAM_ATTACK_CANARY", env_canary)
        inbox.mkdir(parents=True)
        (inbox / "Chase1234_Activity_20240105.CSV").write_text(CHASE_EXPORT)
        report = materialize_all("key:brokerage/chase_file_transactions or group:macro")
        assert report.ok, {k: a.detail for k, a in report.assets.items()}

        secret_key = (data / ".secret_key").read_text().strip()
        assert secret_key and (data / "state.db").exists() and (data / "dagster_home").is_dir()
        (data / "notes.csv").write_text(f"name,value\nsecret,{canary}\n")
        (data / "notes.json").write_text(json.dumps([{"secret": canary}]))
        duckdb.sql(f"COPY (SELECT '{canary}' AS secret) TO '{data / 'outside.parquet'}'")
        yield Target(
            data=data.resolve(),
            lake=(data / "lake").resolve(),
            env=dict(os.environ),
            secrets=(secret_key, canary, env_canary, "SQLite format 3", "root:x:0:0"),
        )


def query(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``dashtam query ARGS`` through the CLI's own entry point."""
    code = main(["query", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(target: Target, code: int, out: str, err: str) -> None:
    assert code == 1, (out, err)
    assert "Traceback" not in err
    assert err.startswith("dashtam query: ") and err.count("\n") == 1, err
    for secret in target.secrets:
        assert secret not in out and secret not in err


# --- files outside the lake ----------------------------------------------------------
FILE_READS = [
    "select * from read_text('/etc/passwd')",
    "SELECT * FROM READ_TEXT('/etc/passwd')",
    "sElEcT content FrOm ReAd_TeXt('{data}/.secret_key')",
    "select upper((select content from read_text('{data}/.secret_key')))",
    "select * from (select * from (select content from read_text('{data}/.secret_key')))",
    "with s as (select content from read_blob('/proc/self/environ')) select * from s",
    "with recursive k as (select content from read_text('{data}/.secret_key')) "
    "select * from market.quotes, k",
    "select * from brokerage.transactions where description in "
    "(select content from read_text('{data}/.secret_key'))",
    "select * from read_blob('{data}/state.db')",
    "select * from read_blob('{data}/dagster_home/dagster.yaml')",
    "select * from read_blob('{data}/dagster_home/**/*.db')",
    "select * from read_text(['{lake}/../notes.csv', '{data}/.secret_key'])",
    "select * from read_text('{lake}/../.secret_key')",
    "select * from read_text('{lake}/macro/../../.secret_key')",
    "select * from read_text('file://{data}/.secret_key')",
    "select * from read_text('.secret_key')",
    "select * from read_text('~/.bashrc')",
    "select * from '{data}/notes.csv'",
    "select * from '/etc/passwd'",
    "SELECT * FROM '/etc/hostname'",
    "select * from glob('/root/*')",
    "select * from glob('{data}/*')",
    "select * from glob('{lake}/../*')",
    "select * from read_csv_auto('{data}/notes.csv')",
    "select * from read_csv('/etc/passwd', sep=':', header=false)",
    "select * from read_json('{data}/notes.json')",
    "select * from read_json_auto('{data}/notes.json')",
    "select * from read_parquet('{data}/outside.parquet')",
    "select * from read_parquet('{lake}/../outside.parquet')",
    "select * from parquet_metadata('{data}/outside.parquet')",
    "select * from parquet_schema('{data}/outside.parquet')",
    "select * from sniff_csv('{data}/notes.csv')",
    "select * from query('select * from read_text(''{data}/.secret_key'')')",
    "CALL read_text('{data}/.secret_key')",
    "select /* just a select */ * from read_text /* innocent */ ('{data}/.secret_key') -- x",
    "select 1; select * from read_text('{data}/.secret_key')",
    "EXPLAIN ANALYZE select * from read_text('{data}/.secret_key')",
    "DESCRIBE select * from read_csv_auto('{data}/notes.csv')",
    "SUMMARIZE select * from read_csv_auto('{data}/notes.csv')",
    "PRAGMA import_database('{data}')",
    "select * from read_csv('http://127.0.0.1:9/x.csv')",
    "select * from read_parquet('https://127.0.0.1:9/x.parquet')",
    "select * from read_text('s3://bucket/key')",
]


@pytest.mark.parametrize("template", FILE_READS)
def test_files_outside_the_lake_are_out_of_reach(
    target: Target, capsys: pytest.CaptureFixture[str], template: str
) -> None:
    assert_refused(target, *query(capsys, target.sql(template)))


def test_the_refusal_names_what_was_out_of_reach(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = query(capsys, "select * from read_text('/etc/passwd')")
    assert err == (
        'dashtam query: only the warehouse and its lake can be read, so "/etc/passwd" is out '
        "of reach (no other files, no network)\n"
    )


# --- settings, extensions, other databases, writes --------------------------------------
NOT_READS = [
    "SET log_query_path='{data}/queries.log'",
    "set profiling_output='{data}/profile.json'",
    "PRAGMA enable_profiling='json'",
    "PRAGMA enable_profiling",
    "PRAGMA profiling_output='{data}/profile.json'",
    "SET enable_external_access=true",
    "RESET enable_external_access",
    "SET allowed_directories=['/']",
    "RESET allowed_directories",
    "SET lock_configuration=false",
    "SET custom_extension_repository='http://127.0.0.1:9'",
    "SET autoinstall_known_extensions=true",
    "SET temp_directory='{data}'",
    "SET threads=1; select * from read_text('{data}/.secret_key')",
    "CALL enable_logging(storage='file', storage_path='{data}/logs')",
    "INSTALL httpfs",
    "install HTTPFS from 'http://127.0.0.1:9'",
    "FORCE INSTALL sqlite",
    "LOAD httpfs",
    "load '{data}/evil.duckdb_extension'",
    "/* SELECT */ INSTALL httpfs",
    "UPDATE EXTENSIONS",
    "ATTACH '{data}/state.db' AS s (TYPE sqlite)",
    "attach '{data}/other.duckdb'",
    "ATTACH ':memory:' AS m",
    "DETACH warehouse",
    "select 1; ATTACH '{data}/state.db' AS s",
    "COPY (select 1 as a) TO '{lake}/brokerage/transactions/evil.parquet'",
    "copy (select 1) to '{data}/out.csv'",
    "COPY brokerage.transactions FROM '{data}/notes.csv'",
    "EXPORT DATABASE '{data}/export'",
    "IMPORT DATABASE '{data}'",
    "CREATE SECRET s (TYPE http, BEARER_TOKEN 'x')",
    "CREATE TEMP TABLE t AS SELECT * FROM read_text('{data}/.secret_key')",
    "CREATE MACRO m() AS TABLE SELECT * FROM read_text('{data}/.secret_key')",
    "select 1; delete from ops._views",
    "PREPARE p AS select * from read_text('{data}/.secret_key')",
]


@pytest.mark.parametrize("template", NOT_READS)
def test_settings_extensions_attach_and_writes_are_refused(
    target: Target, capsys: pytest.CaptureFixture[str], template: str
) -> None:
    assert_refused(target, *query(capsys, target.sql(template)))


def test_refused_statements_left_no_file_behind(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever ran before this test (the ``NOT_READS`` attacks in the same module), and the
    worst of them again here: no log, profile, export or planted Parquet file exists."""
    for template in NOT_READS[:5] + NOT_READS[-10:]:
        query(capsys, target.sql(template))
    for name in ("queries.log", "profile.json", "out.csv", "export", "logs", "other.duckdb"):
        assert not (target.data / name).exists(), name
    assert not list(target.lake.rglob("evil*"))
    code, out, _ = query(capsys, "select count(*) from brokerage.transactions", "--format",
                         "json")
    assert code == 0 and json.loads(out) == [{"count_star()": 2}]


def test_a_locked_setting_is_a_sentence(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = query(capsys, "SET log_query_path='/tmp/q.log'")
    assert code == 1
    assert err == (
        'dashtam query: settings are fixed for a query, so "log_query_path" cannot be changed '
        "(SET, RESET and the PRAGMAs that change a setting are refused)\n"
    )


def test_statement_kinds_are_read_by_duckdbs_parser() -> None:
    """The friendly check sees what DuckDB would run, however it is spelled."""
    assert refusal("/* COPY */ select 'INSTALL httpfs' -- ATTACH") is None
    assert refusal("sElEcT 1;\n\n  InStAlL httpfs") is not None
    assert refusal("select 1; copy (select 1) to 'x.csv'") is not None


# --- through a real process, as a user runs it ------------------------------------------
def dashtam(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashtam_pipeline.cli", *args],
        env=target.env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "template",
    [
        "select content from read_blob('/proc/self/environ')",
        "select * from read_text('{data}/.secret_key')",
        "SELECT * FROM read_csv_auto('{data}/notes.csv')",
        "INSTALL httpfs; LOAD httpfs",
        "SET log_query_path='{data}/queries.log'",
    ],
)
def test_the_command_refuses_as_a_user_sees_it(target: Target, template: str) -> None:
    result = dashtam(target, "query", target.sql(template), "--format", "csv")
    assert_refused(target, result.returncode, result.stdout, result.stderr)


# --- what analysts do keeps working ----------------------------------------------------
def test_every_table_view_and_the_vintage_macro_answer(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    counts = Warehouse(settings.warehouse_path, settings.lake_dir).row_counts()
    assert {*TABLE_LAYOUTS, "macro.fred_latest"} <= set(counts)
    assert counts["brokerage.transactions"] == 2 and counts["macro.fred_latest"] > 0
    for table in counts:
        code, out, err = query(capsys, f"select count(*) as n from {table}", "--format", "json")
        assert code == 0, err
        assert json.loads(out) == [{"n": counts[table]}]
    code, out, err = query(
        capsys,
        "select count(*) as n from macro.fred_as_of(DATE '9999-12-30') a "
        "join macro.fred_latest l using (series_id, date) where a.value is not distinct from "
        "l.value",
        "--format", "json",
    )
    assert code == 0, err
    assert json.loads(out) == [{"n": counts["macro.fred_latest"]}]


def test_ctes_windows_joins_and_catalog_queries_work(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = query(
        capsys,
        "with gdp as (select date, value from macro.fred_latest where series_id = 'GDP') "
        "select date, value, value - lag(value) over (order by date) as change, "
        "row_number() over (order by date desc) as recent "
        "from gdp join macro.fred_series s on s.series_id = 'GDP' "
        "qualify recent <= 3 order by date desc",
        "--format", "json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["recent"] for r in rows] == [1, 2, 3]
    for sql in (
        "DESCRIBE market.quotes",
        "EXPLAIN select * from macro.fred_latest",
        "CALL pragma_version()",
        "PRAGMA table_info('brokerage.transactions')",
        "SHOW ALL TABLES",
        "SUMMARIZE brokerage.transactions",
        "select * from duckdb_views() where schema_name = 'macro'",
        "SET VARIABLE cutoff = DATE '2020-01-01'",
        f"select count(*) from read_parquet('{target.lake}/macro/fred_observations/*.parquet')",
        f"select count(*) from glob('{target.lake}/**/*.parquet')",
    ):
        code, _, err = query(capsys, sql, "--format", "csv")
        assert code == 0, (sql, err)


def test_the_command_works_for_a_user_in_each_format(target: Target) -> None:
    table = dashtam(target, "query", "select series_id, count(*) n from macro.fred_latest "
                    "group by all")
    assert table.returncode == 0, table.stderr
    assert "GDP" in table.stdout and "(1 row)" in table.stdout
    as_json = dashtam(target, "query", "select amount from brokerage.transactions "
                      "order by amount", "--format", "json")
    assert json.loads(as_json.stdout) == [{"amount": -12.5}, {"amount": 100.0}]


# --- CSV that a spreadsheet opens ---------------------------------------------------------
def test_formula_cells_are_neutralised_in_csv_but_numbers_stay_numbers(target: Target) -> None:
    result = dashtam(
        target, "query",
        "select description, amount from brokerage.transactions order by amount",
        "--format", "csv",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [
        ["description", "amount"],
        ["'" + HYPERLINK, "-12.5"],
        ["'@SUM(1+1)*cmd|' /C calc'!A0", "100.0"],
    ]
    for line in result.stdout.splitlines():
        assert not line.startswith(("=", "+", "-", "@", '"=', '"@'))


def test_every_formula_lead_is_neutralised_in_text_only(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = query(
        capsys,
        "select '=1+1' a, '+1' b, '-12.5' c, '@x' d, e'\\tx' e, e'\\rx' f, 'plain' g, "
        "-12.5::DOUBLE h, -3 i, '=x' as \"=header\"",
        "--format", "csv",
    )
    assert code == 0, err
    header, row = list(csv.reader(io.StringIO(out)))
    assert header == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "'=header"]
    assert row == ["'=1+1", "'+1", "'-12.5", "'@x", "'\tx", "'\rx", "plain", "-12.5", "-3", "'=x"]
    code, out, _ = query(capsys, "select '=1+1' a", "--format", "json")
    assert json.loads(out) == [{"a": "=1+1"}]  # JSON is data, not a spreadsheet: untouched


def test_the_table_shows_control_characters_as_escapes(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(capsys, "select e'\\x1b]0;pwned\\x07\\x1b[2J' as title")
    assert code == 0
    assert "\x1b" not in out and "\\x1b]0;pwned\\x07\\x1b[2J" in out


def test_the_api_refuses_too(target: Target) -> None:
    """``Warehouse.query`` (what marts, checks and the demo summary use) is the same
    isolated path as the command."""
    settings = load_settings()
    warehouse = Warehouse(settings.warehouse_path, settings.lake_dir)
    with pytest.raises(WarehouseError, match="out of reach"):
        warehouse.query(f"select * from read_text('{target.data}/.secret_key')")
    with pytest.raises(WarehouseError, match="out of reach"):
        warehouse.query_df("select * from read_text(?)", [f"{target.data}/.secret_key"])
