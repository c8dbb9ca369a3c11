"""Polygon.io (Massive): the fallback for quotes and daily bars, and the options chain.

Polygon's quirks, handled here once: aggregate timestamps ``t`` are Unix **milliseconds**,
trade and quote timestamps are Unix **nanoseconds** (too large for a float64 to hold, so
they are converted with integer arithmetic), option tickers carry an ``O:`` prefix, list
endpoints paginate with an absolute ``next_url`` that does not carry the key, and errors
come as ``{"status": "ERROR", "error": ...}`` or ``{"status": "NOT_AUTHORIZED",
"message": ...}``, an ``ERROR`` status being an error even with HTTP 200.

Parsing is done by the module-level ``parse_*`` functions (pure: body in, DataFrame out);
records they cannot read go to an optional ``rejected`` list with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pandas as pd

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.clients.records import (
    Record,
    build_rows,
    concat_frames,
    epoch_instant,
    number,
    required,
    typed_frame,
)
from dashtam_pipeline.errors import ErrorKind, ProviderError, error_for_status
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.schemas.market import DailyBarSchema, OptionContractSchema, QuoteSchema
from dashtam_pipeline.symbols import to_canonical, to_provider

PROVIDER = ProviderSlug.POLYGON.value
NEW_YORK = ZoneInfo("America/New_York")
OPTION_PREFIX = "O:"
#: Guard against a provider that keeps answering with a ``next_url`` (a cursor loop).
MAX_PAGES = 200
SNAPSHOT_PAGE_SIZE = 250
AGGS_PAGE_SIZE = 50000


# -- value conversion ------------------------------------------------------------------


def ms_to_timestamp(value: Any, name: str = "t") -> pd.Timestamp:
    """Unix milliseconds (aggregates' ``t``) → UTC timestamp; a count outside 1900..2199
    is a ``ValueError`` naming the field (``records.epoch_instant``, the shared guard)."""
    return epoch_instant(value, "ms", name)


def ns_to_timestamp(value: Any, name: str = "t") -> pd.Timestamp:
    """Unix nanoseconds (trades, quotes, snapshots) → UTC timestamp, exact to the ns
    (JSON integers stay exact; a float only when whole)."""
    return epoch_instant(value, "ns", name)


def _optional_ns(record: Record, key: str) -> pd.Timestamp | None:
    value = record.get(key)
    return None if value is None else ns_to_timestamp(value, key)


def ny_date(timestamp: pd.Timestamp) -> dt.date:
    """The America/New_York calendar date of an instant: the exchange's trading date."""
    return timestamp.tz_convert(NEW_YORK).date()


def today_in_new_york() -> dt.date:
    return dt.datetime.now(NEW_YORK).date()


def occ_contract(ticker: str) -> str:
    """``O:AAPL230616C00150000`` (or the space-padded OCC form) → ``AAPL230616C00150000``."""
    text = ticker.strip().upper()
    if text.startswith(OPTION_PREFIX):
        text = text[len(OPTION_PREFIX):]
    return text.replace(" ", "")


# -- shape helpers -----------------------------------------------------------------------
def _results(body: Any, dataset: str) -> list[Any]:
    """``results`` of a body as a list (single-object endpoints wrap into one); a body that
    is not an object is a malformed answer, a missing ``results`` an empty one."""
    if body is None:
        return []
    if not isinstance(body, Mapping):
        raise ProviderError(
            PROVIDER, ErrorKind.MALFORMED,
            f"{dataset}: expected a JSON object, got {type(body).__name__}",
        )
    results = body.get("results")
    if results is None:
        return []
    return [results] if isinstance(results, Mapping) else list(results)

def _rows(
    body: Any,
    build: Callable[[Record], dict[str, Any]],
    dataset: str,
    rejected: list[RejectedRecord] | None,
) -> list[dict[str, Any]]:
    """One row per record of ``body`` (see ``records.build_rows``); a record that cannot
    be read is rejected as ``{PROVIDER} <dataset>: <reason>``, not fatal."""
    return build_rows(_results(body, dataset), build, f"{PROVIDER} {dataset}", rejected)






# -- aggregates --------------------------------------------------------------------------
AGGS_COLUMNS = ["symbol", "timestamp", "date", "open", "high", "low", "close", "volume",
                "vwap", "transactions"]


def _agg_rows(
    body: Any, symbol: str | None, rejected: list[RejectedRecord] | None
) -> list[dict[str, Any]]:
    ticker = body.get("ticker") if isinstance(body, Mapping) else None

    def build(record: Record) -> dict[str, Any]:
        timestamp = ms_to_timestamp(record.get("t"))
        name = required(record.get("T") or ticker or symbol, "T")
        return {
            "symbol": to_canonical(str(name)),
            "timestamp": timestamp,
            "date": ny_date(timestamp),
            "open": number(record, "o"),
            "high": number(record, "h"),
            "low": number(record, "l"),
            "close": number(record, "c"),
            "volume": number(record, "v"),
            "vwap": number(record, "vw"),
            "transactions": number(record, "n"),
        }

    return _rows(body, build, "aggregates", rejected)


def parse_aggs(
    body: Any, *, symbol: str | None = None, rejected: list[RejectedRecord] | None = None
) -> pd.DataFrame:
    """Any aggregates body (``/range``, ``/prev``, ``/grouped``) → one row per bar.

    The symbol is the bar's ``T`` (grouped, prev), else the body's ``ticker`` (range), else
    the one asked for. ``date`` is the New York date of ``t`` (ms): Polygon stamps daily
    bars at midnight New York time.
    """
    return pd.DataFrame.from_records(_agg_rows(body, symbol, rejected), columns=AGGS_COLUMNS)


def parse_daily_bars(
    body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/v2/aggs/ticker/{T}/range/1/day/...`` → ``DailyBarSchema`` rows, oldest first."""
    rows = [{**bar, "provider": provider_label} for bar in _agg_rows(body, symbol, rejected)]
    rows.sort(key=lambda row: (row["symbol"], row["date"]))
    return typed_frame(DailyBarSchema, rows)


def parse_prev_quotes(
    body: Any,
    provider_label: str,
    *,
    symbol: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/v2/aggs/ticker/{T}/prev`` → ``QuoteSchema`` rows: the previous session's bar as
    a quote. Polygon's bar has no previous close, change, market cap or exchange."""
    rows = [
        {
            "symbol": bar["symbol"],
            "quote_date": bar["date"],
            "price": bar["close"],
            "open": bar["open"],
            "day_high": bar["high"],
            "day_low": bar["low"],
            "previous_close": None,
            "change": None,
            "change_pct": None,
            # as sent: a fraction is quarantined by validation, never rounded into BIGINT
            "volume": bar["volume"],
            "market_cap": None,
            "exchange": None,
            "quoted_at": bar["timestamp"],
            "provider": provider_label,
            "is_stale": False,
        }
        for bar in _agg_rows(body, symbol, rejected)
    ]
    return typed_frame(QuoteSchema, rows)


# -- options -----------------------------------------------------------------------------
def parse_options_snapshot(
    body: Any,
    provider_label: str,
    *,
    as_of: dt.date,
    underlying: str | None = None,
    rejected: list[RejectedRecord] | None = None,
) -> pd.DataFrame:
    """``/v3/snapshot/options/{underlying}`` (a list) or ``.../{underlying}/{contract}``
    (one object) → ``OptionContractSchema`` rows for the trading date ``as_of``.

    ``last_price`` is the session close, or the last trade when the day has no close yet.
    """

    def build(record: Record) -> dict[str, Any]:
        details = record.get("details") or {}
        day = record.get("day") or {}
        greeks = record.get("greeks") or {}
        asset = record.get("underlying_asset") or {}
        contract = occ_contract(str(required(details.get("ticker"), "details.ticker")))
        expiration = required(details.get("expiration_date"), "details.expiration_date")
        last_price = number(day, "close")
        if last_price is None:
            last_price = number(record.get("last_trade"), "price")
        return {
            "contract": contract,
            "underlying": to_canonical(
                str(required(asset.get("ticker") or underlying, "underlying_asset.ticker"))
            ),
            "contract_type": str(
                required(details.get("contract_type"), "details.contract_type")
            ).lower(),
            "strike": required(number(details, "strike_price"), "details.strike_price"),
            "expiration": _iso_date(expiration, "details.expiration_date"),
            "as_of_date": as_of,
            "volume": number(day, "volume"),
            "open_interest": number(record, "open_interest"),
            "implied_volatility": number(record, "implied_volatility"),
            "delta": number(greeks, "delta"),
            "gamma": number(greeks, "gamma"),
            "theta": number(greeks, "theta"),
            "vega": number(greeks, "vega"),
            "last_price": last_price,
            "provider": provider_label,
        }

    rows = _rows(body, build, "options_chain", rejected)
    rows.sort(key=lambda row: row["contract"])
    return typed_frame(OptionContractSchema, rows)


def _iso_date(value: Any, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"field {name!r}: {value!r} is not a date") from None


OPTION_CONTRACT_COLUMNS = ["contract", "underlying", "contract_type", "strike", "expiration",
                           "exercise_style", "shares_per_contract", "primary_exchange"]


def parse_options_contracts(
    body: Any, *, rejected: list[RejectedRecord] | None = None
) -> pd.DataFrame:
    """``/v3/reference/options/contracts`` (a list) or ``.../contracts/{ticker}`` (one
    object) → reference rows: which contracts exist, not their prices."""

    def build(record: Record) -> dict[str, Any]:
        return {
            "contract": occ_contract(str(required(record.get("ticker"), "ticker"))),
            "underlying": to_canonical(
                str(required(record.get("underlying_ticker"), "underlying_ticker"))
            ),
            "contract_type": str(required(record.get("contract_type"), "contract_type")),
            "strike": required(number(record, "strike_price"), "strike_price"),
            "expiration": _iso_date(record.get("expiration_date"), "expiration_date"),
            "exercise_style": record.get("exercise_style"),
            "shares_per_contract": number(record, "shares_per_contract"),
            "primary_exchange": record.get("primary_exchange"),
        }

    rows = _rows(body, build, "options_contracts", rejected)
    return pd.DataFrame.from_records(rows, columns=OPTION_CONTRACT_COLUMNS)


# -- trades and quotes (ns timestamps) ----------------------------------------------------
TRADE_COLUMNS = ["symbol", "price", "size", "exchange", "conditions", "trade_id",
                 "sip_timestamp", "participant_timestamp", "trf_timestamp"]
NBBO_COLUMNS = ["symbol", "bid", "bid_size", "bid_exchange", "ask", "ask_size",
                "ask_exchange", "sip_timestamp", "participant_timestamp"]


def _ns_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A frame whose ``*_timestamp`` columns stay ``datetime64[ns, UTC]`` (no rounding)."""
    frame = pd.DataFrame.from_records(rows, columns=columns)
    stamps = {c: "datetime64[ns, UTC]" for c in columns if c.endswith("_timestamp")}
    return frame.astype(stamps)


def _trade_row(
    record: Record, symbol: str, *, price: str, size: str, exchange: str, conditions: str,
    trade_id: str, sip: str, participant: str, trf: str,
) -> dict[str, Any]:
    """One trade row; the keyword arguments name the record's keys, which v2 spells with
    single letters and v3 spells out."""
    return {
        "symbol": to_canonical(symbol),
        "price": required(number(record, price), price),
        "size": number(record, size),
        "exchange": record.get(exchange),
        "conditions": list(record.get(conditions) or []),
        "trade_id": record.get(trade_id),
        "sip_timestamp": ns_to_timestamp(record.get(sip), sip),
        "participant_timestamp": _optional_ns(record, participant),
        "trf_timestamp": _optional_ns(record, trf),
    }


def parse_last_trade(
    body: Any, *, symbol: str | None = None, rejected: list[RejectedRecord] | None = None
) -> pd.DataFrame:
    """``/v2/last/trade/{T}`` → one trade row. Single-letter keys: ``t`` SIP time, ``y``
    participant time, ``f`` TRF time (all ns), ``c`` condition codes, ``i`` trade id."""

    def build(record: Record) -> dict[str, Any]:
        return _trade_row(
            record, str(required(record.get("T") or symbol, "T")), price="p", size="s",
            exchange="x", conditions="c", trade_id="i", sip="t", participant="y", trf="f",
        )

    return _ns_frame(_rows(body, build, "last_trade", rejected), TRADE_COLUMNS)


def parse_trades(
    body: Any, *, symbol: str, rejected: list[RejectedRecord] | None = None
) -> pd.DataFrame:
    """``/v3/trades/{T}`` → trade rows (v3 spells the fields out; the ticker is only in
    the request, hence ``symbol``)."""

    def build(record: Record) -> dict[str, Any]:
        return _trade_row(
            record, symbol, price="price", size="size", exchange="exchange",
            conditions="conditions", trade_id="id", sip="sip_timestamp",
            participant="participant_timestamp", trf="trf_timestamp",
        )

    return _ns_frame(_rows(body, build, "trades", rejected), TRADE_COLUMNS)


def parse_last_nbbo(
    body: Any, *, symbol: str | None = None, rejected: list[RejectedRecord] | None = None
) -> pd.DataFrame:
    """``/v2/last/nbbo/{T}`` → one row: ``p``/``s``/``x`` bid, ``P``/``S``/``X`` ask."""

    def build(record: Record) -> dict[str, Any]:
        return {
            "symbol": to_canonical(str(required(record.get("T") or symbol, "T"))),
            "bid": number(record, "p"),
            "bid_size": number(record, "s"),
            "bid_exchange": record.get("x"),
            "ask": number(record, "P"),
            "ask_size": number(record, "S"),
            "ask_exchange": record.get("X"),
            "sip_timestamp": ns_to_timestamp(record.get("t"), "t"),
            "participant_timestamp": _optional_ns(record, "y"),
        }

    return _ns_frame(_rows(body, build, "last_nbbo", rejected), NBBO_COLUMNS)


# -- errors ------------------------------------------------------------------------------
def classify_polygon_error(status_code: int, body: Any) -> ProviderError | None:
    """The error a Polygon answer carries. ``NOT_AUTHORIZED`` means the plan lacks the
    data (not a bad key); ``ERROR`` is a rate limit, an unknown key or a bad request,
    told apart by status and text, and is an error even with HTTP 200."""
    status = str(body.get("status") or "").upper() if isinstance(body, Mapping) else ""
    if status not in ("ERROR", "NOT_AUTHORIZED") and status_code < 400:
        return None
    message = ""
    if isinstance(body, Mapping):
        message = str(body.get("error") or body.get("message") or "").strip()
    text = message.lower()
    if status_code == 429 or "exceeded the maximum requests" in text:
        kind = ErrorKind.RATE_LIMITED
    elif status_code == 401 or "api key" in text:
        kind = ErrorKind.AUTH
    elif status == "NOT_AUTHORIZED" or status_code == 403:
        kind = ErrorKind.NOT_ENTITLED
    elif status_code >= 400:
        kind = error_for_status(status_code)
    else:
        kind = ErrorKind.BAD_REQUEST
    return ProviderError(
        PROVIDER, kind, message[:300] or f"HTTP {status_code} with status {status or 'none'}",
        status_code=status_code,
    )


# -- the client --------------------------------------------------------------------------
class PolygonClient(ProviderClient):
    """Polygon over the shared HTTP layer; follows ``next_url`` cursors with the key."""

    slug = ProviderSlug.POLYGON

    def auth_params(self) -> dict[str, str]:
        key = self.settings.secret("polygon_api_key")
        return {"apiKey": key} if key else {}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_polygon_error(response.status_code, body)

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """Every page of a cursor-paginated endpoint.

        ``next_url`` is absolute and carries its cursor in the query. It is split into path
        and parameters so the shared layer adds the key to them (httpx replaces, rather than
        merges, a URL's query when given parameters), and re-rooted on the configured base
        URL so a proxy or the sandbox keeps serving the following pages.
        """
        url, query = path, dict(params)
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self.http.get_json(url, query)
            yield body
            next_url = body.get("next_url") if isinstance(body, Mapping) else None
            if not next_url or next_url in seen:
                return
            seen.add(next_url)
            url, query = self._split_next_url(str(next_url))
        raise self.malformed(f"more than {MAX_PAGES} pages from {path}: stopped following "
                             "next_url", endpoint=path)

    def _split_next_url(self, next_url: str) -> tuple[str, dict[str, str]]:
        parts = urlsplit(next_url)
        base = urlsplit(self.settings.base_url)
        query = {k: v for k, v in parse_qsl(parts.query) if k != "apiKey"}
        if parts.netloc and parts.netloc != base.netloc:
            return parts.path, query  # appended to the configured base URL
        return parts._replace(query="", fragment="").geturl(), query

    def fetch_quotes(self, request: FetchRequest) -> FetchResult:
        result = FetchResult(typed_frame(QuoteSchema))
        frames = []
        for symbol in request.symbols:
            ticker = to_provider(symbol, self.slug)
            body = self.http.get_json(f"/v2/aggs/ticker/{ticker}/prev", {"adjusted": "true"})
            frame = parse_prev_quotes(body, self.provider_label, symbol=symbol,
                                      rejected=result.rejected)
            if frame.empty:
                result.notes.append(f"{PROVIDER}: no previous-day bar for {symbol}")
            frames.append(frame)
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_daily_bars(self, request: FetchRequest) -> FetchResult:
        end = request.end or request.start or request.as_of or today_in_new_york()
        start = request.start or end
        result = FetchResult(typed_frame(DailyBarSchema))
        frames = []
        for symbol in request.symbols:
            ticker = to_provider(symbol, self.slug)
            path = f"/v2/aggs/ticker/{ticker}/range/1/day/{start.isoformat()}/{end.isoformat()}"
            params = {"adjusted": "true", "sort": "asc", "limit": AGGS_PAGE_SIZE}
            pages = [
                parse_daily_bars(body, self.provider_label, symbol=symbol,
                                 rejected=result.rejected)
                for body in self.pages(path, params)
            ]
            if all(page.empty for page in pages):
                result.notes.append(f"{PROVIDER}: no daily bars for {symbol} {start}..{end}")
            frames.extend(pages)
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_options_chain(self, request: FetchRequest) -> FetchResult:
        as_of = request.as_of or today_in_new_york()
        result = FetchResult(typed_frame(OptionContractSchema))
        frames = []
        for symbol in request.symbols:
            underlying = to_provider(symbol, self.slug)
            path = f"/v3/snapshot/options/{underlying}"
            for body in self.pages(path, {"limit": SNAPSHOT_PAGE_SIZE}):
                frames.append(parse_options_snapshot(
                    body, self.provider_label, as_of=as_of, underlying=symbol,
                    rejected=result.rejected,
                ))
        result.frame = concat_frames(frames, result.frame)
        if result.frame.empty:
            result.notes.append(f"{PROVIDER}: no option contracts for "
                                f"{', '.join(request.symbols)} on {as_of}")
        return result

