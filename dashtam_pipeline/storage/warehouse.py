"""The DuckDB warehouse: schemas, views over the Parquet lake, and table macros — no data.

Because the lake is the record, writers never open the DuckDB file: a multiprocess run,
a backfill and an analyst's ``dashtam query`` never fight over DuckDB's file lock. The file
is opened read-write only by ``ensure_views``, and only when a definition changed (each
object's definition is fingerprinted in ``ops._views``); when an analyst holds the file it
retries briefly, then gives up with a warning — the data is already in the lake and the
views read the lake's files by glob, so new rows show up without any write here.

Every view casts each column to its contract type (derived from the dataset's pandera
model), so ``DESCRIBE market.quotes`` says exactly what ``CONTRACT.md`` says whatever the
Parquet writer did.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa_arrow

from dashtam_pipeline.errors import PipelineError
from dashtam_pipeline.private_files import make_private, make_private_dirs
from dashtam_pipeline.registry import Domain
from dashtam_pipeline.schemas.base import duckdb_columns
from dashtam_pipeline.storage.lake import TABLE_LAYOUTS, Lake, TableLayout
from dashtam_pipeline.storage.locks import LockTimeout, TableLock, exclusive_lock
from dashtam_pipeline.storage.query import (
    QueryIsolationError,
    QueryLimits,
    QueryTimeout,
    Watchdog,
    describe_error,
    isolate,
    refusal,
)

log = logging.getLogger(__name__)

SCHEMAS = tuple(domain.value for domain in Domain)
MARTS_SCHEMA = Domain.MARTS.value
VIEWS_TABLE = "ops._views"
OPEN_END = "DATE '9999-12-31'"
#: How long ``query`` waits for ``ensure_views`` to release the file (it holds it briefly).
READ_RETRY_SECONDS = 10.0
#: How long ``ensure_views`` waits for readers before leaving the views for next time.
WRITE_RETRY_SECONDS = 5.0
_RETRY_PAUSE = 0.1
#: Rows per batch when a result is streamed (``query_batches``): large enough that the
#: per-batch cost (a fetch, a timer) vanishes, small enough that wide rows stay a few MB.
STREAM_BATCH_ROWS = 10_000
_T = TypeVar("_T")


class WarehouseError(PipelineError):
    """A warehouse query or definition failed; the message says what to do."""


# --- definitions -----------------------------------------------------------------------
def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    return ".".join(_quote(part) for part in name.split("."))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_select(layout: TableLayout, lake: Lake) -> str:
    """The SELECT behind a contract table's view: every published file of the table, each
    column cast to its contract type. When the table has no file at all (a transient
    in-memory connection before anything landed) it is an empty relation of that shape."""
    columns = duckdb_columns(layout.model)
    if lake.files(layout):
        source = f"read_parquet({_literal(lake.glob(layout))}, union_by_name=true)"
        casts = (f"CAST({_quote(c)} AS {t}) AS {_quote(c)}" for c, t in columns.items())
        return f"SELECT {', '.join(casts)} FROM {source}"
    nulls = (f"CAST(NULL AS {t}) AS {_quote(c)}" for c, t in columns.items())
    return f"SELECT {', '.join(nulls)} WHERE false"


def mart_names(lake: Lake) -> list[str]:
    """Marts written to ``<lake>/marts/<name>/`` (see ``write_mart``)."""
    root = lake.root / MARTS_SCHEMA
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.parquet")))


def view_definitions(lake: Lake) -> dict[str, str]:
    """Every warehouse object over ``lake``, by name, as the statement that creates it.

    Order matters: schemas first, then tables' views, then what is defined on them.
    """
    definitions = {f"schema:{s}": f"CREATE SCHEMA IF NOT EXISTS {_quote(s)}" for s in SCHEMAS}
    for table, layout in TABLE_LAYOUTS.items():
        definitions[table] = (
            f"CREATE OR REPLACE VIEW {_qualified(table)} AS {table_select(layout, lake)}"
        )
    definitions["macro.fred_latest"] = (
        "CREATE OR REPLACE VIEW macro.fred_latest AS "
        "SELECT series_id, date, value FROM macro.fred_observations "
        f"WHERE realtime_end = {OPEN_END}"
    )
    definitions["macro.fred_as_of"] = (
        "CREATE OR REPLACE MACRO macro.fred_as_of(as_of) AS TABLE "
        "SELECT series_id, date, value FROM macro.fred_observations "
        "WHERE realtime_start <= CAST(as_of AS DATE) AND CAST(as_of AS DATE) <= realtime_end"
    )
    for name in mart_names(lake):
        glob = str((lake.root / MARTS_SCHEMA / name).resolve() / "*.parquet")
        definitions[f"{MARTS_SCHEMA}.{name}"] = (
            f"CREATE OR REPLACE VIEW {_qualified(f'{MARTS_SCHEMA}.{name}')} AS "
            f"SELECT * FROM read_parquet({_literal(glob)}, union_by_name=true)"
        )
    return definitions


def _fingerprint(statement: str) -> str:
    return hashlib.sha256(statement.encode()).hexdigest()


# --- the in-memory lake connection (marts, checks) ------------------------------------
@contextmanager
def lake_connection(lake_root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the warehouse's schemas, views and macros over the lake.

    For SQL that must run while others hold the warehouse file (marts, checks): it never
    opens that file, so it never waits for a lock.
    """
    con = duckdb.connect()
    try:
        con.execute(";\n".join(view_definitions(Lake(lake_root)).values()))
        yield con
    finally:
        con.close()


def write_mart(lake: Lake, name: str, table: pa_arrow.Table) -> Path:
    """Replace mart ``name`` with ``table`` (atomically, under ``lake``'s table lock;
    ``marts.<name>`` reads it)."""
    return lake.replace_table(MARTS_SCHEMA, name, table)


# --- the warehouse file ----------------------------------------------------------------
def _is_lock_conflict(exc: duckdb.Error) -> bool:
    """Another process (or another connection of this one, with a different mode) has the
    file: worth retrying, unlike a real error."""
    text = str(exc)
    return "Could not set lock" in text or "different configuration" in text


class Warehouse:
    """The analysts' DuckDB file at ``path``, over the lake at ``lake_root``."""

    def __init__(self, path: Path, lake_root: Path, *, table_lock: TableLock | None = None) -> None:
        self.path = Path(path).resolve()
        self.lake = Lake(Path(lake_root).resolve(), table_lock=table_lock)
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    # --- definitions -------------------------------------------------------------------
    def ensure_views(self) -> bool:
        """Create or update every schema, view and macro whose definition changed.

        Returns True when the warehouse is up to date, False when readers kept the file
        busy (logged as a warning; the data is in the lake, the views follow next time).
        Never raises for a busy file: an analyst's open session must not fail a run.
        """
        make_private_dirs(self.path.parent)  # the data dir, when this is the first to make it
        for layout in TABLE_LAYOUTS.values():
            self.lake.ensure_table(layout)
        return self._apply(view_definitions(self.lake))

    def register_view(self, name: str, sql: str) -> bool:
        """Create (or replace) view ``name`` (schema-qualified, e.g. ``marts.x``) as
        ``sql``; same busy-file behaviour as ``ensure_views``."""
        schema = name.split(".")[0]
        return self._apply(
            {
                f"schema:{schema}": f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}",
                name: f"CREATE OR REPLACE VIEW {_qualified(name)} AS {sql}",
            }
        )

    def _apply(self, definitions: dict[str, str]) -> bool:
        if not self._changed(definitions):
            return True
        try:
            with exclusive_lock(
                self._lock_path, timeout=WRITE_RETRY_SECONDS, purpose="the warehouse definitions"
            ):
                changed = self._changed(definitions)
                if changed:
                    self._with_retry(
                        lambda con: self._write(con, changed),
                        read_only=False,
                        patience=WRITE_RETRY_SECONDS,
                    )
            return True
        except (_Busy, LockTimeout) as exc:
            log.warning(
                "warehouse views not updated: %s is in use (%s); the data is in the lake and "
                "the views will be updated by the next run",
                self.path,
                exc,
            )
            return False

    def _changed(self, definitions: dict[str, str]) -> dict[str, str]:
        """The definitions whose fingerprint differs from what the file records."""
        if not self.path.exists():
            return definitions
        try:
            recorded = self._with_retry(self._recorded, read_only=True, patience=0)
        except _Busy:
            return definitions  # cannot tell: the writer re-checks under its lock
        return {
            name: sql
            for name, sql in definitions.items()
            if recorded.get(name) != _fingerprint(sql)
        }

    @staticmethod
    def _recorded(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Fingerprints recorded in ``ops._views`` ({} before the first write). Asks the
        table directly: a ``duckdb_tables()`` scan first cost more than the whole read."""
        try:
            return dict(con.execute(f"SELECT name, fingerprint FROM {VIEWS_TABLE}").fetchall())
        except duckdb.CatalogException:
            return {}

    def _write(self, con: duckdb.DuckDBPyConnection, changed: dict[str, str]) -> None:
        """Every changed definition and its fingerprint in one transaction: the DDL as
        one multi-statement script, the fingerprints as one ``executemany``."""
        con.execute("BEGIN")
        try:
            con.execute(
                ";\n".join(
                    [
                        "CREATE SCHEMA IF NOT EXISTS ops",
                        f"CREATE TABLE IF NOT EXISTS {VIEWS_TABLE} (name VARCHAR PRIMARY KEY, "
                        "fingerprint VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
                        *changed.values(),
                    ]
                )
            )
            con.executemany(
                f"INSERT OR REPLACE INTO {VIEWS_TABLE} VALUES (?, ?, now())",
                [[name, _fingerprint(statement)] for name, statement in changed.items()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # --- connections -------------------------------------------------------------------
    def _with_retry(
        self,
        work: Callable[[duckdb.DuckDBPyConnection], _T],
        *,
        read_only: bool,
        patience: float,
        config: dict[str, str | bool | int | float | list[str]] | None = None,
    ) -> _T:
        """Run ``work`` on a fresh connection, retrying while another process holds the
        file (DuckDB allows one writer process, or many readers)."""
        deadline = time.monotonic() + patience
        while True:
            fresh = not read_only and not self.path.exists()
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config or {})
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc):
                    raise WarehouseError(f"cannot open the warehouse {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise _Busy(str(exc).splitlines()[0]) from exc
                time.sleep(_RETRY_PAUSE)
                continue
            if fresh:
                # DuckDB creates the file with the umask's mode (and cannot start from an
                # empty file made 0600 beforehand): make it private as soon as it exists
                make_private(self.path)
            try:
                return work(con)
            finally:
                con.close()
                if not read_only:
                    make_private(self.path.with_name(f"{self.path.name}.wal"))

    def _read(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None,
        fetch: Callable[[duckdb.DuckDBPyConnection, Watchdog], _T],
    ) -> _T:
        """Run ``sql`` and ``fetch`` its result on a read-only connection closed in to the
        warehouse and the lake, within the ``QueryLimits`` of the environment (see
        ``storage.query``): every query goes through here, the analyst's and the
        pipeline's own, so there is one way of reading and it is the isolated, bounded one.

        The limits are read at each query, not when the ``Warehouse`` is built, so a bad
        ``DASHTAM_QUERY_*`` variable is reported by the query it would govern (a
        ``ConfigurationError``), and a long-lived resource follows a changed environment.
        """
        _refuse_writes(sql)
        if not self.path.exists():
            raise WarehouseError(
                f"there is no warehouse at {self.path} yet: run `make demo` or "
                "`dashtam materialize` first"
            )
        limits = QueryLimits.from_environment()

        def isolated(con: duckdb.DuckDBPyConnection) -> _T:
            try:
                isolate(con, [self.lake.root])
            except (duckdb.Error, QueryIsolationError) as exc:
                raise WarehouseError(
                    f"the warehouse query was not run: the connection could not be "
                    f"restricted to the warehouse and its lake ({str(exc).splitlines()[0]})"
                ) from exc
            return _execute(con, sql, params, fetch, limits)

        try:
            return self._with_retry(
                isolated, read_only=True, patience=READ_RETRY_SECONDS,
                config=limits.connect_config(),
            )
        except _Busy as exc:
            raise WarehouseError(
                f"the warehouse {self.path} stayed locked by a writer for "
                f"{READ_RETRY_SECONDS:g}s; retry in a moment ({exc})"
            ) from exc
        except WarehouseError as exc:
            # DuckDB may already need more memory than the limit to open the file
            if isinstance(exc.__cause__, duckdb.OutOfMemoryException):
                raise WarehouseError(describe_error(exc.__cause__, limits)) from exc
            raise

    # --- queries -----------------------------------------------------------------------
    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run read-only SQL; returns the column names and the rows.

        Works while pipeline runs write the lake. A write statement raises
        ``WarehouseError`` ("the warehouse is read-only through dashtam query: ..."), and
        so does anything reaching past the warehouse and its lake (other files, the
        network, extensions, settings; see ``storage.query``); bad SQL raises
        ``WarehouseError`` with DuckDB's message, and so does a query that runs out of
        its time or memory (``DASHTAM_QUERY_*``), with the variable to raise.
        """
        return self._read(sql, params, _columns_and_rows)

    def query_df(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``query`` as a DataFrame (same read-only rules and limits)."""

        def frame(cursor: duckdb.DuckDBPyConnection, watchdog: Watchdog) -> pd.DataFrame:
            with watchdog.running():
                return cursor.df()

        return self._read(sql, params, frame)

    def query_batches(
        self,
        sql: str,
        consume: Callable[[list[str], Iterator[list[tuple[Any, ...]]]], _T],
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        batch_rows: int = STREAM_BATCH_ROWS,
    ) -> _T:
        """Run read-only SQL and hand ``consume`` the column names and an iterator of row
        batches (at most ``batch_rows`` rows each) as DuckDB produces them; returns what
        ``consume`` returns.

        For results larger than memory (``dashtam query``): only one batch is held at a
        time, and ``consume`` may stop early (the rest is never computed). The same rules
        and limits as ``query``; an error while fetching (a file out of reach, the time or
        memory limit) is raised out of the iterator as ``WarehouseError``. The time limit
        counts time inside DuckDB only, not time ``consume`` spends writing a batch.
        """

        def stream(cursor: duckdb.DuckDBPyConnection, watchdog: Watchdog) -> _T:
            columns = [d[0] for d in cursor.description or []]

            def batches() -> Iterator[list[tuple[Any, ...]]]:
                while columns:  # a statement without a result (SET VARIABLE) has no rows
                    with watchdog.running():
                        batch = cursor.fetchmany(batch_rows)
                    if not batch:
                        return
                    yield batch

            return consume(columns, batches())

        return self._read(sql, params, stream)

    def row_counts(self) -> dict[str, int]:
        """Rows per warehouse relation: every contract table, ``macro.fred_latest`` and
        every mart that has been built."""
        relations = [
            *TABLE_LAYOUTS,
            "macro.fred_latest",
            *(f"{MARTS_SCHEMA}.{name}" for name in mart_names(self.lake)),
        ]
        sql = " UNION ALL ".join(
            f"SELECT {_literal(t)} AS name, count(*) AS n FROM {_qualified(t)}"
            for t in relations
        )
        _, rows = self.query(sql)
        counts = dict(rows)
        return {name: int(counts[name]) for name in relations}

    def duplicate_keys(self, table: str, key: Sequence[str]) -> int:
        """How many key values occur more than once in ``table`` (0 when healthy). NULL
        key parts compare equal, as they do when the lake merges rows."""
        columns = ", ".join(_quote(k) for k in key)
        _, rows = self.query(
            f"SELECT count(*) FROM (SELECT {columns} FROM {_qualified(table)} "
            "GROUP BY ALL HAVING count(*) > 1)"
        )
        return int(rows[0][0])


class _Busy(Exception):
    """The warehouse file stayed locked by another connection for the whole retry window."""


def _refuse_writes(sql: str) -> None:
    """Refuse, with a sentence, a statement kind a query may not run (a write, ATTACH,
    COPY, LOAD...). The isolated connection would refuse most of them too; this says why
    in words a user can act on, and it is what keeps ``COPY ... TO`` out of the lake."""
    try:
        reason = refusal(sql)
    except duckdb.Error as exc:
        raise WarehouseError(str(exc)) from exc
    if reason is not None:
        raise WarehouseError(reason)


def _columns_and_rows(
    cursor: duckdb.DuckDBPyConnection, watchdog: Watchdog
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A result as names and rows; a statement without a result (``SET VARIABLE``) has
    neither, rather than failing on ``fetchall``."""
    columns = [d[0] for d in cursor.description or []]
    if not cursor.description:
        return columns, []
    with watchdog.running():
        return columns, cursor.fetchall()


def _execute(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None,
    fetch: Callable[[duckdb.DuckDBPyConnection, Watchdog], _T],
    limits: QueryLimits,
) -> _T:
    """Run ``sql`` on an isolated connection (``_read``; its time zone is already UTC) and
    ``fetch`` the result, under a ``Watchdog`` of ``limits.timeout_seconds`` that ``fetch``
    runs its own DuckDB calls under too. DuckDB's refusals and the limits are turned into
    sentences by ``describe_error``: fetching is inside too, since DuckDB may only open a
    file, or run out of time or memory, when the rows are pulled."""
    watchdog = Watchdog(con, limits.timeout_seconds)
    try:
        with watchdog.running():
            cursor = con.execute(sql, params) if params is not None else con.execute(sql)
        return fetch(cursor, watchdog)
    except QueryTimeout as exc:
        raise WarehouseError(str(exc)) from exc
    except duckdb.Error as exc:
        raise WarehouseError(describe_error(exc, limits)) from exc
