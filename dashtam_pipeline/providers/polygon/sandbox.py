"""Polygon (Massive): previous close, daily aggregates and the options chain snapshot.

Aggregates carry ``t`` in Unix milliseconds (midnight New York for daily bars, 16:00 for
``/prev``, as in the recordings); the snapshot's timestamps are nanoseconds. Lists longer
than ``limit`` end with an absolute ``next_url`` back into the sandbox carrying an opaque
``cursor``, which the client follows with its ``apiKey`` appended, as with the real API.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from dashtam_pipeline.providers.polygon.sandbox_data import OptionQuote, chain
from dashtam_pipeline.sandbox.common import (
    Request,
    Response,
    epoch_ms,
    fail,
    json_response,
    last_completed_session,
    ny_time,
    stable_hex,
)
from dashtam_pipeline.sandbox.routing import Provider, World, route

MAX_AGGS_LIMIT = 50_000
MAX_SNAPSHOT_LIMIT = 250
NS = 1_000_000_000


def error_body(status: int, message: str) -> dict[str, Any]:
    request_id = stable_hex("polygon-error", status, message)
    if status == 401:
        return {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"}
    if status == 403:
        return {"status": "NOT_AUTHORIZED", "request_id": request_id,
                "message": message or "You are not entitled to this data. Please upgrade your "
                "plan at https://polygon.io/pricing"}
    if status == 429:
        message = ("You've exceeded the maximum requests per minute, please wait or upgrade "
                   "your subscription to continue. https://polygon.io/pricing")
    return {"status": "ERROR", "request_id": request_id, "error": message}


def _checked(request: Request) -> str:
    """The request id (stable per request, key excluded), after the key check."""
    auth = request.header("authorization") or ""
    key = request.param("apiKey") or auth.removeprefix("Bearer ").strip()
    if key == "invalid":
        raise fail(error_body(401, ""), 401)
    query = sorted((k, v) for k, v in request.query.items() if k != "apiKey")
    return stable_hex("polygon", request.subpath, query)


def _encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()


def _decode_cursor(request: Request) -> dict[str, Any] | None:
    cursor = request.param("cursor")
    if cursor is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise fail(error_body(400, "Invalid cursor"), 400) from exc


def _next_url(request: Request, state: dict[str, Any]) -> str:
    return f"{request.root_url}{request.path}?{urlencode({'cursor': _encode_cursor(state)})}"


def _day(text: str) -> dt.date:
    """A path date: ``YYYY-MM-DD`` or a Unix millisecond timestamp."""
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC).date()
    return dt.date.fromisoformat(text)


def previous_close(world: World, request: Request, groups: dict[str, str]) -> Response:
    request_id = _checked(request)
    ticker = groups["ticker"].upper()
    q = world.market.quote(ticker, world.now())
    result = {
        "T": ticker,
        "v": float(q.bar.volume),
        "vw": q.bar.vwap,
        "o": q.bar.open,
        "c": q.bar.close,
        "h": q.bar.high,
        "l": q.bar.low,
        "t": epoch_ms(ny_time(q.bar.date, 16)),
        "n": q.bar.transactions,
    }
    return json_response({"ticker": ticker, "queryCount": 1, "resultsCount": 1, "adjusted": True,
                          "results": [result], "status": "OK", "request_id": request_id,
                          "count": 1})


def aggregates(world: World, request: Request, groups: dict[str, str]) -> Response:
    request_id = _checked(request)
    ticker = groups["ticker"].upper()
    if groups["timespan"] != "day" or groups["multiplier"] != "1":
        raise fail(error_body(400, "The sandbox serves 1/day aggregates only"), 400)
    try:
        start, end = _day(groups["from"]), _day(groups["to"])
    except ValueError as exc:
        raise fail(error_body(400, f"Could not parse the time parameter: {exc}"), 400) from exc
    state = _decode_cursor(request) or {
        "offset": 0,
        "limit": min(request.int_param("limit", 5000), MAX_AGGS_LIMIT),
        "sort": request.param("sort", "asc"),
        "adjusted": request.param("adjusted", "true"),
    }
    end = min(end, last_completed_session(world.now()))
    bars = world.market.series(ticker).bars(start, end)
    if state["sort"] == "desc":
        bars.reverse()
    offset, limit = int(state["offset"]), int(state["limit"])
    page = bars[offset : offset + limit]
    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": len(page),
        "resultsCount": len(page),
        "adjusted": state["adjusted"] != "false",
    }
    if page:  # Polygon leaves ``results`` out when nothing matched
        body["results"] = [
            {"v": float(b.volume), "vw": b.vwap, "o": b.open, "c": b.close, "h": b.high,
             "l": b.low, "t": epoch_ms(ny_time(b.date, 0)), "n": b.transactions}
            for b in page
        ]
    body |= {"status": "OK", "request_id": request_id, "count": len(page)}
    if offset + limit < len(bars):
        body["next_url"] = _next_url(request, state | {"offset": offset + limit})
    return json_response(body)


def _snapshot_result(o: OptionQuote, spot: float, as_of: dt.date) -> dict[str, Any]:
    close_ns = int(ny_time(as_of, 16).timestamp()) * NS
    spread = max(0.01, round(o.price * 0.02, 2))
    call = o.contract_type == "call"
    break_even = o.strike + o.price if call else o.strike - o.price
    change = round(o.price - o.previous_price, 4)
    return {
        "break_even_price": round(break_even, 4),
        "day": {
            "change": change,
            "change_percent": round(change / o.previous_price * 100, 4),
            "close": o.price,
            "high": round(max(o.price, o.previous_price) * 1.03, 2),
            "last_updated": close_ns,
            "low": round(min(o.price, o.previous_price) * 0.97, 2),
            "open": o.previous_price,
            "previous_close": o.previous_price,
            "volume": o.volume,
            "vwap": round((o.price + o.previous_price) / 2, 4),
        },
        "details": {
            "contract_type": o.contract_type,
            "exercise_style": "american",
            "expiration_date": o.expiration.isoformat(),
            "shares_per_contract": 100,
            "strike_price": o.strike,
            "ticker": o.occ_ticker,
        },
        "fmv": o.price,
        "greeks": {"delta": o.delta, "gamma": o.gamma, "theta": o.theta, "vega": o.vega},
        "implied_volatility": o.implied_volatility,
        "last_quote": {
            "ask": round(o.price + spread / 2, 2),
            "ask_size": 10 + o.open_interest % 290,
            "bid": max(0.0, round(o.price - spread / 2, 2)),
            "bid_size": 10 + o.volume % 290,
            "last_updated": close_ns - 1_500_000_000,
            "midpoint": o.price,
            "timeframe": "DELAYED",
        },
        "last_trade": {
            "price": o.price,
            "sip_timestamp": close_ns - 60 * NS,
            "size": 1 + o.volume % 10,
            "conditions": [209],
            "exchange": 309,
            "timeframe": "DELAYED",
        },
        "open_interest": o.open_interest,
        "underlying_asset": {
            "change_to_break_even": round(break_even - spot, 4),
            "last_updated": close_ns,
            "price": spot,
            "ticker": o.underlying,
            "timeframe": "DELAYED",
        },
    }


def options_snapshot(world: World, request: Request, groups: dict[str, str]) -> Response:
    request_id = _checked(request)
    underlying = groups["underlying"].upper()
    state = _decode_cursor(request) or {
        "offset": 0,
        "limit": request.int_param("limit", 10),
        "contract_type": request.param("contract_type"),
        "expiration_date": request.param("expiration_date"),
        "strike_price": request.param("strike_price"),
    }
    limit = int(state["limit"])
    if not 1 <= limit <= MAX_SNAPSHOT_LIMIT:
        raise fail(error_body(400, f"limit must be between 1 and {MAX_SNAPSHOT_LIMIT}"), 400)
    q = world.market.quote(underlying, world.now())
    contracts = [
        o for o in chain(world.seed, q)
        if state["contract_type"] in (None, o.contract_type)
        and state["expiration_date"] in (None, o.expiration.isoformat())
        and (state["strike_price"] is None or float(state["strike_price"]) == o.strike)
    ]
    offset = int(state["offset"])
    page = contracts[offset : offset + limit]
    body: dict[str, Any] = {
        "request_id": request_id,
        "results": [_snapshot_result(o, q.price, q.bar.date) for o in page],
        "status": "OK",
    }
    if offset + limit < len(contracts):
        body["next_url"] = _next_url(request, state | {"offset": offset + limit})
    return json_response(body)


PROVIDER = Provider(
    slug="polygon",
    routes=(
        route("GET", r"/v2/aggs/ticker/(?P<ticker>[^/]+)/prev", previous_close),
        route(
            "GET",
            r"/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<multiplier>\d+)/(?P<timespan>[a-z]+)"
            r"/(?P<from>[^/]+)/(?P<to>[^/]+)",
            aggregates,
        ),
        route("GET", r"/v3/snapshot/options/(?P<underlying>[^/]+)", options_snapshot),
    ),
    error_body=error_body,
)
