"""Turning provider records into typed frames: what the market-data clients share.

A parser reads a body's records one by one with ``build_rows``: a record that cannot be read
(not an object, a required field missing, a number that is not one) is appended to the
caller's ``rejected`` list with the reason, and the good rows still land. ``typed_frame``
puts rows into exactly a pandera model's columns and dtypes (values are checked later,
by the asset), so an empty answer has the same dtypes as a full one.

Brokerage money fields (strings such as ``"$1,234.56"`` read as exact decimals) have
their own readers in ``dashtam_pipeline.accounts``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

from dashtam_pipeline.clients.base import FetchResult, RejectedRecord
from dashtam_pipeline.schemas.base import (
    MAX_INSTANT,
    MIN_INSTANT,
    column_names,
    integer_problem,
    shown_value,
)

Record = Mapping[str, Any]


# -- field readers -----------------------------------------------------------------------
def number(record: Record | None, *keys: str) -> float | None:
    """The first present key as a float (some providers send numbers as strings); ``None``
    when absent, empty or NaN. A value that is not a number raises ``ValueError`` naming
    the field."""
    record = record or {}
    if not isinstance(record, Mapping):
        # nested garbage: ``"greeks": 1`` where an object of numbers belongs
        raise ValueError(f"field {keys[0]!r} is inside a {type(record).__name__}, not an "
                         "object")
    for key in keys:
        value = record.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise ValueError(f"field {key!r}: {value!r} is not a number")
        try:
            result = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
            raise ValueError(f"field {key!r}: {shown_value(value)} is not a number") from None
        if math.isinf(result):
            # ``1e400`` decodes to inf, and "inf"/"Infinity" strings parse to it: the row is
            # rejected with its reason; an infinity must never land in a table
            raise ValueError(f"field {key!r}: {shown_value(value)} is not a finite number")
        return None if math.isnan(result) else result
    return None


def integer(record: Record | None, *keys: str) -> int | None:
    """The first present key as an exact int; ``None`` when absent, empty or NaN. JSON
    integers stay exact (no trip through float); a float or numeric string is accepted
    only when it is whole. A fraction (``1.5``) or a value no integer column can hold
    (``1e30``, ``2**63``) raises ``ValueError`` naming the field: rounding would land a
    number the provider never sent."""
    record = record or {}
    for key in keys:
        value = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            exact: float | int | None = value
        else:
            exact = number(record, key)
        if exact is None:
            continue
        problem = integer_problem(exact)
        if problem is not None:
            raise ValueError(f"field {key!r}: {problem}")
        return int(exact)
    return None


#: Nanoseconds per unit of a Unix epoch count.
_EPOCH_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def epoch_instant(value: Any, unit: str, name: str) -> pd.Timestamp:
    """A Unix epoch count in ``unit`` (``s``, ``ms``, ``us``, ``ns``) as an exact UTC
    timestamp. A count outside 1900..2199 (``-1e12`` seconds, a ms value read as seconds)
    raises ``ValueError`` naming the field, before pandas is asked to build an instant it
    cannot hold (``year -29719 is out of range``)."""
    count = integer({name: value}, name)
    if count is None:
        raise ValueError(f"field {name!r} is missing")
    per_unit = _EPOCH_UNITS[unit]
    if not MIN_INSTANT.value <= count * per_unit < MAX_INSTANT.value:
        raise ValueError(
            f"field {name!r}: {shown_value(value)} ({unit} since 1970) is outside "
            f"{MIN_INSTANT.year}..{MAX_INSTANT.year - 1}"
        )
    return pd.Timestamp(count * per_unit, unit="ns", tz="UTC")


def required(value: Any, name: str) -> Any:
    """``value``, or ``ValueError`` saying the field ``name`` is missing when it is None."""
    if value is None:
        raise ValueError(f"field {name!r} is missing")
    return value


# -- records → rows → frames --------------------------------------------------------------
def build_rows(
    records: Iterable[Any],
    build: Callable[[Record], dict[str, Any]],
    label: str,
    rejected: list[RejectedRecord] | None,
) -> list[dict[str, Any]]:
    """One row per record; a record that cannot be read is rejected with the reason
    (prefixed with ``label``, e.g. ``"fmp quotes"``), not fatal."""
    built: list[dict[str, Any]] = []
    for record in records:
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"record is a {type(record).__name__}, not an object")
            built.append(build(record))
        except ValueError as exc:
            if rejected is not None:
                rejected.append(RejectedRecord(f"{label}: {exc}", record))
        except (TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # a field of the wrong JSON type somewhere inside the record (a list where a
            # string belongs, a number where an object does): that record is malformed,
            # not the whole response
            if rejected is not None:
                rejected.append(RejectedRecord(
                    f"{label}: malformed record ({type(exc).__name__}: {exc})", record))
    return built


def typed_frame(
    model: type[pa.DataFrameModel], rows: Sequence[Mapping[str, Any]] = ()
) -> pd.DataFrame:
    """Rows in exactly the model's columns and dtypes (values are checked later, by the
    asset); no rows gives an empty frame with those dtypes."""
    rows = list(rows)
    if not rows:
        # built once per model: clients make one per page and per series as a starting
        # value, and pandera's coercion costs milliseconds each time
        return _empty_frame(model).copy()
    frame = pd.DataFrame.from_records(rows, columns=column_names(model))
    return _coerced(model.to_schema(), frame)


def _coerced(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in the schema's dtypes where it can be. A column with a value its dtype
    cannot hold (``1e30`` in an Int64 column) is left as it came, never raised here: a
    ``SchemaErrors`` from a parser would fail the whole fetch with pandera's JSON report.
    ``validation.validate`` then quarantines the offending rows, each with its reason
    (``schemas.base.storable_problem``), and lands the rest."""
    try:
        return schema.coerce_dtype(frame)
    except (SchemaError, SchemaErrors):
        pass
    frame = frame.copy()
    for name, column in schema.columns.items():
        try:
            frame[name] = column.dtype.coerce(frame[name])
        except (TypeError, ValueError, OverflowError, SchemaError):
            frame[name] = frame[name].astype(object)
    return frame


@functools.cache
def _empty_frame(model: type[pa.DataFrameModel]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([], columns=column_names(model))
    return model.to_schema().coerce_dtype(frame)


def concat_frames(frames: Iterable[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate per-symbol or per-page frames, ``empty`` (keeping the schema's dtypes)
    when none has rows."""
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else empty


def combine_results(results: Iterable[FetchResult], empty: pd.DataFrame) -> FetchResult:
    """One result from several: frames concatenated (``empty`` when none has rows),
    rejected records and notes kept in order."""
    results = list(results)
    return FetchResult(
        concat_frames((r.frame for r in results), empty),
        [rejected for r in results for rejected in r.rejected],
        [note for r in results for note in r.notes],
    )
