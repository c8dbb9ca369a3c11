"""Property-based attack on every provider parser (FMP, Polygon, FRED, NewsAPI, Alpaca,
Schwab): malformed, truncated and extreme JSON never escapes as anything but the typed
``ProviderError``, and no infinity survives validation into a frame that lands.

Bodies are built from the recorded payloads (``payloads/``): each example takes one
real body, truncates its lists, and applies a few mutations at random places (a value
replaced by garbage of any JSON type, a key dropped, an object swapped for a scalar, a
list cut short), where garbage includes what ``json.loads`` really produces from hostile
text: ``1e400`` (``inf``), ``NaN``, 400-digit integers, numeric strings such as
``"1e400"``, ``"nan"``, ``"Infinity"``, impossible dates, deep nesting. Whole bodies of
random JSON are tried too.

For parsers of datasets that land, the frame goes through ``validation.validate`` exactly
as ``ingest.land`` does; the rows it keeps must hold no infinity (NaN is the frame's NULL;
the schemas decide where NULL is allowed).

Deterministic for CI: ``derandomize=True`` and no example database, so every run tries
the same examples; about 700 parser calls in all, some 15 s of CPU (the parsers build
pandas frames), with validation run only on frames that hold an infinity.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashtam_pipeline.clients.base import FetchResult
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.providers.alpaca import client as alpaca
from dashtam_pipeline.providers.fmp import client as fmp
from dashtam_pipeline.providers.fred import client as fred
from dashtam_pipeline.providers.newsapi import client as newsapi
from dashtam_pipeline.providers.polygon import client as polygon
from dashtam_pipeline.providers.schwab import client as schwab
from dashtam_pipeline.registry import Dataset, get_dataset_spec
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.validation import validate
from dashtam_pipeline_tests.payloads import load_json

AS_OF = dt.date(2024, 5, 17)
#: Longest list kept from a recorded body before mutating (keeps examples small and fast).
KEEP = 4
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

# -- garbage -------------------------------------------------------------------------------
EXTREME_NUMBERS = st.sampled_from([
    math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, -0.0, 0, -1, 2**53 + 1, 2**63,
    -(2**63) - 1, 2**64, 10**400, -(10**400),
])
HOSTILE_STRINGS = st.sampled_from([
    "", " ", ".", "-", "nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e400",
    "-1e400", "9" * 400, "1e-400", "0x1A", "1,234.56", "$1,234.56", "(12.50)", "--5",
    "2024-13-45", "0000-00-00", "9999-12-31", "10000-01-01", "2024-02-30T25:61:61Z",
    "1970-01-01T00:00:00Z", "-62135596800", "99999999999999999999", "null", "true",
    "\x00", "\ud7ff", "😀" * 3, "A" * 500, "O:", "O:AAPL", "AAPL  241115C", "BRK/B/C",
    "../../etc/passwd", "<script>", "[]", "{}",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), EXTREME_NUMBERS, HOSTILE_STRINGS,
)


def garbage(keys: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON value, nested at most a few levels, with keys the real payload uses (so
    nested garbage lands where parsers look) as well as random ones."""
    names = st.sampled_from(keys) if keys else st.text(max_size=8)
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.one_of(names, st.text(max_size=6)), inner, max_size=4),
        ),
        max_leaves=8,
    )


# -- mutations of a real body --------------------------------------------------------------
def shrink(value: Any, keep: int = KEEP) -> Any:
    """The recorded body with every list cut to ``keep`` items."""
    if isinstance(value, list):
        return [shrink(v, keep) for v in value[:keep]]
    if isinstance(value, dict):
        return {k: shrink(v, keep) for k, v in value.items()}
    return value


def paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*here, index))


def keys_of(value: Any) -> list[str]:
    found: set[str] = set()
    for path in paths(value):
        found.update(p for p in path if isinstance(p, str))
    return sorted(found)


def mutated(seed: Any) -> st.SearchStrategy[Any]:
    """``seed`` (shrunk) with one to three mutations at random paths."""
    base = shrink(seed)
    all_paths = list(paths(base))
    keys = keys_of(base)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        body = copy.deepcopy(base)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            path = draw(st.sampled_from(all_paths))
            operation = draw(st.sampled_from(["replace", "replace", "drop", "truncate",
                                              "scalar"]))
            body = apply(body, path, operation, draw(garbage(keys)))
        return body

    return build()


def apply(body: Any, path: tuple[Any, ...], operation: str, junk: Any) -> Any:
    if not path:
        return junk if operation in ("replace", "scalar") else body
    parent = body
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return body  # an earlier mutation removed this path
    last = path[-1]
    if not isinstance(parent, (dict, list)):
        return body
    try:
        current = parent[last]
    except (KeyError, IndexError, TypeError):
        return body
    if operation == "drop":
        del parent[last]
    elif operation == "truncate" and isinstance(current, (list, str)):
        parent[last] = current[: len(current) // 2]
    elif operation == "scalar":
        parent[last] = junk if not isinstance(junk, (list, dict)) else None
    else:
        parent[last] = junk
    return body


# -- the parsers under attack --------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One parser: how to call it on a body, the recorded bodies it is seeded with, and the
    dataset its frames land in (None: a lookup that does not land)."""

    name: str
    call: Callable[[Any], Any]
    seeds: tuple[str, ...]
    dataset: Dataset | None = None


def frames_of(output: Any) -> list[pd.DataFrame]:
    """The frames a parser returned (alone, in a FetchResult, or in a tuple)."""
    if isinstance(output, pd.DataFrame):
        return [output]
    if isinstance(output, FetchResult):
        return [output.frame]
    if isinstance(output, tuple):
        return [f for item in output for f in frames_of(item)]
    return []


TARGETS = [
    Target("fmp.parse_quotes", lambda b: fmp.parse_quotes(b, "fmp", rejected=[]),
           ("fmp/stable_quote_AAPL.json", "fmp/v3_quote_AAPL.json"), Dataset.QUOTES),
    Target("fmp.parse_daily_bars", lambda b: fmp.parse_daily_bars(b, "fmp", rejected=[]),
           ("fmp/stable_historical_price_eod_full_AAPL.json",
            "fmp/v3_historical_price_full_AAPL.json"), Dataset.DAILY_BARS),
    Target("fmp.parse_fundamentals(income)",
           lambda b: fmp.parse_fundamentals(
               b, load_json("fmp/stable_balance_sheet_statement_AAPL_annual.json",
                            record=False), "fmp", rejected=[]),
           ("fmp/stable_income_statement_AAPL_annual.json",
            "fmp/v3_income_statement_AAPL_annual.json"), Dataset.FUNDAMENTALS),
    Target("fmp.parse_fundamentals(balance)",
           lambda b: fmp.parse_fundamentals(
               load_json("fmp/stable_income_statement_AAPL_annual.json", record=False), b,
               "fmp", rejected=[]),
           ("fmp/stable_balance_sheet_statement_AAPL_annual.json",
            "fmp/v3_balance_sheet_statement_AAPL_annual.json"), Dataset.FUNDAMENTALS),
    Target("fmp.parse_earnings", lambda b: fmp.parse_earnings(b, "fmp", rejected=[]),
           ("inline:earnings",), Dataset.EARNINGS),
    Target("fmp.parse_profile", lambda b: fmp.parse_profile(b, rejected=[]),
           ("fmp/stable_profile_AAPL.json", "fmp/v3_profile_AAPL.json")),
    Target("polygon.parse_daily_bars",
           lambda b: polygon.parse_daily_bars(b, "polygon", rejected=[]),
           ("polygon/aggs_range_1_day_AAPL.json", "polygon/aggs_grouped_us_stocks.json"),
           Dataset.DAILY_BARS),
    Target("polygon.parse_prev_quotes",
           lambda b: polygon.parse_prev_quotes(b, "polygon", rejected=[]),
           ("polygon/aggs_prev_AAPL.json",), Dataset.QUOTES),
    Target("polygon.parse_options_snapshot",
           lambda b: polygon.parse_options_snapshot(b, "polygon", as_of=AS_OF,
                                                    underlying="AAPL", rejected=[]),
           ("polygon/snapshot_options_chain_AAPL.json",
            "polygon/snapshot_option_contract_AAPL.json"), Dataset.OPTIONS_CHAIN),
    Target("polygon.parse_options_contracts",
           lambda b: polygon.parse_options_contracts(b, rejected=[]),
           ("polygon/options_contracts_list.json", "polygon/options_contract_single.json")),
    Target("polygon.parse_last_trade", lambda b: polygon.parse_last_trade(b, rejected=[]),
           ("polygon/last_trade_AAPL.json",)),
    Target("polygon.parse_trades",
           lambda b: polygon.parse_trades(b, symbol="AAPL", rejected=[]),
           ("polygon/trades_v3_AAPL.json",)),
    Target("polygon.parse_last_nbbo", lambda b: polygon.parse_last_nbbo(b, rejected=[]),
           ("polygon/last_nbbo_AAPL.json",)),
    Target("fred.parse_series", fred.parse_series, ("fred/series_GDP.json",),
           Dataset.FRED_SERIES),
    Target("fred.parse_observations", lambda b: fred.parse_observations(b, "GDP"),
           ("fred/series_observations_GDP.json",
            "fred/series_observations_GDP_output_type4_initial_release.json"),
           Dataset.FRED_OBSERVATIONS),
    Target("fred.parse_vintage_dates", fred.parse_vintage_dates,
           ("fred/series_vintagedates_GDP.json",)),
    Target("newsapi.parse_articles",
           lambda b: newsapi.parse_articles(b, query="AAPL", symbol="AAPL",
                                            provider="newsapi"),
           ("newsapi/everything_q_rep_issue_pageSize5_relevancy.json",
            "newsapi/top_headlines_country_us_q_NewYork_pageSize3.json"),
           Dataset.NEWS_ARTICLES),
    Target("alpaca.parse_account",
           lambda b: alpaca.parse_account(b, provider="alpaca", as_of=AS_OF),
           ("alpaca/v2_account_paper_real_2025-11-14.json", "alpaca/docs_example_account.json")),
    Target("alpaca.parse_positions",
           lambda b: alpaca.parse_positions(b, provider="alpaca", account_id="****1234",
                                            as_of=AS_OF),
           ("alpaca/v2_positions_paper_real_2025-11-14.json",), Dataset.POSITIONS),
    Target("alpaca.parse_activities",
           lambda b: alpaca.parse_activities(b, provider="alpaca", account_id="****1234",
                                             account_number="PA3ABCDEF1234"),
           ("alpaca/account_activities_fill_div_anonymized.json",
            "alpaca/account_activities_fill_fee_anonymized.json",
            "alpaca/broker_v1_accounts_activities_page1.json"), Dataset.TRANSACTIONS),
    Target("schwab.parse_accounts",
           lambda b: schwab.parse_accounts(b, provider="schwab", as_of=AS_OF),
           ("schwab/accounts_fields_positions_margin_masked.json",
            "schwab/accounts_fields_positions_margin_option_position.json"),
           Dataset.POSITIONS),
    Target("schwab.parse_transactions",
           lambda b: schwab.parse_transactions(b, provider="schwab",
                                               account_number="15011495"),
           ("schwab/transactions_types_TRADE_options_2024-05.json",
            "schwab/transaction_single_option_trade_HIMS.json"), Dataset.TRANSACTIONS),
    Target("schwab.parse_account_numbers", schwab.parse_account_numbers,
           ("schwab/accountNumbers_SHAPE_ONLY_test_mock.json",)),
]

INLINE_SEEDS: dict[str, Any] = {
    # FMP's /stable/earnings shape (no recorded payload): actuals, estimates, a future row
    "inline:earnings": [
        {"symbol": "AAPL", "date": "2024-05-02", "epsActual": 1.53, "epsEstimated": 1.5,
         "revenueActual": 90753000000, "revenueEstimated": 90300000000,
         "lastUpdated": "2024-05-03"},
        {"symbol": "AAPL", "date": "2024-08-01", "epsActual": None, "epsEstimated": 1.35,
         "revenueActual": None, "revenueEstimated": 84400000000},
    ],
}


def seed_body(name: str) -> Any:
    return copy.deepcopy(INLINE_SEEDS[name]) if name.startswith("inline:") else load_json(
        name, record=False)


def attack(target: Target, body: Any) -> None:
    """The property: the parser returns or raises ``ProviderError``; what would land holds
    no infinity after validation."""
    try:
        output = target.call(body)
    except ProviderError:
        return
    if target.dataset is None:
        return
    for frame in frames_of(output):
        if not infinities(frame):
            continue  # validation only removes rows: nothing infinite can land
        dataset = _dataset_of(frame, target.dataset)
        table = get_dataset_spec(dataset).table
        result = validate(SCHEMAS[dataset], frame, provider="fuzz", table=table)
        found = infinities(result.valid)
        if found:
            pytest.fail(f"{target.name} → {table}: would land {found}")


def _dataset_of(frame: pd.DataFrame, default: Dataset) -> Dataset:
    """Schwab's ``parse_accounts`` returns accounts and positions: tell them apart."""
    if default is Dataset.POSITIONS and "symbol" not in frame.columns:
        return Dataset.ACCOUNTS
    return default


def infinities(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    """``(column, value)`` of every infinity in the frame (numeric or object columns)."""
    found: list[tuple[str, Any]] = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_float_dtype(values.dtype):
            found += [(column, v) for v in values[values.isin([math.inf, -math.inf])]]
        elif values.dtype == object:
            found += [(column, v) for v in values
                      if isinstance(v, float) and math.isinf(v)]
    return found


# -- the tests -----------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_mutated_real_payloads(target: Target) -> None:
    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        seed = data.draw(st.sampled_from(target.seeds))
        attack(target, data.draw(mutated(seed_body(seed))))

    run()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_whole_bodies_of_garbage(target: Target) -> None:
    keys = sorted({k for seed in target.seeds for k in keys_of(shrink(seed_body(seed)))})

    @settings(FUZZ, max_examples=10)
    @given(body=garbage(keys))
    def run(body: Any) -> None:
        attack(target, body)

    run()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_field_set_to_infinity_never_lands(target: Target) -> None:
    """Deterministic and exhaustive over one record: each numeric-looking field of the
    first record, in turn, becomes ``inf`` (what ``1e400`` decodes to), ``"-1e400"`` and
    ``nan``."""
    base = shrink(seed_body(target.seeds[0]), keep=1)
    for path in paths(base):
        if not path:
            continue
        holder = base
        for step in path[:-1]:
            holder = holder[step]
        current = holder[path[-1]]
        if isinstance(current, bool) or not isinstance(current, (int, float, str)):
            continue
        if isinstance(current, str):
            try:
                float(current)
            except ValueError:
                continue
        for hostile in (math.inf, "-1e400", math.nan):
            attack(target, apply(copy.deepcopy(base), path, "replace", hostile))
