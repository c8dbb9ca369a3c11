"""What the Dagster UI shows about a dataset: its columns, and each partition's numbers.

Two things analysts read first, built here so the factory and the marts say them the same
way:

* **Column schemas** (``dagster/column_schema``): the DuckDB type of each column (the type
  they query, never Arrow's ``date32[day]``), the pandera field's description, and its
  constraints as short text ("> 0", "one of BUY, SELL, …", "≥ low"). pandera's own
  ``repr`` of a check (``<Check greater_than: greater_than(0)>``) is cut to nothing in the
  UI's column table, so every check is rendered here; a check without a rendering is an
  error (``constraint_text``), so a new check cannot silently show as a repr again.
* **Per-partition materialization metadata**: a run may cover many partitions (a month of
  days, 25 FRED series, every inbox file), and Dagster copies a run's metadata onto every
  partition's materialization. So each partition gets its own row count (``dagster/row_count``:
  that partition's rows in the table), rows written and quarantined, via
  ``context.add_asset_metadata(..., partition_key=...)``; the table-wide count is the
  separate ``table_row_count``, and calls that a multi-partition run cannot attribute to one
  partition are named ``run_calls`` (with ``run_partitions``) instead of posing as the
  partition's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa
from dagster import MetadataValue, TableColumn, TableColumnConstraints, TableSchema

from dashtam_pipeline.assets.partitions import file_name_of
from dashtam_pipeline.registry import DatasetSpec, Partitioning
from dashtam_pipeline.schemas.base import MIN_DATE, duckdb_columns
from dashtam_pipeline.validation import QuarantineRecord

#: Column checks defined in our models (not pandera builtins), as an analyst reads them.
_DATE_RANGE = f"a date from {MIN_DATE.isoformat()} to 40 years ahead"
CUSTOM_CHECK_TEXT: dict[str, str] = {
    "finite": "finite (no ±infinity)",
    "dates_in_range": _DATE_RANGE,
    "date_in_range": _DATE_RANGE,
    "as_of_date_in_range": _DATE_RANGE,
    "trade_date_in_range": _DATE_RANGE,
    "quote_date_in_range": _DATE_RANGE,
    "period_end_in_range": _DATE_RANGE,
    "report_date_in_range": _DATE_RANGE,
    "realtime_end_in_range": f"{_DATE_RANGE} or 9999-12-31",
}
#: Row-level (dataframe) checks, shown on the columns they relate.
DATAFRAME_CHECK_TEXT: dict[str, dict[str, str]] = {
    "day_high_gte_day_low": {"day_high": "≥ day_low", "day_low": "≤ day_high"},
    "high_gte_low": {"high": "≥ low", "low": "≤ high"},
    "vintage_start_before_end": {
        "realtime_start": "≤ realtime_end", "realtime_end": "≥ realtime_start",
    },
}
#: Readable names of the patterns our models match, so the UI says what they mean.
PATTERN_TEXT: dict[str, str] = {
    r"^[A-Z0-9.\-^]+$": "upper-case ticker (A-Z, 0-9, . - ^)",
    r"^[A-Z0-9_]+$": "FRED series id (A-Z, 0-9, _)",
    r"^[A-Z][A-Z0-9.]{0,5}\d{6}[CP]\d{8}$": "OCC option symbol (e.g. AAPL230616C00150000)",
    r"^[A-Z]{3}$": "ISO 4217 currency code (3 letters)",
    r"^\*{4}[A-Za-z0-9]{0,4}$": "masked: **** then at most 4 characters",
    r"^https?://": "an http(s) URL",
    r"^[0-9a-f]{16,64}$": "lower-case hex hash",
}
_MAX_LISTED = 6


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def constraint_text(check: pa.Check) -> str:
    """One pandera column check as short text. Raises ``KeyError`` for a check that has no
    rendering yet: add it to ``CUSTOM_CHECK_TEXT`` rather than let a repr reach the UI."""
    stats = check.statistics or {}
    name = check.name
    if name == "greater_than":
        return f"> {_number(stats['min_value'])}"
    if name == "greater_than_or_equal_to":
        return f"≥ {_number(stats['min_value'])}"
    if name == "less_than":
        return f"< {_number(stats['max_value'])}"
    if name == "less_than_or_equal_to":
        return f"≤ {_number(stats['max_value'])}"
    if name == "in_range":
        return f"between {_number(stats['min_value'])} and {_number(stats['max_value'])}"
    if name == "isin":
        values = [str(v) for v in stats["allowed_values"]]
        shown = ", ".join(values[:_MAX_LISTED]) + (", …" if len(values) > _MAX_LISTED else "")
        return f"one of {shown}"
    if name == "str_matches":
        pattern = stats["pattern"]
        return PATTERN_TEXT.get(pattern, f"matches {pattern}")
    if name == "str_length":
        low, high = stats.get("min_value"), stats.get("max_value")
        if stats.get("exact_value") is not None:
            return f"exactly {stats['exact_value']} characters"
        if high is None:
            return "not empty" if low == 1 else f"at least {low} characters"
        return f"{low or 0} to {high} characters"
    return CUSTOM_CHECK_TEXT[name]


def column_constraints(model: type[pa.DataFrameModel]) -> dict[str, list[str]]:
    """Every column's constraints as text, row-level checks included (on their columns).
    ``finite`` is said only of DOUBLE columns: no other type can hold an infinity."""
    schema = model.to_schema()
    kinds = duckdb_columns(model)
    out: dict[str, list[str]] = {}
    for name, column in schema.columns.items():
        texts = [
            constraint_text(c) for c in column.checks
            if c.name != "finite" or kinds[name] == "DOUBLE"
        ]
        out[name] = list(dict.fromkeys(texts))
    for check in schema.checks:
        for column, text in DATAFRAME_CHECK_TEXT[str(check.name)].items():
            out[column].append(text)
    return out


def model_column_schema(
    model: type[pa.DataFrameModel], key: Sequence[str] = ()
) -> TableSchema:
    """The UI's column table for a pandera model: DuckDB types, the field descriptions
    (key columns say so first), nullability and readable constraints."""
    schema = model.to_schema()
    constraints = column_constraints(model)
    return TableSchema(
        columns=[
            TableColumn(
                name=name,
                type=kind,
                description=" ".join(filter(None, [
                    f"Key column ({', '.join(key)})." if name in key else "",
                    schema.columns[name].description or "",
                ])) or None,
                constraints=TableColumnConstraints(
                    nullable=schema.columns[name].nullable,
                    unique=False,
                    other=constraints[name],
                ),
            )
            for name, kind in duckdb_columns(model).items()
        ],
    )


# --- per-partition metadata --------------------------------------------------------------
def partition_expression(dataset: DatasetSpec, partitioning: Partitioning) -> str | None:
    """The SQL expression (over the dataset's table or a frame of its rows) whose text is
    the partition key a row belongs to; None for unpartitioned assets.

    A trading-day partition holds the rows of that New York date (a quote's
    ``quote_date``, a bar's ``date``, an article's ``published_at`` in New York); a FRED
    partition a series' rows; an inbox-file partition the rows imported from that file; a
    connection partition the rows of that connection.
    """
    if partitioning is Partitioning.TRADING_DAY:
        columns = duckdb_columns(_model(dataset))
        dates = [c for c in dataset.key if columns.get(c) == "DATE"]
        if dates:
            return f'CAST("{dates[0]}" AS VARCHAR)'
        stamps = [c for c, kind in columns.items() if kind == "TIMESTAMPTZ"]
        return (
            f"CAST(CAST(timezone('America/New_York', \"{stamps[0]}\") AS DATE) AS VARCHAR)"
        )
    if partitioning is Partitioning.FRED_SERIES:
        return '"series_id"'
    if partitioning is Partitioning.INBOX_FILE:
        return '"source_file"'
    if partitioning is Partitioning.CONNECTION:
        return '"connection_id"'
    return None


def _model(dataset: DatasetSpec) -> type[pa.DataFrameModel]:
    from dashtam_pipeline.schemas import SCHEMAS

    return SCHEMAS[dataset.dataset]


def partition_value(partitioning: Partitioning, partition_key: str) -> str:
    """What ``partition_expression`` yields for the rows of ``partition_key``."""
    if partitioning is Partitioning.INBOX_FILE:
        return file_name_of(partition_key)
    return partition_key


def frame_partition_counts(frame: pd.DataFrame, expression: str) -> dict[str, int]:
    """Rows of a frame per partition value (the rows one run wrote)."""
    if frame.empty:
        return {}
    import duckdb

    con = duckdb.connect()
    try:
        con.register("rows_of_run", frame)
        rows = con.execute(
            f"SELECT {expression} AS k, count(*) FROM rows_of_run GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    return {str(k): int(n) for k, n in rows if k is not None}


def _record_partition(
    record: QuarantineRecord, keys: Sequence[str], column: str | None
) -> str | None:
    """Which of ``keys`` a quarantined row belongs to: its own partition key, else the
    partition column of its raw record when that is readable; None when unknown."""
    if record.partition_key in keys:
        return record.partition_key
    if column is None:
        return None
    try:
        raw = json.loads(record.record)
    except (TypeError, ValueError):
        return None
    value = raw.get(column) if isinstance(raw, dict) else None
    text = str(value)[:10] if value is not None else None
    return text if text in keys else None


def quarantined_per_partition(
    records: Iterable[QuarantineRecord], keys: Sequence[str], expression: str | None
) -> tuple[dict[str, int], int]:
    """Quarantined rows per partition key, and how many could not be attributed to one
    (a multi-partition run's rejected response, say). With one partition, all are its."""
    counts = dict.fromkeys(keys, 0)
    unattributed = 0
    column = None
    if expression and expression.startswith('"'):
        column = expression.strip('"')
    elif expression and expression.startswith('CAST("'):
        column = expression.split('"')[1]
    for record in records:
        key = keys[0] if len(keys) == 1 else _record_partition(record, keys, column)
        if key is None:
            unattributed += 1
        else:
            counts[key] += 1
    return counts, unattributed


@dataclass(frozen=True)
class PartitionNumbers:
    """One partition's own numbers, as its materialization shows them."""

    row_count: int
    rows_written: int
    rows_quarantined: int

    def metadata(self, calls: Mapping[str, Any] | None) -> dict[str, MetadataValue]:
        """``calls`` is the call summary when the run's calls are this partition's alone
        (a one-partition run); otherwise the run-wide ``run_calls`` entries stand."""
        out: dict[str, MetadataValue] = {
            "dagster/row_count": MetadataValue.int(self.row_count),
            "rows_written": MetadataValue.int(self.rows_written),
            "rows_quarantined": MetadataValue.int(self.rows_quarantined),
        }
        out.update(call_metadata(calls or {}))
        return out


def call_metadata(summary: Mapping[str, Any], *, prefix: str = "") -> dict[str, MetadataValue]:
    """A call summary (``CallStats.summary``) as metadata entries, optionally prefixed."""
    return {
        f"{prefix}{name}": (
            MetadataValue.float(float(value)) if "latency" in name
            else MetadataValue.int(int(value))
        )
        for name, value in summary.items()
    }
