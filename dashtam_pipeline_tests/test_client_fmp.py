"""FMP client: the recorded payloads parse to the contract's rows, errors classify by body
and status, and the fetch methods send the real paths and parameters."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest, RejectedRecord
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.fmp.client import (
    FMPClient,
    parse_daily_bars,
    parse_earnings,
    parse_fundamentals,
    parse_profile,
    parse_quotes,
)
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.market import (
    DailyBarSchema,
    EarningsSchema,
    FundamentalsSchema,
    QuoteSchema,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.client_helpers import (
    Handler,
    Recorder,
    mock_client,
    offline_settings,
    unused,
)
from dashtam_pipeline_tests.payloads import all_payloads, load_json

KEY = "test-key-123"

#: Shape of ``GET /stable/earnings`` as documented in docs/endpoints.md (no recording of
#: this endpoint exists among the payloads): a future report with null actuals first.
EARNINGS_BODY = [
    {"symbol": "AAPL", "date": "2025-10-30", "epsActual": None, "epsEstimated": 1.77,
     "revenueActual": None, "revenueEstimated": 101719000000, "lastUpdated": "2025-09-23"},
    {"symbol": "AAPL", "date": "2025-07-31", "epsActual": 1.57, "epsEstimated": 1.43,
     "revenueActual": 94036000000, "revenueEstimated": 89212040000,
     "lastUpdated": "2025-08-01"},
]


# -- parsers -----------------------------------------------------------------------------
def test_stable_quote_parses_to_contract_row() -> None:
    frame = parse_quotes(load_json("fmp/stable_quote_AAPL.json"), "fmp")
    QuoteSchema.validate(frame)
    assert list(frame.columns) == column_names(QuoteSchema)
    row = frame.iloc[0]
    assert row["symbol"] == "AAPL"
    assert row["price"] == 254.86
    assert row["open"] == 255.875
    assert (row["day_high"], row["day_low"]) == (257.34, 254.4)
    assert row["previous_close"] == 256.08
    assert row["change"] == -1.22
    assert row["change_pct"] == -0.47641
    assert row["volume"] == 32409702
    assert row["market_cap"] == 3782221795400
    assert row["exchange"] == "NASDAQ"
    assert row["quoted_at"] == pd.Timestamp("2025-09-23 17:23:02", tz="UTC")
    assert row["quote_date"] == dt.date(2025, 9, 23)
    assert row["provider"] == "fmp"
    assert not row["is_stale"]


def test_v3_quote_reads_changes_percentage() -> None:
    frame = parse_quotes(load_json("fmp/v3_quote_AAPL.json"), "sandbox:fmp")
    QuoteSchema.validate(frame)
    row = frame.iloc[0]
    assert row["price"] == 191.31
    assert row["change_pct"] == 0.3514
    assert row["volume"] == 38239545
    assert row["quoted_at"] == pd.Timestamp("2023-11-22 21:00:01", tz="UTC")
    assert row["provider"] == "sandbox:fmp"


def test_quote_date_is_new_york_date_not_utc_date() -> None:
    body = copy.deepcopy(load_json("fmp/stable_quote_AAPL.json"))
    body[0]["timestamp"] = 1758679200  # 2025-09-24 02:00 UTC = 2025-09-23 22:00 New York
    row = parse_quotes(body, "fmp").iloc[0]
    assert row["quoted_at"].date() == dt.date(2025, 9, 24)
    assert row["quote_date"] == dt.date(2025, 9, 23)


def test_unreadable_quote_is_rejected_and_good_rows_kept() -> None:
    good = load_json("fmp/stable_quote_AAPL.json")[0]
    bad = {**good, "symbol": "MSFT", "price": "n/a"}
    rejected: list[RejectedRecord] = []
    frame = parse_quotes([good, bad, "junk"], "fmp", rejected=rejected)
    assert frame["symbol"].tolist() == ["AAPL"]
    assert [r.record for r in rejected] == [bad, "junk"]
    assert "'price'" in rejected[0].reason and "'n/a'" in rejected[0].reason
    assert rejected[0].reason.startswith("fmp quotes:")


def test_quote_body_that_is_not_an_array_is_malformed() -> None:
    with pytest.raises(ProviderError) as caught:
        parse_quotes({"symbol": "AAPL"}, "fmp")
    assert caught.value.kind is ErrorKind.MALFORMED
    assert caught.value.provider == "fmp"
    assert "quotes" in str(caught.value)


def _bar(frame: pd.DataFrame, day: dt.date) -> pd.Series:
    return frame.set_index("date").loc[day]


def test_stable_daily_bars_flat_array() -> None:
    frame = parse_daily_bars(load_json("fmp/stable_historical_price_eod_full_AAPL.json"), "fmp")
    DailyBarSchema.validate(frame)
    assert len(frame) == 6
    assert frame["date"].tolist() == sorted(frame["date"].tolist())
    bar = _bar(frame, dt.date(2023, 1, 3))
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (130.28, 130.9, 124.17, 125.07)
    assert bar["volume"] == 112117500.0
    assert bar["vwap"] == 127.605
    assert bar["symbol"] == "AAPL"


def test_v3_daily_bars_object_with_historical() -> None:
    frame = parse_daily_bars(load_json("fmp/v3_historical_price_full_AAPL.json"), "fmp")
    DailyBarSchema.validate(frame)
    assert len(frame) == 6
    assert set(frame["symbol"]) == {"AAPL"}  # from the body's top-level symbol
    bar = _bar(frame, dt.date(2023, 1, 3))
    assert (bar["open"], bar["close"], bar["vwap"]) == (130.28, 125.07, 126.71)
    assert bar["volume"] == 112117500.0


def test_stable_fundamentals_merge_income_and_balance_sheet() -> None:
    frame = parse_fundamentals(
        load_json("fmp/stable_income_statement_AAPL_annual.json"),
        load_json("fmp/stable_balance_sheet_statement_AAPL_annual.json"),
        "fmp",
    )
    FundamentalsSchema.validate(frame)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["period_end"], row["period"], row["fiscal_year"]) == (
        dt.date(2024, 9, 28), "FY", 2024)
    assert row["reported_currency"] == "USD"
    assert row["filing_date"] == dt.date(2024, 11, 1)
    assert row["revenue"] == 391035000000
    assert row["gross_profit"] == 180683000000
    assert row["operating_income"] == 123216000000
    assert row["net_income"] == 93736000000
    assert (row["eps"], row["eps_diluted"]) == (6.11, 6.08)
    assert row["weighted_shares_diluted"] == 15408095000
    assert row["total_assets"] == 364980000000
    assert row["total_liabilities"] == 308030000000
    assert row["total_equity"] == 56950000000
    assert row["cash_and_equivalents"] == 29943000000


def test_v3_fundamentals_use_legacy_spellings() -> None:
    frame = parse_fundamentals(
        load_json("fmp/v3_income_statement_AAPL_annual.json"),
        load_json("fmp/v3_balance_sheet_statement_AAPL_annual.json"),
        "fmp",
    )
    FundamentalsSchema.validate(frame)
    assert len(frame) == 12
    by_year = frame.set_index("fiscal_year")
    fy2022 = by_year.loc[2022]
    assert fy2022["period_end"] == dt.date(2022, 9, 24)
    assert fy2022["filing_date"] == dt.date(2022, 10, 28)  # fillingDate
    assert fy2022["revenue"] == 394328000000
    assert fy2022["eps_diluted"] == 6.11  # epsdiluted
    assert fy2022["total_assets"] == 352755000000
    assert fy2022["total_equity"] == 50672000000
    fy2011 = by_year.loc[2011]
    assert (fy2011["revenue"], fy2011["eps_diluted"]) == (108249000000, 0.99)
    assert fy2011["filing_date"] == dt.date(2011, 10, 26)


def test_period_missing_from_one_statement_keeps_nulls() -> None:
    income = load_json("fmp/v3_income_statement_AAPL_annual.json")
    balance = load_json("fmp/v3_balance_sheet_statement_AAPL_annual.json")[:2]
    frame = parse_fundamentals(income, balance, "fmp")
    assert len(frame) == 12
    assert frame["total_assets"].notna().sum() == 2
    assert frame["revenue"].notna().all()


def test_earnings_rows_with_null_future_actuals() -> None:
    frame = parse_earnings(EARNINGS_BODY, "fmp")
    EarningsSchema.validate(frame)
    assert frame["report_date"].tolist() == [dt.date(2025, 7, 31), dt.date(2025, 10, 30)]
    past, future = frame.iloc[0], frame.iloc[1]
    assert (past["eps_actual"], past["eps_estimate"]) == (1.57, 1.43)
    assert (past["revenue_actual"], past["revenue_estimate"]) == (94036000000, 89212040000)
    assert pd.isna(future["eps_actual"]) and pd.isna(future["revenue_actual"])
    assert future["eps_estimate"] == 1.77


@pytest.mark.parametrize(
    ("payload", "exchange", "market_cap"),
    [
        ("fmp/stable_profile_AAPL.json", "NASDAQ", 3800327071200),
        ("fmp/v3_profile_AAPL.json", "NASDAQ", 2964510087000),  # exchangeShortName, mktCap
    ],
)
def test_profiles(payload: str, exchange: str, market_cap: float) -> None:
    row = parse_profile(load_json(payload)).iloc[0]
    assert (row["symbol"], row["company_name"], row["currency"]) == ("AAPL", "Apple Inc.", "USD")
    assert row["exchange"] == exchange
    assert row["market_cap"] == market_cap
    assert row["ipo_date"] == dt.date(1980, 12, 12)


# -- classification ----------------------------------------------------------------------
def _client(handler: Handler, **overrides: Any) -> FMPClient:
    settings = offline_settings(
        "fmp", fmp_api_key=KEY, fmp_base_url="https://financialmodelingprep.com/stable",
        **overrides,
    )
    return mock_client(FMPClient, handler, settings)


@pytest.mark.parametrize(
    ("payload", "status", "kind", "retryable"),
    [
        ("fmp/error_401_invalid_api_key.json", 401, ErrorKind.AUTH, False),
        ("fmp/error_403_legacy_endpoint_v3_after_2025-08-31.json", 403,
         ErrorKind.NOT_ENTITLED, False),
        ("fmp/error_429_limit_reach.json", 429, ErrorKind.RATE_LIMITED, True),
        ("fmp/error_429_limit_reach.json", 200, ErrorKind.RATE_LIMITED, True),
        ("fmp/error_401_invalid_api_key.json", 200, ErrorKind.AUTH, False),
    ],
)
def test_classify_error_bodies(
    payload: str, status: int, kind: ErrorKind, retryable: bool
) -> None:
    body = load_json(payload)
    error = _client(unused).classify(httpx.Response(status, json=body), body)
    assert error is not None
    assert (error.provider, error.kind, error.retryable) == ("fmp", kind, retryable)
    assert error.message == body["Error Message"]
    assert ("a retry may help" in str(error)) is retryable


def test_classify_success_bodies_is_none() -> None:
    client = _client(unused)
    for payload in all_payloads("fmp/"):
        if payload.startswith("fmp/error_"):
            continue
        body = load_json(payload, record=False)
        assert client.classify(httpx.Response(200, json=body), body) is None, payload


# -- end to end through a mock transport ---------------------------------------------------
def _quote_for(request: httpx.Request) -> Any:
    symbol = request.url.params["symbol"]
    if symbol == "NOPE":
        return []
    body = copy.deepcopy(load_json("fmp/stable_quote_AAPL.json"))
    body[0]["symbol"] = symbol
    return body


def test_fetch_quotes_sends_fmp_spelling_and_maps_back() -> None:
    recorder = Recorder.by_path({"/stable/quote": _quote_for})
    client = _client(recorder)
    result = client.fetch_quotes(FetchRequest(symbols=("AAPL", "BRK.B", "NOPE")))
    assert [str(r.url) for r in recorder.requests] == [
        f"https://financialmodelingprep.com/stable/quote?symbol={s}&apikey={KEY}"
        for s in ("AAPL", "BRK-B", "NOPE")
    ]
    QuoteSchema.validate(result.frame)
    assert result.frame["symbol"].tolist() == ["AAPL", "BRK.B"]
    assert result.frame["price"].tolist() == [254.86, 254.86]
    assert set(result.frame["provider"]) == {"fmp"}
    assert result.notes == ["fmp: no quote for NOPE (FMP returned [])"]
    assert result.rejected == []


def test_fetch_daily_bars_sends_window() -> None:
    recorder = Recorder.by_path(
        {"/stable/historical-price-eod/full": load_json(
            "fmp/stable_historical_price_eod_full_AAPL.json")}
    )
    result = _client(recorder).fetch_daily_bars(
        FetchRequest(symbols=("AAPL",), start=dt.date(2023, 1, 1), end=dt.date(2023, 1, 10))
    )
    assert recorder.params(0) == {
        "symbol": "AAPL", "from": "2023-01-01", "to": "2023-01-10", "apikey": KEY,
    }
    DailyBarSchema.validate(result.frame)
    assert result.frame.iloc[0]["date"] == dt.date(2023, 1, 3)
    assert result.frame.iloc[0]["close"] == 125.07


def test_fetch_fundamentals_notes_quarterly_refusal_and_keeps_annual() -> None:
    premium = {"Error Message": "Premium Query Parameter: 'period=quarter' is not available "
                                "under your current subscription"}

    def statement(payload: str) -> Callable[[httpx.Request], Any]:
        def answer(request: httpx.Request) -> Any:
            if request.url.params["period"] == "quarter":
                return httpx.Response(402, json=premium)
            return load_json(payload)
        return answer

    recorder = Recorder.by_path({
        "/stable/income-statement": statement("fmp/stable_income_statement_AAPL_annual.json"),
        "/stable/balance-sheet-statement": statement(
            "fmp/stable_balance_sheet_statement_AAPL_annual.json"),
    })
    result = _client(recorder).fetch_fundamentals(FetchRequest(symbols=("AAPL",)))
    assert [(r.url.path, r.url.params["period"]) for r in recorder.requests] == [
        ("/stable/income-statement", "annual"),
        ("/stable/balance-sheet-statement", "annual"),
        ("/stable/income-statement", "quarter"),  # refused once, not retried
    ]
    assert recorder.params(0) == {"symbol": "AAPL", "period": "annual", "limit": "5",
                                  "apikey": KEY}
    FundamentalsSchema.validate(result.frame)
    assert result.frame["revenue"].tolist() == [391035000000]
    assert len(result.notes) == 1 and "quarterly statements for AAPL" in result.notes[0]


def test_fetch_earnings_params() -> None:
    recorder = Recorder.by_path({"/stable/earnings": EARNINGS_BODY})
    result = _client(recorder).fetch_earnings(FetchRequest(symbols=("AAPL",)))
    assert recorder.params(0) == {"symbol": "AAPL", "limit": "12", "apikey": KEY}
    assert len(result.frame) == 2


def test_limit_reach_with_http_200_is_retried_then_raised() -> None:
    recorder = Recorder.by_path({"/stable/quote": load_json("fmp/error_429_limit_reach.json")})
    with pytest.raises(ProviderError) as caught:
        _client(recorder).fetch_quotes(FetchRequest(symbols=("AAPL",)))
    error = caught.value
    assert (error.kind, error.retryable, error.status_code) == (
        ErrorKind.RATE_LIMITED, True, 200)
    assert len(recorder.requests) == 3  # RetryPolicy.attempts
    assert "fmp" in str(error) and "Limit Reach" in str(error)
    assert KEY not in str(error)


def test_invalid_key_is_not_retried_and_never_leaks() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # worst case: the provider echoes the whole request URL, key included
        body = load_json("fmp/error_401_invalid_api_key.json")
        return httpx.Response(401, json={"Error Message": f"{body['Error Message']} "
                                                          f"({request.url})"})

    recorder = Recorder.by_path({"/stable/quote": echo})
    with pytest.raises(ProviderError) as caught:
        _client(recorder).fetch_quotes(FetchRequest(symbols=("AAPL",)))
    assert (caught.value.kind, caught.value.retryable) == (ErrorKind.AUTH, False)
    assert len(recorder.requests) == 1
    assert KEY in str(recorder.requests[0].url)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.args)
    assert "Invalid API KEY" in str(caught.value)


def test_legacy_endpoint_is_not_entitled() -> None:
    recorder = Recorder.by_path({"/stable/earnings": httpx.Response(
        403, content=json.dumps(
            load_json("fmp/error_403_legacy_endpoint_v3_after_2025-08-31.json")))})
    with pytest.raises(ProviderError) as caught:
        _client(recorder).fetch_earnings(FetchRequest(symbols=("AAPL",)))
    assert (caught.value.kind, caught.value.retryable) == (ErrorKind.NOT_ENTITLED, False)
    assert len(recorder.requests) == 1


def test_sandbox_sends_no_key_and_labels_rows() -> None:
    recorder = Recorder.by_path({"/stable/quote": _quote_for})
    settings = load_settings(dashtam_sandbox=True, fmp_api_key=None,
                             fmp_base_url="https://financialmodelingprep.com/stable"
                             ).provider("fmp")
    client = mock_client(FMPClient, recorder, settings)
    result = client.fetch_quotes(FetchRequest(symbols=("MSFT",)))
    assert recorder.params(0) == {"symbol": "MSFT"}
    assert result.frame["provider"].tolist() == ["sandbox:fmp"]
