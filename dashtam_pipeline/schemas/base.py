"""What every dataset schema shares, and how a pandera model maps to Arrow and DuckDB.

A dataset's pandera model is the only description of its columns: the Arrow schema of
its Parquet files and the DuckDB types of its warehouse view are derived from it here,
so the lake, the warehouse and validation cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandas.api.types import is_float_dtype
from pandera.engines import pandas_engine

from dashtam_pipeline.schemas.distinct import broadcast, evaluate_per_distinct, factorize_exact

#: Earliest and latest dates any dataset accepts: catches epoch-0 and ms/ns mix-ups.
MIN_DATE = dt.date(1776, 7, 4)
MAX_FUTURE_DAYS = 366 * 40  # option expirations and FRED's 9999-12-31 are handled apart
OPEN_END = dt.date(9999, 12, 31)


@pandas_engine.Engine.register_dtype
@dataclasses.dataclass(frozen=True)
class CalendarDate(pandas_engine.Date):
    """pandera's date type, coerced through second resolution instead of nanoseconds, so
    FRED's open-ended vintage date 9999-12-31 (beyond pandas' ns range) is a valid date."""

    def coerce(self, data_container: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
        """Coerced once per distinct value (a backfill chunk has ~250 dates in ~500k
        rows): each row then shares its value's ``datetime.date``. A value that cannot be
        coerced raises here just as in the row-by-row coercion, and pandera then finds the
        failing rows on the original column."""
        if isinstance(data_container, pd.Series):
            factorized = factorize_exact(data_container)
            if factorized is not None and len(factorized[1]) * 2 <= len(data_container):
                codes, distinct = factorized
                dates = self._coerce(distinct, pandas_dtype="datetime64[s]")
                return pd.Series(
                    broadcast(codes, dates.to_numpy(dtype=object), pd.NaT),
                    index=data_container.index,
                    name=data_container.name,
                    dtype=object,
                )
        return self._coerce(data_container, pandas_dtype="datetime64[s]")

    def check(
        self, pandera_dtype: pandas_engine.DataType, data_container: pd.Series | None = None
    ) -> bool | Iterable[bool]:
        """pandera's rule (each value is NULL or exactly a ``datetime.date``, not a
        datetime), with the per-row Python ``apply`` replaced by one vectorized pass."""
        if data_container is None or not pandas_engine.DataType.check(
            self, pandera_dtype, data_container
        ):
            return super().check(pandera_dtype, data_container)
        values = data_container.to_numpy(dtype=object)
        is_date = np.asarray(np.frompyfunc(type, 1, 1)(values) == dt.date, dtype=bool)
        if not is_date.all():
            is_date |= pd.isna(values)
        return pd.Series(is_date, index=data_container.index, name=data_container.name)


class ContractModel(pa.DataFrameModel):
    """Base config: coerce to the contract's types, drop columns the contract doesn't name;
    and no DOUBLE column of any dataset holds an infinity (``finite``).

    Why a check of its own: ``1e400`` in a JSON body or a CSV parses to ``inf``, which
    passes ``gt=0`` and would land as a price. NaN is pandas' null in a float column, so it
    stays the column's own nullability rule (refused where the column is not nullable);
    an infinity is never a value, nullable column or not.
    """

    class Config:
        coerce = True
        strict = "filter"
        ordered = False

    # named like its check: pandera reports an inherited check by its function's name
    @pa.check(".*", regex=True, name="finite")
    def finite(cls, s: pd.Series) -> pd.Series:
        return finite_or_null(s)


def finite_or_null(series: pd.Series) -> pd.Series:
    """Element check: a float value is finite or null (NaN); other columns always pass
    (their types cannot hold an infinity)."""
    if not is_float_dtype(series.dtype):
        return pd.Series(True, index=series.index, dtype=bool)
    return ~series.isin([np.inf, -np.inf])


#: The instants a TIMESTAMPTZ column accepts: [1900-01-01, 2200-01-01) UTC. Wide enough
#: for any real quote, filing, article or trade; narrow enough to catch a seconds/ms/ns
#: mix-up, and inside what pandas (ns: 1677..2262) and Arrow can hold, so a hostile
#: epoch never reaches a ``ValueError: year ... is out of range`` deep in a conversion.
MIN_INSTANT = pd.Timestamp("1900-01-01", tz="UTC")
MAX_INSTANT = pd.Timestamp("2200-01-01", tz="UTC")
#: The values each warehouse integer type holds (DuckDB BIGINT and INTEGER).
INTEGER_RANGES = {"BIGINT": (-(2**63), 2**63 - 1), "INTEGER": (-(2**31), 2**31 - 1)}


def integer_problem(value: object, kind: str = "BIGINT") -> str | None:
    """Why ``value`` cannot be stored exactly in an integer column of ``kind``, or
    ``None`` when it can (or is null). A whole-valued float (``95595226.0``) is fine; a
    fraction is refused rather than rounded (a volume of 1.5 must not land as 2), and so
    is anything outside the type (``1e30``, ``2**63``) rather than failing the whole
    frame's coercion."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None  # not a number at all: the schema's coercion says so, row by row
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        if not np.isfinite(value):
            return f"{shown_value(value)} is not a finite number"
        if not float(value).is_integer():
            return f"{shown_value(value)} is not a whole number ({kind} keeps values exact)"
    low, high = INTEGER_RANGES[kind]
    if not low <= int(value) <= high:
        return f"{shown_value(value)} is outside the {kind} range [{low}, {high}]"
    return None


def instant_problem(value: object) -> str | None:
    """Why ``value`` cannot be a TIMESTAMPTZ value, or ``None`` when it can (or is null):
    it must be an instant in ``[MIN_INSTANT, MAX_INSTANT)``."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if not isinstance(value, (dt.datetime, np.datetime64, str)):
        return None  # not an instant at all: the schema's coercion says so, row by row
    try:
        instant = pd.Timestamp(value)
        instant = instant.tz_localize("UTC") if instant.tzinfo is None else instant
        inside = MIN_INSTANT <= instant < MAX_INSTANT
    except OverflowError:
        inside = False
    except ValueError:  # OutOfBoundsDatetime is a ValueError, and so is unparseable text
        if isinstance(value, str):
            return None  # unreadable text: the schema's coercion reports it
        inside = False
    if inside:
        return None
    return (f"{shown_value(value)} is outside {MIN_INSTANT.year}..{MAX_INSTANT.year - 1} "
            "(a timestamp in the wrong unit?)")


def storable_problem(kind: str, value: object) -> str | None:
    """The one guard for a raw value against its warehouse column type: why it cannot be
    stored as ``kind`` (``BIGINT``, ``INTEGER``, ``TIMESTAMPTZ``), or ``None``. Other
    kinds are left to the schema's own coercion and checks."""
    if kind in INTEGER_RANGES:
        return integer_problem(value, kind)
    if kind == "TIMESTAMPTZ":
        return instant_problem(value)
    return None


def shown_value(value: object, limit: int = 40) -> str:
    """A refused raw value as a reason quotes it: its ``repr`` (a NumPy scalar as the
    Python number it holds), cut at ``limit`` characters."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[:limit] + "..."


def _field_kind(dtype: object) -> str:
    text = str(dtype)
    if text == "date":
        return "DATE"
    if text.startswith("datetime64") and "UTC" in text:
        return "TIMESTAMPTZ"
    if text in ("float64", "float"):
        return "DOUBLE"
    if text == "Int64" or text == "int64":
        return "BIGINT"
    if text == "Int32" or text == "int32":
        return "INTEGER"
    if text in ("bool", "boolean"):
        return "BOOLEAN"
    if text in ("str", "string", "object") or text.startswith("string"):
        return "VARCHAR"
    raise TypeError(f"no warehouse type for pandera dtype {text!r}")


_ARROW = {
    "DATE": pa_arrow.date32(),
    "TIMESTAMPTZ": pa_arrow.timestamp("us", tz="UTC"),
    "DOUBLE": pa_arrow.float64(),
    "BIGINT": pa_arrow.int64(),
    "INTEGER": pa_arrow.int32(),
    "BOOLEAN": pa_arrow.bool_(),
    "VARCHAR": pa_arrow.string(),
}


def guarded_columns(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """Column name → kind of the columns ``storable_problem`` guards (integers and
    timestamps): the ones where one hostile value could break a whole frame."""
    return {name: kind for name, kind in duckdb_columns(model).items()
            if kind in INTEGER_RANGES or kind == "TIMESTAMPTZ"}


def duckdb_columns(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """Column name → DuckDB type, in contract order."""
    schema = model.to_schema()
    return {name: _field_kind(column.dtype) for name, column in schema.columns.items()}


def arrow_schema(model: type[pa.DataFrameModel]) -> pa_arrow.Schema:
    """The Arrow schema every Parquet file of this dataset is written with."""
    schema = model.to_schema()
    return pa_arrow.schema(
        [
            pa_arrow.field(name, _ARROW[_field_kind(column.dtype)], nullable=column.nullable)
            for name, column in schema.columns.items()
        ]
    )


def column_names(model: type[pa.DataFrameModel]) -> list[str]:
    return list(model.to_schema().columns)


def empty_frame(model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """A zero-row frame with the model's columns (for a provider that returned nothing)."""
    return pd.DataFrame({name: pd.Series(dtype="object") for name in column_names(model)})


def dates_in_range(series: pd.Series, *, allow_open_end: bool = False) -> pd.Series:
    """Element check: a date between ``MIN_DATE`` and a bounded future (or ``9999-12-31``
    when ``allow_open_end``). NULLs pass (nullability is the column's own rule). It runs on
    every row of every batch, millions at a time in a backfill, so it is vectorized and
    evaluated once per distinct date (the answer depends on the value alone)."""
    return evaluate_per_distinct(
        lambda values: _dates_in_range(values, allow_open_end=allow_open_end), series
    )


def _dates_in_range(series: pd.Series, *, allow_open_end: bool) -> pd.Series:
    as_seconds = pd.to_datetime(series, errors="coerce").astype("datetime64[s]")
    latest = pd.Timestamp(dt.date.today() + dt.timedelta(days=MAX_FUTURE_DAYS))
    in_range = (as_seconds >= pd.Timestamp(MIN_DATE)) & (as_seconds <= latest)
    if allow_open_end:
        in_range |= as_seconds == pd.Timestamp(OPEN_END)
    unparseable = as_seconds.isna() & series.notna()
    return (in_range | series.isna()) & ~unparseable
