"""Financial Modeling Prep: quotes, daily bars, fundamentals and earnings.

FMP has two APIs with different field names for the same values: the ``stable`` API (the
default base URL; the only one that accepts keys made after 2025-08-31) and the legacy
``/api/v3``. The parsers accept both spellings, so a recorded v3 body or a legacy key
still yields the contract's columns. FMP reports errors as ``{"Error Message": "..."}``,
sometimes with HTTP 200 (a quota "Limit Reach"), so ``classify`` reads the body as well
as the status.

Parsing is done by the module-level ``parse_*`` functions (pure: body in, DataFrame out);
records they cannot read are appended to an optional ``rejected`` list with the reason,
so the asset can quarantine them while the good rows land.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.clients.records import (
    Record,
    build_rows,
    concat_frames,
    epoch_instant,
    integer,
    number,
    required,
    typed_frame,
)
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.schemas.market import (
    DailyBarSchema,
    EarningsSchema,
    FundamentalsSchema,
    QuoteSchema,
)
from dashtam_pipeline.symbols import to_canonical, to_provider

PROVIDER = ProviderSlug.FMP.value
NEW_YORK = ZoneInfo("America/New_York")
#: Statements asked per period type; the free plan caps ``limit`` at 5.
STATEMENT_LIMIT = 5
EARNINGS_LIMIT = 12


# -- value conversion ------------------------------------------------------------------
def _date(record: Record, *keys: str) -> dt.date | None:
    """The first present key as a date; FMP dates are ``YYYY-MM-DD`` (sometimes with a time)."""
    for key in keys:
        value = record.get(key)
        if value is None or value == "":
            continue
        try:
            return dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            raise ValueError(f"field {key!r}: {value!r} is not a date") from None
    return None


def _text(record: Record, *keys: str) -> str | None:
    for key in keys:
        value = record.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None




def _symbol(record: Record, fallback: str | None) -> str:
    """Canonical symbol of a record (``BRK-B`` → ``BRK.B``), or the one that was asked for."""
    return to_canonical(required(_text(record, "symbol") or fallback, "symbol"))


# -- shape helpers -----------------------------------------------------------------------
def _records(body: Any, dataset: str) -> list[Any]:
    """The list of records of a body; anything else is a malformed answer."""
    if body is None:
        return []
    if isinstance(body, list):
        return body
    raise ProviderError(
        PROVIDER, ErrorKind.MALFORMED,
        f"{dataset}: expected a JSON array, got {type(body).__name__}",
    )

def _rows(
    body: Any,
    build: Callable[[Record], dict[str, Any]],
    dataset: str,
    rejected: list[RejectedRecord] | None,
) -> list[dict[str, Any]]:
    """One row per record of ``body`` (see ``records.build_rows``); a record that cannot
    be read is rejected as ``{PROVIDER} <dataset>: <reason>``, not fatal."""
    return build_rows(_records(body, dataset), build, f"{PROVIDER} {dataset}", rejected)






# -- parsers -----------------------------------------------------------------------------
def parse_quotes(
    body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/quote`` (stable) or ``/api/v3/quote`` body → ``QuoteSchema`` rows.

    ``timestamp`` is Unix seconds; ``quote_date`` is its New York calendar date.
    """

    def build(record: Record) -> dict[str, Any]:
        quoted_at = epoch_instant(required(record.get("timestamp"), "timestamp"), "s",
                                  "timestamp")
        return {
            "symbol": _symbol(record, symbol),
            "quote_date": quoted_at.tz_convert(NEW_YORK).date(),
            "price": required(number(record, "price"), "price"),
            "open": number(record, "open"),
            "day_high": number(record, "dayHigh"),
            "day_low": number(record, "dayLow"),
            "previous_close": number(record, "previousClose"),
            "change": number(record, "change"),
            "change_pct": number(record, "changePercentage", "changesPercentage"),
            "volume": integer(record, "volume"),
            "market_cap": number(record, "marketCap"),
            "exchange": _text(record, "exchange"),
            "quoted_at": quoted_at,
            "provider": provider_label,
            "is_stale": False,
        }

    rows = _rows(body, build, "quotes", rejected)
    return typed_frame(QuoteSchema, rows)


def parse_daily_bars(
    body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/historical-price-eod/full`` (a flat array) or v3 ``/historical-price-full``
    (``{symbol, historical: [...]}``) → ``DailyBarSchema`` rows, oldest first."""
    if isinstance(body, Mapping):
        symbol = _text(body, "symbol") or symbol
        body = body.get("historical", [])

    def build(record: Record) -> dict[str, Any]:
        return {
            "symbol": _symbol(record, symbol),
            "date": required(_date(record, "date"), "date"),
            "open": required(number(record, "open"), "open"),
            "high": required(number(record, "high"), "high"),
            "low": required(number(record, "low"), "low"),
            "close": required(number(record, "close"), "close"),
            "volume": number(record, "volume"),
            "vwap": number(record, "vwap"),
            "provider": provider_label,
        }

    rows = _rows(body, build, "daily_bars", rejected)
    rows.sort(key=lambda row: (row["symbol"], row["date"]))
    return typed_frame(DailyBarSchema, rows)


def _income_fields(record: Record) -> dict[str, Any]:
    return {
        "revenue": number(record, "revenue"),
        "gross_profit": number(record, "grossProfit"),
        "operating_income": number(record, "operatingIncome"),
        "net_income": number(record, "netIncome"),
        "eps": number(record, "eps"),
        "eps_diluted": number(record, "epsDiluted", "epsdiluted"),
        "weighted_shares_diluted": number(record, "weightedAverageShsOutDil"),
    }


def _balance_fields(record: Record) -> dict[str, Any]:
    return {
        "total_assets": number(record, "totalAssets"),
        "total_liabilities": number(record, "totalLiabilities"),
        "total_equity": number(record, "totalStockholdersEquity", "totalEquity"),
        "cash_and_equivalents": number(record, "cashAndCashEquivalents"),
    }


def parse_fundamentals(
    income_body: Any,
    balance_body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """Income statements + balance sheets → ``FundamentalsSchema`` rows, one per
    (symbol, period end, period). A period present in only one statement keeps nulls for
    the other's lines rather than being dropped."""
    merged: dict[tuple[str, dt.date, str], dict[str, Any]] = {}

    def collect(lines: Callable[[Record], dict[str, Any]]) -> Callable[[Record], dict]:
        def build(record: Record) -> dict[str, Any]:
            # read everything first: a record rejected half-way leaves no partial row
            key = (
                _symbol(record, symbol),
                required(_date(record, "date"), "date"),
                required(_text(record, "period"), "period").upper(),
            )
            shared = {
                "fiscal_year": integer(record, "fiscalYear", "calendarYear"),
                "reported_currency": _text(record, "reportedCurrency"),
                "filing_date": _date(record, "filingDate", "fillingDate"),
            }
            values = lines(record)
            row = merged.setdefault(key, {
                "symbol": key[0], "period_end": key[1], "period": key[2],
                "provider": provider_label,
            })
            row.update({k: v for k, v in shared.items() if row.get(k) is None})
            row.update(values)
            return row

        return build

    _rows(income_body, collect(_income_fields), "fundamentals", rejected)
    _rows(balance_body, collect(_balance_fields), "fundamentals", rejected)
    rows = [merged[key] for key in sorted(merged)]
    return typed_frame(FundamentalsSchema, rows)


def parse_earnings(
    body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/earnings`` → ``EarningsSchema`` rows. Future reports carry null actuals.
    The legacy earnings calendar's ``eps``/``revenue`` spellings are accepted too."""

    def build(record: Record) -> dict[str, Any]:
        return {
            "symbol": _symbol(record, symbol),
            "report_date": required(_date(record, "date"), "date"),
            "eps_actual": number(record, "epsActual", "eps"),
            "eps_estimate": number(record, "epsEstimated"),
            "revenue_actual": number(record, "revenueActual", "revenue"),
            "revenue_estimate": number(record, "revenueEstimated"),
            "provider": provider_label,
        }

    rows = _rows(body, build, "earnings", rejected)
    rows.sort(key=lambda row: (row["symbol"], row["report_date"]))
    return typed_frame(EarningsSchema, rows)


PROFILE_COLUMNS = ["symbol", "company_name", "exchange", "currency", "market_cap", "sector",
                   "industry", "country", "ipo_date", "is_etf", "is_actively_trading"]


def parse_profile(body: Any, *, rejected: list[RejectedRecord] | None = None) -> pd.DataFrame:
    """``/profile`` (stable) or v3 ``/profile/{symbol}`` → company reference data.

    Not a warehouse dataset: it serves lookups such as an exchange or market cap missing
    from a quote. v3 spells market cap ``mktCap`` and puts the short exchange code in
    ``exchangeShortName`` (its ``exchange`` is the long name).
    """

    def build(record: Record) -> dict[str, Any]:
        return {
            "symbol": _symbol(record, None),
            "company_name": _text(record, "companyName"),
            "exchange": _text(record, "exchangeShortName", "exchange"),
            "currency": _text(record, "currency"),
            "market_cap": number(record, "marketCap", "mktCap"),
            "sector": _text(record, "sector"),
            "industry": _text(record, "industry"),
            "country": _text(record, "country"),
            "ipo_date": _date(record, "ipoDate"),
            "is_etf": record.get("isEtf"),
            "is_actively_trading": record.get("isActivelyTrading"),
        }

    rows = _rows(body, build, "profile", rejected)
    return pd.DataFrame.from_records(rows, columns=PROFILE_COLUMNS)


# -- errors ------------------------------------------------------------------------------
_NOT_ENTITLED_TEXT = ("legacy endpoint", "exclusive endpoint", "restricted endpoint",
                      "premium", "not available under your current subscription")


def classify_fmp_error(status_code: int, body: Any) -> ProviderError | None:
    """The error an FMP answer carries, from its ``Error Message`` text first and its HTTP
    status second: a quota message is RATE_LIMITED whether it came with 429 or 200."""
    message = ""
    if isinstance(body, Mapping):
        message = str(body.get("Error Message") or body.get("error") or "").strip()
    if not message and status_code < 400:
        return None
    text = message.lower()
    if "limit reach" in text or status_code == 429:
        kind, retryable = ErrorKind.RATE_LIMITED, True
    elif any(marker in text for marker in _NOT_ENTITLED_TEXT) or status_code in (402, 403):
        kind, retryable = ErrorKind.NOT_ENTITLED, False
    elif "invalid api key" in text or status_code == 401:
        kind, retryable = ErrorKind.AUTH, False
    elif status_code >= 500:
        kind, retryable = ErrorKind.UNAVAILABLE, True
    elif status_code == 404:
        kind, retryable = ErrorKind.NOT_FOUND, False
    else:
        kind, retryable = ErrorKind.BAD_REQUEST, False
    return ProviderError(
        PROVIDER, kind, message[:300] or f"HTTP {status_code} without an error message",
        status_code=status_code, retryable=retryable,
    )


# -- the client --------------------------------------------------------------------------
class FMPClient(ProviderClient):
    """FMP over the shared HTTP layer; one request per symbol (the free plan refuses
    comma-separated batches), symbols sent in FMP's spelling (``BRK-B``)."""

    slug = ProviderSlug.FMP

    def auth_params(self) -> dict[str, str]:
        key = self.settings.secret("fmp_api_key")
        return {"apikey": key} if key else {}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_fmp_error(response.status_code, body)

    def _get(self, path: str, symbol: str, **params: Any) -> Any:
        return self.http.get_json(path, {"symbol": to_provider(symbol, self.slug), **params})

    def fetch_quotes(self, request: FetchRequest) -> FetchResult:
        result = FetchResult(typed_frame(QuoteSchema))
        frames = []
        for symbol in request.symbols:
            body = self._get("/quote", symbol)
            if not body:
                result.notes.append(f"{PROVIDER}: no quote for {symbol} (FMP returned [])")
                continue
            frames.append(parse_quotes(body, self.provider_label, symbol=symbol,
                                       rejected=result.rejected))
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_daily_bars(self, request: FetchRequest) -> FetchResult:
        result = FetchResult(typed_frame(DailyBarSchema))
        frames = []
        for symbol in request.symbols:
            body = self._get("/historical-price-eod/full", symbol,
                             **{"from": _iso(request.start), "to": _iso(request.end)})
            frame = parse_daily_bars(body, self.provider_label, symbol=symbol,
                                     rejected=result.rejected)
            if frame.empty:
                result.notes.append(f"{PROVIDER}: no daily bars for {symbol} "
                                    f"{_iso(request.start)}..{_iso(request.end)}")
            frames.append(frame)
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_fundamentals(self, request: FetchRequest) -> FetchResult:
        """Annual and quarterly statements. Quarterly data is a paid feature on some plans:
        when FMP refuses it, the annual rows still land and the refusal is noted."""
        result = FetchResult(typed_frame(FundamentalsSchema))
        frames = []
        for symbol in request.symbols:
            for period in ("annual", "quarter"):
                try:
                    income = self._get("/income-statement", symbol, period=period,
                                       limit=STATEMENT_LIMIT)
                    balance = self._get("/balance-sheet-statement", symbol, period=period,
                                        limit=STATEMENT_LIMIT)
                except ProviderError as error:
                    if period == "quarter" and error.kind is ErrorKind.NOT_ENTITLED:
                        result.notes.append(f"{PROVIDER}: quarterly statements for {symbol} "
                                            f"not in this plan ({error.message})")
                        continue
                    raise
                frames.append(parse_fundamentals(income, balance, self.provider_label,
                                                 symbol=symbol, rejected=result.rejected))
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_earnings(self, request: FetchRequest) -> FetchResult:
        result = FetchResult(typed_frame(EarningsSchema))
        frames = []
        for symbol in request.symbols:
            body = self._get("/earnings", symbol, limit=EARNINGS_LIMIT)
            frames.append(parse_earnings(body, self.provider_label, symbol=symbol,
                                         rejected=result.rejected))
        result.frame = concat_frames(frames, result.frame)
        return result


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None

