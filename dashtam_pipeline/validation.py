"""Row-level validation: good rows land, bad rows are quarantined with every reason.

A provider that sends one bad row out of a thousand must not cost us the other 999, and
must not fail the nightly run; but nothing that breaks the contract may reach the lake.
``validate`` runs the dataset's pandera model lazily (collecting every failure), drops
the failing rows, re-validates the remainder until it is clean, and returns the coerced
good rows plus one ``QuarantineRecord`` per rejected row naming each check it failed.

A failure that concerns a whole column (a missing column, a check that cannot run at all)
has no row to blame: it persists after the bad rows are gone, so every row is quarantined
with that reason instead of raising, and the run carries on.

The model is run as ``per_distinct_schema(model)``: the same checks, but those pandera
declares determined by unique values (a regex on ``symbol``) are evaluated once per
distinct value, not once per row (``schemas/distinct.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from dashtam_pipeline.registry import Dataset
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.base import (
    INTEGER_RANGES,
    MAX_INSTANT,
    MIN_INSTANT,
    column_names,
    empty_frame,
    guarded_columns,
    storable_problem,
)
from dashtam_pipeline.schemas.distinct import per_distinct_schema
from dashtam_pipeline.storage.lake import table_layout

#: Validation passes before giving up on a frame whose failures keep moving (a guard: each
#: pass with row failures removes rows, so real frames converge in two or three).
MAX_PASSES = 10


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class QuarantineRecord:
    """One rejected row (or file, or response), kept in ``ops.quarantine``.

    ``dataset`` is the table the row was meant for (``market.quotes``); ``record`` the raw
    row as JSON (or the raw text), secrets already removed by the caller.
    """

    provider: str
    dataset: str
    partition_key: str | None
    reason: str
    record: str
    quarantined_at: dt.datetime = field(default_factory=_utc_now)
    #: The user a brokerage record belongs to (``None`` for platform data), so that
    #: ``dashtam forget`` erases a user's quarantined records too.
    user_id: str | None = None

    @property
    def quarantine_id(self) -> str:
        """Hash of what was rejected and why (not when): re-running the same bad input
        lands on the same ``ops.quarantine`` row instead of adding another. The user is
        part of it only when set, so platform rows keep the ids they always had, and two
        users' identical bad records stay two rows (each erasable on its own)."""
        parts = [self.provider, self.dataset, self.partition_key, self.reason, self.record]
        if self.user_id is not None:
            parts.append(self.user_id)
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class ValidationResult:
    """The split of one frame: rows to upsert, rows to quarantine, and why."""

    valid: pd.DataFrame
    quarantined: list[QuarantineRecord]
    failures_by_check: dict[str, int]
    duplicates_dropped: int

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)


def validate(
    dataset_or_model: Dataset | str | type[pa.DataFrameModel],
    frame: pd.DataFrame,
    *,
    provider: str,
    table: str,
    partition_key: str | None = None,
) -> ValidationResult:
    """Validate ``frame`` against its dataset's model; never raises for bad data.

    ``valid`` holds the coerced rows, contract columns in contract order, one row per key
    (the last one wins; ``duplicates_dropped`` counts the others). Each quarantined
    record's reason lists every check its row failed, e.g.
    ``price: greater_than(0) failed (value -2.0)``.
    """
    model = _resolve_model(dataset_or_model)
    schema = per_distinct_schema(model)
    key = list(table_layout(table).key)
    raw = frame.reset_index(drop=True)
    reasons: dict[int, list[str]] = defaultdict(list)
    unstorable = _unstorable(model, raw)
    for index, texts in unstorable.items():
        reasons[index].extend(texts)
    remaining = raw.drop(index=list(unstorable)) if unstorable else raw
    valid: pd.DataFrame | None = None
    column_reasons: list[str] = []

    for _ in range(MAX_PASSES):
        try:
            valid = schema.validate(remaining, lazy=True)
            break
        except SchemaErrors as exc:
            row_reasons, column_reasons = _explain(exc.failure_cases)
        if not row_reasons:
            break  # only whole-column failures left: no row can be kept
        for index, texts in row_reasons.items():
            reasons[index].extend(texts)
        remaining = remaining.drop(index=list(row_reasons))
    else:
        column_reasons = ["validation did not converge: failures kept moving between rows"]

    if valid is None:
        for index in raw.index:
            reasons[index].extend(column_reasons)
        valid = empty_frame(model)

    failures = Counter(text.split(" failed")[0] for texts in reasons.values() for text in texts)
    valid = valid[column_names(model)]
    duplicated = valid.duplicated(subset=key, keep="last") if len(valid) else None
    dropped = int(duplicated.sum()) if duplicated is not None else 0
    if dropped:
        valid = valid[~duplicated]
    quarantined = [
        QuarantineRecord(
            provider=provider,
            dataset=table,
            partition_key=partition_key,
            reason="; ".join(texts),
            record=_row_json(raw.loc[index]),
        )
        for index, texts in sorted(reasons.items())
    ]
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantined=quarantined,
        failures_by_check=dict(failures),
        duplicates_dropped=dropped,
    )


def _unstorable(model: type[pa.DataFrameModel], raw: pd.DataFrame) -> dict[int, list[str]]:
    """Rows with a value their column's warehouse type cannot hold (an integer outside
    BIGINT/INTEGER or with a fraction, a timestamp outside 1900..2199), by index, with
    reasons naming the column: ``schemas.base.storable_problem``, the shared guard.

    Run before pandera because pandera cannot judge such a value row by row: a column it
    fails to coerce (``1e30`` into ``Int64``) comes back as one opaque ``DATATYPE_COERCION``
    failure, and a fraction is silently rounded. Columns already of their type are checked
    vectorized (a backfill's millions of rows); raw ones value by value."""
    found: dict[int, list[str]] = defaultdict(list)
    for name, kind in guarded_columns(model).items():
        if name not in raw.columns:
            continue  # a missing column is the schema's own whole-column failure
        column = raw[name]
        if kind == "TIMESTAMPTZ" and isinstance(column.dtype, pd.DatetimeTZDtype):
            bad = column.notna() & ((column < MIN_INSTANT) | (column >= MAX_INSTANT))
        elif kind in INTEGER_RANGES and pd.api.types.is_integer_dtype(column.dtype):
            low, high = INTEGER_RANGES[kind]  # whole by its dtype: only the range to check
            bad = column.notna() & ((column < low) | (column > high))
        else:
            bad = column.notna()  # judged one by one below
        for index, value in column[bad].items():
            problem = storable_problem(kind, value)
            if problem is not None:
                found[int(index)].append(f"{name}: fits_{kind.lower()} failed ({problem})")
    return dict(found)


def schema_errors_sentence(error: SchemaErrors, *, provider: str, table: str) -> str:
    """One sentence for a pandera ``SchemaErrors`` that escaped row-level handling
    (provider, dataset, each column with its check and how many values failed), in place
    of pandera's JSON report, which must never reach a user."""
    cases = error.failure_cases
    parts = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=True):
        example = group["failure_case"].iloc[0]
        parts.append(f"column {column}: {check} failed for {len(group)} value(s) "
                     f"(e.g. {_show(example)})")
    detail = "; ".join(parts) or "the frame does not match the schema"
    return f"{provider} {table}: rows do not match the schema: {detail}"


def _resolve_model(
    dataset_or_model: Dataset | str | type[pa.DataFrameModel],
) -> type[pa.DataFrameModel]:
    if isinstance(dataset_or_model, type):
        return dataset_or_model
    return SCHEMAS[Dataset(dataset_or_model)]


def _explain(failure_cases: pd.DataFrame) -> tuple[dict[int, list[str]], list[str]]:
    """Readable reasons from pandera's failure cases: per row (by index), and for failures
    with no row (whole column or whole frame)."""
    by_row: dict[int, list[str]] = defaultdict(list)
    whole: list[str] = []
    coerce_failed = {
        (case.column, case.index)
        for case in failure_cases.itertuples()
        if str(case.check).startswith("coerce_dtype")
    }
    # A column pandera could not coerce is checked as it came in: every other value of it
    # fails its dtype (and maybe other checks) only because the column stayed raw. Those
    # rows are not blamed now; the next pass, without the unconvertible rows, coerces the
    # column and judges them on their own values.
    uncoerced = {column for column, _ in coerce_failed}
    for case in failure_cases.itertuples():
        check = str(case.check)
        if case.index is None or (isinstance(case.index, float) and math.isnan(case.index)):
            text = _whole_reason(case.schema_context, case.column, check, case.failure_case)
            if text not in whole:
                whole.append(text)
            continue
        index = int(case.index)
        if check.startswith("dtype(") and (case.column, case.index) in coerce_failed:
            continue  # the coercion failure already says it
        if case.column in uncoerced and (case.column, case.index) not in coerce_failed:
            continue  # judged in the next pass, once the column is coerced
        if case.schema_context == "DataFrameSchema":
            text = f"row check {check} failed"
        else:
            text = f"{case.column}: {check} failed (value {_show(case.failure_case)})"
        if text not in by_row[index]:
            by_row[index].append(text)
    return dict(by_row), whole


def _whole_reason(context: str, column: object, check: str, failure: object) -> str:
    if check == "column_in_dataframe":
        return f"{failure}: column_in_dataframe failed (column missing)"
    if context == "DataFrameSchema":
        return f"row check {check} failed ({failure})"
    return f"{column}: {check} failed ({failure})"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _row_json(row: pd.Series) -> str:
    return record_json(dict(row.items()))


def record_json(record: Any) -> str:
    """A quarantined record (a frame row, or a raw provider object a parser rejected) as
    strict JSON, readable by any JSON reader: see ``_jsonable``."""
    return json.dumps(_jsonable(record), default=str, ensure_ascii=False, sort_keys=True)


def _jsonable(value: Any) -> Any:
    """A raw cell as JSON: NaN/NaT as null, an infinity as the text ``"inf"``/``"-inf"``
    (JSON has no infinity; ``Infinity`` would make the record unreadable as JSON), numpy
    scalars as Python, the rest as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value
