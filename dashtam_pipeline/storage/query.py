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

Closing the connection in also bounds what one query may cost the machine (``QueryLimits``):
wall-clock time spent in DuckDB (``DASHTAM_QUERY_TIMEOUT_SECONDS``, enforced by a
``Watchdog`` that interrupts the connection), memory (``DASHTAM_QUERY_MEMORY_LIMIT``: DuckDB's
default is 80% of RAM) and the disk it may spill to (``DASHTAM_QUERY_SPILL_LIMIT``: DuckDB's
default is 90% of the free space, on the disk that holds the lake). The spill directory is
DuckDB's own, ``warehouse.duckdb.tmp`` beside the warehouse, which ``_verify`` already accepts
as the one readable directory besides the lake. Memory and spill limits are connect-time
settings, so they hold before any SQL runs and ``lock_configuration`` keeps them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import duckdb

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.provider_settings import read_environment
from dashtam_pipeline.setting_values import parse_number, shown

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
def describe_error(exc: duckdb.Error, limits: QueryLimits | None = None) -> str:
    """DuckDB's error as the sentence ``dashtam query`` prints.

    A refusal by the isolation (a file outside the lake, a locked setting, an extension)
    becomes one sentence saying what is out of reach, and running out of ``limits`` (the
    defaults when None) one naming the variable that raises them; any other error keeps
    DuckDB's own message, which points at the mistake in the SQL.
    """
    text = str(exc)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return _out_of_memory(text, limits or QueryLimits())
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
        variable = _SETTING_VARIABLES.get(locked[1].lower())
        return (
            f'settings are fixed for a query, so "{locked[1]}" cannot be changed (SET, RESET '
            "and the PRAGMAs that change a setting are refused)"
            + (f"; {variable} sets it for dashtam query" if variable else "")
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


# --- what one query may cost ----------------------------------------------------------------
TIMEOUT_VARIABLE = "DASHTAM_QUERY_TIMEOUT_SECONDS"
MEMORY_VARIABLE = "DASHTAM_QUERY_MEMORY_LIMIT"
SPILL_VARIABLE = "DASHTAM_QUERY_SPILL_LIMIT"
#: A day: longer is a batch job, not a query, and a typo (``3000000``) is caught.
MAX_TIMEOUT_SECONDS = 86_400.0
#: DuckDB's size units (``4GB``, ``1.5GiB``, ``512 MB``), in bytes.
_UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b)", re.IGNORECASE)
_PERCENT = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*%")
#: Less memory than this and DuckDB cannot even open the warehouse.
MIN_MEMORY_BYTES = 64 * 1024**2


def _size(value: str, name: str, *, least: int, percent: bool) -> str:
    """``value`` as DuckDB reads a memory or disk size (at least ``least`` bytes; a share of
    RAM too when ``percent``), or a ``ConfigurationError`` with one sentence naming ``name``.

    Checked here rather than left to DuckDB, which takes ``-1`` (no limit), ``0%`` or
    ``100B`` (no memory at all) without a word, and reports a typo as a failure to open the
    warehouse."""
    text = value.strip()
    share = _PERCENT.fullmatch(text) if percent else None
    if share and 0 < float(share["number"]) <= 100:
        return f"{share['number']}%"
    size = _SIZE.fullmatch(text)
    if size and float(size["number"]) * _UNITS[size["unit"].lower()] >= least:
        return f"{size['number']}{size['unit']}"
    what = "a size such as 4GB, 1.5GiB or 512MB"
    if least:
        what += f" of at least {least // 1024**2}MiB"
    else:
        what += " (0GB: never spill to disk)"
    if percent:
        what += ", or a share of RAM such as 25% (over 0%, at most 100%)"
    raise ConfigurationError(f"{name} must be {what}, got {shown(value)}")


def _seconds(value: str) -> float:
    """``DASHTAM_QUERY_TIMEOUT_SECONDS`` read, or a ``ConfigurationError`` in one sentence."""
    what = (f"a number of seconds greater than 0 and at most {MAX_TIMEOUT_SECONDS:,.0f} "
            "(a day)")
    try:
        seconds = float(parse_number(value, TIMEOUT_VARIABLE, what, integer=False))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ConfigurationError(f"{TIMEOUT_VARIABLE} must be {what}, got {shown(value)}")
    return seconds


@dataclass(frozen=True)
class QueryLimits:
    """What one query may spend: seconds inside DuckDB, memory, and disk to spill to.

    The defaults leave the machine to the pipeline and the analyst's other work (DuckDB's
    own defaults are no time limit, 80% of RAM and 90% of the free disk), and are generous
    for the warehouse's sizes: the pipeline's own checks and summaries take milliseconds.
    """

    timeout_seconds: float = 300.0
    memory_limit: str = "25%"
    #: ``0GB`` turns spilling off: a query that does not fit in memory then fails at once.
    spill_limit: str = "10GiB"

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> QueryLimits:
        """The limits set by ``DASHTAM_QUERY_*`` (the process environment over ``.env``, as
        every setting is read), else the defaults; a bad value raises
        ``ConfigurationError`` with one sentence naming its variable."""
        env = read_environment() if environment is None else {
            k.lower(): v for k, v in environment.items()}
        default = cls()
        readers: dict[str, Callable[[str], Any]] = {  # in the order of the fields
            TIMEOUT_VARIABLE: _seconds,
            MEMORY_VARIABLE: lambda v: _size(v, MEMORY_VARIABLE, least=MIN_MEMORY_BYTES,
                                             percent=True),
            SPILL_VARIABLE: lambda v: _size(v, SPILL_VARIABLE, least=0, percent=False),
        }
        values: list[Any] = []
        problems: list[str] = []
        for (variable, read), fallback in zip(readers.items(), astuple(default), strict=True):
            given = env.get(variable.lower())
            try:
                values.append(fallback if given is None else read(given))
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:  # every bad variable at once, as the other settings are reported
            raise ConfigurationError("; ".join(problems))
        return cls(*values)

    def connect_config(self) -> dict[str, str | bool | int | float | list[str]]:
        """``CONNECT_CONFIG`` with these limits: set when DuckDB opens the database, so they
        hold from the first statement; connections of one process share a database only
        when their configurations are equal, so a connection never inherits other limits."""
        return {
            **CONNECT_CONFIG,
            "memory_limit": self.memory_limit,
            "max_temp_directory_size": self.spill_limit,
        }


class QueryTimeout(Exception):
    """The query spent its whole time limit inside DuckDB and was interrupted."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the query was stopped after {seconds:g} s ({TIMEOUT_VARIABLE}): narrow it "
            f"(WHERE, LIMIT, aggregation), or raise {TIMEOUT_VARIABLE} if it needs longer"
        )


class Watchdog:
    """Interrupts ``con`` once the query has spent ``seconds`` inside DuckDB.

    Only time inside DuckDB counts (``running`` around each execute and fetch), not time
    spent waiting for the reader of the output: a result streamed into ``less`` is not cut
    off while the analyst reads it. ``connection.interrupt()`` is DuckDB's way of stopping a
    running statement from another thread; it works in every operator, recursive CTEs
    included, which no per-statement setting does.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self._con = con
        self.seconds = seconds
        self._left = seconds
        self._fired = False

    def _fire(self) -> None:
        self._fired = True
        self._con.interrupt()

    @contextmanager
    def running(self) -> Iterator[None]:
        """A DuckDB call under the remaining time; raises ``QueryTimeout`` when the time
        runs out (DuckDB's ``InterruptException`` caused by the watchdog becomes it; one
        from anywhere else, such as Ctrl-C, is left alone)."""
        if self._left <= 0:
            raise QueryTimeout(self.seconds)
        timer = threading.Timer(self._left, self._fire)
        timer.daemon = True
        started = time.monotonic()
        timer.start()
        try:
            yield
        except duckdb.InterruptException:
            if self._fired:
                raise QueryTimeout(self.seconds) from None
            raise
        finally:
            timer.cancel()
            timer.join()  # a firing already under way ends here, not on the next call
            self._left -= time.monotonic() - started


#: The DuckDB settings a ``DASHTAM_QUERY_*`` variable sets, for the refusal of a ``SET``.
_SETTING_VARIABLES = {"memory_limit": MEMORY_VARIABLE, "max_memory": MEMORY_VARIABLE,
                      "max_temp_directory_size": SPILL_VARIABLE}


def _out_of_memory(text: str, limits: QueryLimits) -> str:
    """DuckDB's out-of-memory error, whose advice (``SET memory_limit``) the locked
    configuration refuses, as a sentence naming the variables that do change the limits."""
    detail = text.splitlines()[0].removeprefix("Out of Memory Error: ")
    if "max_temp_directory_size" in text:
        return (
            f"the query needed more disk to spill to than {SPILL_VARIABLE} allows "
            f"({limits.spill_limit}; {detail}): narrow it (WHERE, LIMIT, aggregation), or "
            f"raise {SPILL_VARIABLE} or {MEMORY_VARIABLE}"
        )
    return (
        f"the query needed more memory than {MEMORY_VARIABLE} allows ({limits.memory_limit}; "
        f"{detail}): narrow it (WHERE, LIMIT, aggregation), or raise {MEMORY_VARIABLE}"
    )
