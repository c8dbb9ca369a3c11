"""What an analyst's SQL may reach: the warehouse and its lake, nothing else.

``dashtam query`` runs SQL typed by a person (or pasted from somewhere) with the pipeline
user's rights, beside ``.secret_key``, ``state.db`` and the Dagster instance. DuckDB can read
any file (``read_text``, ``read_blob``, ``glob``, ``read_csv``, replacement scans), write
files (``COPY ... TO``, ``EXPORT DATABASE``), reach the network (``httpfs``), install and load
extensions and log or profile to a file of the caller's choosing. So the query connection is
closed in by DuckDB's own controls, not by a list of forbidden words, which a comment, a
subquery or a nested call would slip past:

* ``allowed_directories`` = the lake directory (and the warehouse file is DuckDB's own), set
  *before* ``enable_external_access = false``, which makes those the only paths the engine
  opens — files, globs, ``ATTACH``, ``INSTALL``, network file systems all go through it;
* ``autoinstall_known_extensions`` / ``autoload_known_extensions`` /
  ``allow_community_extensions`` / ``allow_unsigned_extensions`` off at connect time;
* ``lock_configuration = true`` last, so no ``SET``/``PRAGMA``/``RESET`` can undo any of it
  (``log_query_path``, ``profiling_output``, ``custom_extension_repository``, ...).

The statement-kind check (``refusal``) runs first only to answer with a sentence that says
what to do; with one exception it is not what keeps the files safe. The exception:
``allowed_directories`` grants writing as well as reading, so a ``COPY ... TO`` into the lake
would be let through by DuckDB (the read-only mode protects the database, not files). The
kind check refuses every ``COPY``/``EXPORT`` statement, and DuckDB accepts a file write in
no other statement kind (``query()`` takes only a single SELECT; macros cannot hold a COPY).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import duckdb

#: Connect-time settings of a query connection: no extension is fetched or loaded behind a
#: query's back (``read_csv('https://...')`` would otherwise autoload ``httpfs``).
CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
}

#: Statement kinds an analyst may send. ``SET`` is passed on so that ``SET VARIABLE`` works;
#: a real setting change is refused by the locked configuration (see ``describe_error``).
RUNNABLE_KINDS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "SET", "VARIABLE_SET"})

READ_ONLY = (
    "the warehouse is read-only through dashtam query: {kind} statements are refused; "
    "the pipeline writes the data (dashtam materialize)"
)
#: Kinds refused with a sentence of their own (they are not writes to the warehouse).
_REFUSALS = {
    "LOAD": "DuckDB extensions are never installed or loaded for a query; the ones built "
    "in are all there is",
    "ATTACH": "only the warehouse can be queried, so ATTACH of another database is refused",
    "DETACH": "only the warehouse can be queried, so DETACH is refused",
    "EXPORT": "the warehouse is read-only through dashtam query: EXPORT statements are "
    "refused, it writes no files",
    "COPY": "the warehouse is read-only through dashtam query: COPY statements are refused, "
    "it writes no files; use --format csv or json and redirect the output instead",
}

#: Leading characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_CANNOT_ACCESS = re.compile(r'Cannot access (?:file|directory) "([^"]*)"')
#: A quoted path in FROM that DuckDB did not turn into a file scan (no known extension).
_NO_SUCH_PATH = re.compile(r"Table with name ([^ ]*[/~][^ ]*) does not exist")
_LOCKED_OPTION = re.compile(r'Cannot change configuration option "([^"]*)"')


class QueryIsolationError(Exception):
    """The connection could not be closed in; no analyst SQL may run on it."""


# --- what may be sent ------------------------------------------------------------------
def refusal(sql: str) -> str | None:
    """Why ``sql`` is refused before it reaches DuckDB (one sentence), or None.

    Statement kinds come from DuckDB's own parser, so case, comments and ``;``-separated
    scripts are seen exactly as DuckDB would run them. Raises ``duckdb.Error`` for SQL that
    does not parse (the caller reports DuckDB's message).
    """
    statements = duckdb.extract_statements(sql)
    if not statements:
        return "no SQL statement to run"
    for statement in statements:
        try:
            kind = statement.type.name
        except ValueError:  # a kind this DuckDB knows but its Python enum does not (2.0.1)
            return READ_ONLY.format(kind="UPDATE EXTENSIONS and other unlisted")
        if kind in _REFUSALS:
            return _REFUSALS[kind]
        if kind not in RUNNABLE_KINDS:
            return READ_ONLY.format(kind=kind)
    return None


# --- closing the connection in -----------------------------------------------------------
def _directory(path: Path) -> str:
    """A directory as ``allowed_directories`` wants it: with the trailing separator, so that
    ``/data/lake`` does not also allow ``/data/lake-old/``."""
    return str(path).rstrip("/") + "/"


def isolate(con: duckdb.DuckDBPyConnection, readable: Sequence[Path]) -> None:
    """Close ``con`` in: it may read files under ``readable`` (and its own database file),
    nothing else, and no setting can change afterwards.

    DuckDB shares one database instance between the connections of a process that open the
    same file with the same configuration, and these settings are global to that instance:
    a second connection finds them set and locked already. So the settings are applied when
    not locked yet, then the end state is *verified* either way; if it is not exactly the
    isolation wanted, ``QueryIsolationError`` is raised and the caller must not run SQL.
    """
    wanted = [_directory(Path(p)) for p in readable]
    if not _setting(con, "lock_configuration"):
        try:
            con.execute("SET TimeZone = 'UTC'")
            # order matters: DuckDB refuses to widen allowed_directories once access is off
            con.execute("SET allowed_directories = ?", [wanted])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.InvalidInputException as exc:
            if _LOCKED_OPTION.search(str(exc)) is None:
                raise
            # another connection of this instance locked it between our check and our SET
    _verify(con, wanted)


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> Any:
    row = con.execute("SELECT current_setting(?)", [name]).fetchone()
    return row[0] if row else None


def _verify(con: duckdb.DuckDBPyConnection, wanted: list[str]) -> None:
    """Fail closed unless external access is off, the configuration locked and every allowed
    directory one of ``wanted`` or DuckDB's own spill directory beside the database."""
    problems = []
    if _setting(con, "enable_external_access") is not False:
        problems.append("external access is still enabled")
    if _setting(con, "lock_configuration") is not True:
        problems.append("the configuration is not locked")
    temp = _setting(con, "temp_directory")
    spill = {_directory(Path(temp))} if temp else set()
    extra = set(_setting(con, "allowed_directories") or []) - set(wanted) - spill
    if extra:
        problems.append(f"unexpected readable directories {sorted(extra)}")
    for name in ("autoinstall_known_extensions", "autoload_known_extensions"):
        if _setting(con, name) is not False:
            problems.append(f"{name} is on")
    if problems:
        raise QueryIsolationError(
            "the query connection could not be restricted to the warehouse and its lake ("
            + "; ".join(problems)
            + "), so the query was not run"
        )


# --- what comes back -------------------------------------------------------------------
def describe_error(exc: duckdb.Error) -> str:
    """DuckDB's error as the sentence ``dashtam query`` prints.

    A refusal by the isolation (a file outside the lake, a locked setting, an extension)
    becomes one sentence saying what is out of reach; any other error keeps DuckDB's own
    message, which points at the mistake in the SQL.
    """
    text = str(exc)
    if isinstance(exc, duckdb.PermissionException):
        if "extension" in text.lower():
            return _REFUSALS["LOAD"]
        where = _CANNOT_ACCESS.search(text)
        return _out_of_reach(where[1] if where else None)
    if isinstance(exc, duckdb.CatalogException):
        path = _NO_SUCH_PATH.search(text)
        if path:
            return _out_of_reach(path[1])
    locked = _LOCKED_OPTION.search(text)
    if locked:
        return (
            f'settings are fixed for a query, so "{locked[1]}" cannot be changed (SET, RESET '
            "and the PRAGMAs that change a setting are refused)"
        )
    if "read-only mode" in text:
        return f"the warehouse is read-only through dashtam query: {text}"
    return text


def _out_of_reach(target: str | None) -> str:
    what = f'"{target}"' if target else "that file or address"
    return (
        f"only the warehouse and its lake can be read, so {what} is out of reach (no other "
        "files, no network)"
    )


def csv_cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet: a text cell that starts like a formula
    (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a leading ``'`` so Excel, Sheets
    and LibreOffice show it as text instead of running it (``=HYPERLINK(...)`` in a news
    title). Only text is touched: a DOUBLE of -12.5 arrives as a float and stays a number."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """The result as CSV (header first) with every text cell, header included, neutralised
    by ``csv_cell``."""
    writer = csv.writer(out)
    writer.writerow([csv_cell(c) for c in columns])
    writer.writerows([csv_cell(v) for v in row] for row in rows)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: Any) -> str:
    """A cell for the terminal table: control characters (an ANSI escape in a news title
    could recolour, retitle or rewrite the analyst's terminal) shown as ``\\x1b`` escapes."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
