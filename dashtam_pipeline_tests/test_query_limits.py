"""``dashtam query`` within limits: time, memory, result size, and output that stays what it
claims to be (valid JSON, a table no value can forge).

Each test runs the real command (``cli.main``, in-process) or ``Warehouse`` on a real DuckDB
warehouse over a small lake under ``tmp_path``: the contract views (empty) and one mart with
rows, built the way the pipeline builds them (``write_mart``, ``ensure_views``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from dashtam_pipeline import query_output
from dashtam_pipeline.cli import main
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.query_output import printable, unique_names, write_json
from dashtam_pipeline.storage.query import QueryLimits
from dashtam_pipeline.storage.warehouse import Warehouse, WarehouseError, write_mart
from dashtam_pipeline_tests.test_attack_query import query

LIMIT_VARIABLES = (
    "DASHTAM_QUERY_TIMEOUT_SECONDS", "DASHTAM_QUERY_MEMORY_LIMIT", "DASHTAM_QUERY_SPILL_LIMIT",
)
RUNAWAY = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t) SELECT count(*) FROM t"


@pytest.fixture
def warehouse(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """A warehouse in ``DASHTAM_DATA_DIR`` (where the command looks) with one mart of rows,
    and no ``DASHTAM_QUERY_*`` variable of the caller's environment leaking in."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(data_dir)  # no .env of the working tree
    warehouse = Warehouse(data_dir / "warehouse.duckdb", data_dir / "lake")
    write_mart(warehouse.lake, "prices", pa.table({"symbol": ["AAPL", "MSFT"],
                                                   "close": [190.5, float("nan")]}))
    assert warehouse.ensure_views() is True
    return warehouse


def one_sentence(err: str) -> str:
    """The error line of a failed command, checked to be exactly one line, no traceback."""
    assert err.startswith("dashtam query: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.removeprefix("dashtam query: ").rstrip("\n")


# --- 1. time ----------------------------------------------------------------------------------
def test_a_runaway_query_is_stopped_at_the_time_limit(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHTAM_QUERY_TIMEOUT_SECONDS", "1.5")
    started = time.monotonic()
    code, out, err = query(capsys, RUNAWAY)
    assert time.monotonic() - started < 30
    assert code == 1 and out == ""
    assert one_sentence(err) == (
        "the query was stopped after 1.5 s (DASHTAM_QUERY_TIMEOUT_SECONDS): narrow it (WHERE, "
        "LIMIT, aggregation), or raise DASHTAM_QUERY_TIMEOUT_SECONDS if it needs longer"
    )


def test_the_time_limit_stops_the_pipelines_own_queries_too(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Warehouse.query`` and ``query_df`` are the same bounded path, and the connection
    they leave behind is not poisoned: the next query answers."""
    monkeypatch.setenv("DASHTAM_QUERY_TIMEOUT_SECONDS", "0.5")
    with pytest.raises(WarehouseError, match=r"stopped after 0.5 s"):
        warehouse.query(RUNAWAY)
    with pytest.raises(WarehouseError, match=r"stopped after 0.5 s"):
        warehouse.query_df(RUNAWAY)
    monkeypatch.setenv("DASHTAM_QUERY_TIMEOUT_SECONDS", "60")  # a loaded CI machine
    assert warehouse.query("select count(*) from marts.prices") == (["count_star()"], [(2,)])
    assert warehouse.query_df("select 1 as x")["x"].tolist() == [1]
    assert set(warehouse.row_counts()) >= {"market.quotes", "marts.prices"}


def test_only_time_inside_duckdb_counts(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader slower than the limit (``| less``, a slow disk) does not cut the result off:
    here 5 batches each take the consumer 0.4 s, twice the 1 s limit in all."""
    monkeypatch.setenv("DASHTAM_QUERY_TIMEOUT_SECONDS", "1")

    def slow(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> int:
        count = 0
        for batch in batches:
            time.sleep(0.4)
            count += len(batch)
        return count

    assert warehouse.query_batches("select * from range(5000)", slow, batch_rows=1000) == 5000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "0", "greater than 0 and at most 86,400"),
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "-1", "got -1"),
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "nan", "got nan"),
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "86401", "got 86401"),
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "five", "got five"),
        ("DASHTAM_QUERY_TIMEOUT_SECONDS", "", "got ''"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "-1", "a share of RAM such as 25%"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "0%", "got 0%"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "150%", "at most 100%"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "100B", "at least 64MiB"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "1MB", "at least 64MiB"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "4", "got 4"),
        ("DASHTAM_QUERY_MEMORY_LIMIT", "4GB; SET x=1", "got '4GB; SET x=1'"),
        ("DASHTAM_QUERY_SPILL_LIMIT", "50%", "0GB: never spill to disk"),
        ("DASHTAM_QUERY_SPILL_LIMIT", "-1GB", "got -1GB"),
    ],
)
def test_a_bad_limit_is_one_sentence_naming_it(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str, expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = query(capsys, "select 1")
    assert code == 2 and out == ""
    sentence = one_sentence(err)
    assert sentence.startswith(f"{variable} must be ") and expected in sentence, sentence


def test_every_bad_limit_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as refused:
        QueryLimits.from_environment({"DASHTAM_QUERY_TIMEOUT_SECONDS": "0",
                                      "DASHTAM_QUERY_MEMORY_LIMIT": "lots"})
    assert "DASHTAM_QUERY_TIMEOUT_SECONDS" in str(refused.value)
    assert "DASHTAM_QUERY_MEMORY_LIMIT" in str(refused.value)


def test_limits_are_read_from_the_environment_and_dotenv(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert QueryLimits.from_environment({}) == QueryLimits(300.0, "25%", "10GiB")
    assert QueryLimits.from_environment({
        "DASHTAM_QUERY_TIMEOUT_SECONDS": " 0.25 ", "DASHTAM_QUERY_MEMORY_LIMIT": "1.5 GiB",
        "DASHTAM_QUERY_SPILL_LIMIT": "0GB",
    }) == QueryLimits(0.25, "1.5GiB", "0GB")
    Path(".env").write_text("DASHTAM_QUERY_MEMORY_LIMIT=10%\n")
    monkeypatch.setenv("DASHTAM_QUERY_SPILL_LIMIT", "2GB")
    assert QueryLimits.from_environment() == QueryLimits(300.0, "10%", "2GB")


# --- 2. memory --------------------------------------------------------------------------------
def test_the_memory_and_spill_limits_hold_on_the_connection(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "select current_setting('memory_limit'), current_setting('max_temp_directory_size')"
    default_share = duckdb.connect(config={"memory_limit": "25%"})
    try:
        share = default_share.execute("select current_setting('memory_limit')").fetchone()
    finally:
        default_share.close()
    assert share is not None
    assert warehouse.query(sql)[1] == [(share[0], "10.0 GiB")]
    monkeypatch.setenv("DASHTAM_QUERY_MEMORY_LIMIT", "256MiB")
    monkeypatch.setenv("DASHTAM_QUERY_SPILL_LIMIT", "1GiB")
    assert warehouse.query(sql)[1] == [("256.0 MiB", "1.0 GiB")]


@pytest.mark.parametrize("setting", ["memory_limit", "max_memory", "max_temp_directory_size"])
def test_setting_a_limit_in_sql_is_refused_naming_the_variable(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    code, _, err = query(capsys, f"SET {setting} = '100GB'")
    assert code == 1
    variable = ("DASHTAM_QUERY_SPILL_LIMIT" if setting == "max_temp_directory_size"
                else "DASHTAM_QUERY_MEMORY_LIMIT")
    assert one_sentence(err).endswith(f"; {variable} sets it for dashtam query")


def test_out_of_memory_is_one_sentence_naming_the_variable(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHTAM_QUERY_MEMORY_LIMIT", "64MiB")
    code, out, err = query(capsys, "select string_agg(range::varchar) from range(30000000)")
    assert code == 1 and out == ""
    sentence = one_sentence(err)
    assert sentence.startswith(
        "the query needed more memory than DASHTAM_QUERY_MEMORY_LIMIT allows (64MiB; ")
    assert "SET memory_limit" not in sentence and "raise DASHTAM_QUERY_MEMORY_LIMIT" in sentence


def test_a_query_larger_than_memory_spills_beside_the_warehouse_only(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
) -> None:
    """A sort bigger than the memory limit spills to DuckDB's own directory beside the
    warehouse (the isolation's one readable directory besides the lake) and succeeds; with
    spilling off it fails with a sentence naming the variable."""
    big_sort = "select * from range(12000000) order by hash(range) limit 3 offset 5000000"
    before = {p for p in data_dir.parent.rglob("*") if "warehouse.duckdb.tmp" not in str(p)}
    monkeypatch.setenv("DASHTAM_QUERY_MEMORY_LIMIT", "64MiB")
    code, out, err = query(capsys, big_sort, "--format", "csv")
    assert code == 0, err
    assert len(out.splitlines()) == 4
    after = {p for p in data_dir.parent.rglob("*") if "warehouse.duckdb.tmp" not in str(p)}
    assert after == before

    monkeypatch.setenv("DASHTAM_QUERY_SPILL_LIMIT", "0GB")
    code, out, err = query(capsys, "select * from range(12000000) order by hash(range)",
                           "--format", "json")
    assert code == 1 and out == ""
    sentence = one_sentence(err)
    assert sentence.startswith("the query needed more ")
    assert "DASHTAM_QUERY_SPILL_LIMIT" in sentence or "DASHTAM_QUERY_MEMORY_LIMIT" in sentence


# --- 3. results larger than memory ---------------------------------------------------------
def test_csv_streams_with_bounded_memory(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """400,000 rows of 300 characters: over 120 MB as Python values, fetched whole; the
    command's own allocations stay at a few batches."""
    sink = (tmp_path / "out.csv").open("w")
    monkeypatch.setattr(sys, "stdout", sink)
    tracemalloc.start()
    try:
        code = main(["query", "select range as n, repeat('x', 300) as s from range(400000)",
                     "--format", "csv"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sink.close()
    assert code == 0
    assert peak < 40 * 1024**2, f"{peak / 1024**2:.0f} MB"
    with (tmp_path / "out.csv").open() as written:
        rows = sum(1 for _ in written)
    assert rows == 400_001


def test_a_result_too_large_for_any_machine_still_starts_at_once(
    warehouse: Warehouse, data_dir: Path
) -> None:
    """``range(10^12)`` could never be fetched whole: the table shows its preview and the
    CSV its first rows (``| head``), both in seconds, through a real process."""
    env = {**os.environ}
    huge = "select * from range(1000000000000) as r(n)"
    table = subprocess.run([sys.executable, "-m", "dashtam_pipeline.cli", "query", huge],
                           env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[2] == "0" and lines[1001] == "999" and len(lines) == 1003
    assert lines[-1] == ("(the first 1,000 rows; the query returned more: add LIMIT or an "
                         "aggregation, or use --format csv or json for every row)")
    head = subprocess.run(
        f"{sys.executable} -m dashtam_pipeline.cli query '{huge}' --format csv | head -n 3",
        shell=True, env=env, capture_output=True, text=True, timeout=120,
    )
    assert head.stdout == "n\n0\n1\n" and head.stderr == ""  # text mode reads \r\n as \n


def test_a_short_table_shows_every_row_and_its_count(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(capsys, "select * from range(1000) as r(n)")
    assert code == 0 and out.splitlines()[-1] == "(1000 rows)"
    code, out, _ = query(capsys, "select symbol from marts.prices where false")
    assert code == 0 and out == "symbol\n------\n(0 rows)\n"


FAILS_HALF_WAY = ("select range as n, if(range < 2000000, range, error('boom at ' || range)) "
                  "as v from range(3000000)")


def test_json_is_all_or_nothing(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that fails after rows were fetched leaves no half document on stdout (the
    document is spooled, here past its in-memory part to a file)."""
    monkeypatch.setattr(query_output, "JSON_SPOOL_BYTES", 1024)
    code, out, err = query(capsys, FAILS_HALF_WAY, "--format", "json")
    assert code == 1 and out == ""
    assert one_sentence(err) == "Invalid Input Error: boom at 2000000"
    code, out, _ = query(capsys, "select * from range(3000) as r(n)", "--format", "json")
    assert code == 0 and json.loads(out) == [{"n": n} for n in range(3000)]


def test_csv_cut_short_says_it_is_incomplete(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = query(capsys, FAILS_HALF_WAY, "--format", "csv")
    assert code == 1 and out.startswith("n,v\r\n0,0\r\n")
    assert one_sentence(err) == (
        "Invalid Input Error: boom at 2000000; the CSV written before it is incomplete")


# --- 4. JSON is always valid ---------------------------------------------------------------
def _strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"invalid JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_null_in_json(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = query(
        capsys,
        "select 'nan'::double a, 'inf'::double b, '-inf'::float c, 1.5::double d, "
        "[1.0, 'nan'::double] e, {'x': 'inf'::double} f, map {DATE '2024-01-02': 'nan'::double} g",
        "--format", "json",
    )
    assert code == 0, err
    document = _strict_json(out)
    assert document == [{"a": None, "b": None, "c": None, "d": 1.5, "e": [1.0, None],
                         "f": {"x": None}, "g": {"2024-01-02": None}}]
    json.dumps(document, allow_nan=False)
    code, out, _ = query(capsys, "select symbol, close from marts.prices order by symbol",
                         "--format", "json")
    assert _strict_json(out) == [{"symbol": "AAPL", "close": 190.5},
                                 {"symbol": "MSFT", "close": None}]


def test_repeated_column_names_are_made_unique_in_json(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = query(capsys, "select 1 as a, 2 as a, 3 as a_1, 4 as a", "--format", "json")
    assert code == 0
    assert _strict_json(out) == [{"a": 1, "a_2": 2, "a_1": 3, "a_3": 4}]
    assert err == ("dashtam query: note: repeated column names were made unique in the JSON "
                   "output (a -> a_2, a -> a_3)\n")
    code, out, err = query(capsys, "select 1 as a, 2 as a", "--format", "csv")
    assert out == "a,a\r\n1,2\r\n" and err == ""  # CSV and the table keep names as they are


def test_unique_names() -> None:
    assert unique_names([]) == []
    assert unique_names(["a", "b"]) == ["a", "b"]
    assert unique_names(["x", "x", "x_1", "x", "y"]) == ["x", "x_2", "x_1", "x_3", "y"]


def test_write_json_of_nothing_is_an_empty_array() -> None:
    out = io.StringIO()
    write_json(["a"], iter([]), out)
    assert out.getvalue() == "[]\n"
    out = io.StringIO()
    write_json(["a"], iter([[(math.nan,)], [(1,)]]), out)
    assert _strict_json(out.getvalue()) == [{"a": None}, {"a": 1}]


# --- 5. a table no value can forge -----------------------------------------------------------
def test_control_and_format_characters_are_escaped_in_the_table(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(
        capsys,
        "select e'1\\n2  forged' as a, 'ab' || chr(8238) || 'cd' as b, "
        "'x' || chr(9) || 'y' || chr(8203) || chr(8232) || chr(13) as c, "
        "'ok' as \"new\nline\"",
    )
    assert code == 0
    cells = [("a", "1\\n2  forged"), ("b", "ab\\u202ecd"), ("c", "x\\ty\\u200b\\u2028\\r"),
             ("new\\nline", "ok")]
    widths = [max(len(name), len(value)) for name, value in cells]

    def line(texts: list[str]) -> str:
        return "  ".join([t.ljust(w) for t, w in zip(texts, widths, strict=True)][:-1]
                         + texts[-1:])

    assert out.splitlines() == [
        line([name for name, _ in cells]),
        line(["-" * w for w in widths]),
        line([value for _, value in cells]),
        "(1 row)",
    ]


def test_printable_escapes_exactly_hidden_characters() -> None:
    assert printable(None) == ""
    assert printable("naïve café 日本 ½ € ") == "naïve café 日本 ½ € "
    assert printable("a\x00b\x1b[2J\x7f\x9f") == "a\\x00b\\x1b[2J\\x7f\\x9f"
    assert printable("\u200e\u2066\ufeff\u00ad") == "\\u200e\\u2066\\ufeff\\xad"
    assert printable("\U000e0001") == "\\U000e0001"  # a Cf tag character beyond the BMP
    assert printable("a\u2029b") == "a\\u2029b"


def test_wide_characters_keep_the_columns_aligned(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(capsys, "select * from (values ('日本', 1), ('ab', 2)) t(name, n)")
    assert code == 0
    assert out.splitlines()[:4] == ["name  n", "----  -", "日本  1", "ab    2"]


def test_csv_keeps_real_newlines_and_still_neutralises_formulas(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = query(capsys, "select e'line 1\\nline 2' as a, '=1+1' as b, "
                         "'ab' || chr(8238) as c", "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["a", "b", "c"], ["line 1\nline 2", "'=1+1", "ab\u202e"]]
