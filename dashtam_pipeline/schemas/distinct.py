"""Run a per-value computation once per distinct value of a column, not once per row.

A backfill chunk of daily bars has ~500k rows but only ~2,000 symbols and ~250 dates, and
the date coercion and date-range check are pure functions of the value: computing them on
the distinct values and broadcasting the result back through the factorization codes gives
the same answer as computing them row by row, for a fraction of the work.

"Distinct" must mean "converts identically". pandas' hash table treats ``1``, ``1.0`` and
``True`` as one value, which a date conversion does not, so an ``object`` column is only
factorized when all its values are of one kind (strings, dates or numpy datetimes, whose
equal values are the same value); anything else returns ``None`` and the caller falls
back to the row-by-row computation.

``per_distinct_schema`` applies this to a model's own pandera checks: every check pandera
itself declares ``determined_by_unique`` (``str_matches``, ``isin``, ...) is evaluated on
the distinct values of a text column. The checks keep their name, error text and options,
so pandera still validates every row and failure reasons read exactly as before.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype, is_bool_dtype, is_object_dtype, is_string_dtype

#: ``infer_dtype`` kinds whose equal values (as pandas hashes them) convert identically.
#: Not "datetime": two aware datetimes in different zones can be equal (one instant) yet
#: not convert alike.
_SAFE_OBJECT_KINDS = frozenset({"string", "date", "datetime64", "empty"})
#: Below this many rows a check is cheaper to run than to factorize for.
MIN_ROWS = 1_000


def factorize_exact(series: pd.Series) -> tuple[np.ndarray, pd.Series] | None:
    """``(codes, distinct)`` with ``series == distinct[codes]`` (code -1 for a null), or
    ``None`` when values that are not interchangeable could share a code (or are not
    hashable)."""
    if series.dtype == object:
        kind = infer_dtype(series, skipna=True)
        if kind not in _SAFE_OBJECT_KINDS or (kind == "date" and not _only_dates(series)):
            return None
    try:
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
    except TypeError:
        return None
    return codes, pd.Series(distinct, name=series.name)


def _only_dates(series: pd.Series) -> bool:
    """Every non-null value is exactly a ``datetime.date``: ``infer_dtype`` also says "date"
    when datetimes (a subclass) are mixed in, and those must not be merged."""
    values = series.to_numpy(dtype=object)
    is_date = np.frompyfunc(type, 1, 1)(values) == dt.date
    return bool(is_date.all() or (is_date | pd.isna(values)).all())


def broadcast(codes: np.ndarray, per_distinct: np.ndarray, null_value: object) -> np.ndarray:
    """Row values from per-distinct values: ``per_distinct[code]``, ``null_value`` where
    the row was null (code -1)."""
    table = np.empty(len(per_distinct) + 1, dtype=per_distinct.dtype)
    table[:-1] = per_distinct
    table[-1] = null_value
    return table[codes]


def evaluate_per_distinct(check: Callable[[pd.Series], Any], series: pd.Series) -> Any:
    """``check(series)`` for a check whose answer for a row depends only on that row's
    value, computed on the distinct values of a text column and broadcast back.

    Exact or nothing: anything unexpected (a numeric column, few repeats, a check that
    answers with a scalar or with NULLs) returns plain ``check(series)``. Null rows, if
    any, are answered by ``check`` on those rows themselves.
    """
    if len(series) < MIN_ROWS or not (is_object_dtype(series) or is_string_dtype(series)):
        return check(series)
    factorized = factorize_exact(series)
    if factorized is None or len(factorized[1]) * 2 > len(series):
        return check(series)
    codes, distinct = factorized
    answers = check(distinct)
    if not _is_row_answer(answers, len(distinct)):
        return check(series)
    out = broadcast(codes, answers.to_numpy(dtype=bool), False)
    nulls = codes == -1
    if nulls.any():
        null_answers = check(series[nulls])
        if not _is_row_answer(null_answers, int(nulls.sum())):
            return check(series)
        out[nulls] = null_answers.to_numpy(dtype=bool)
    return pd.Series(out, index=series.index, name=series.name)


def _is_row_answer(answers: object, rows: int) -> bool:
    return (
        isinstance(answers, pd.Series)
        and len(answers) == rows
        and is_bool_dtype(answers.dtype)
        and not answers.isna().any()
    )


def _per_distinct(check: pa.Check) -> pa.Check:
    """The same check (name, error text, statistics, NA handling), evaluated per distinct
    value. Only for checks pandera marks ``determined_by_unique``, which are vectorized
    (not element-wise) and ungrouped."""
    if not check.determined_by_unique or check.element_wise or check.groupby is not None:
        return check
    original = check._check_fn
    builtin = getattr(original, "__name__", None)
    if builtin is not None and not pa.Check.is_builtin_check(builtin):
        builtin = None

    def per_distinct_fn(data: pd.Series, **kwargs: Any) -> Any:
        # A builtin's dispatcher is looked up at call time, as ``Check.__call__`` does:
        # pandera registers its pandas implementations lazily.
        target = pa.Check.get_builtin_check_fn(builtin) if builtin else original
        return evaluate_per_distinct(lambda values: target(values, **kwargs), data)

    fast = copy.copy(check)
    fast._check_fn = per_distinct_fn
    return fast


@functools.cache
def per_distinct_schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema:
    """``model.to_schema()`` with every column's unique-determined checks evaluated per
    distinct value. Cached: a model's schema is fixed for the life of the process."""
    schema = copy.deepcopy(model.to_schema())
    schema.columns = {
        name: column.set_checks([_per_distinct(c) for c in column.checks])
        for name, column in schema.columns.items()
    }
    return schema
