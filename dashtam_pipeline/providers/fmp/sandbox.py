"""Financial Modeling Prep's ``stable`` API: quote, end-of-day history, statements, earnings.

Bodies are flat JSON arrays with numbers as numbers, like the recorded payloads; errors
are ``{"Error Message": ...}``. The legacy ``/api/v3`` and ``/api/v4`` paths answer 403
as they do for keys made after 2025-08-31.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from dashtam_pipeline.sandbox.common import (
    HTTPFailure,
    Request,
    Response,
    epoch_seconds,
    fail,
    json_response,
    last_completed_session,
    ny_time,
    parse_date,
)
from dashtam_pipeline.sandbox.routing import Provider, World, route

INVALID_KEY = (
    "Invalid API KEY. Feel free to create a Free API Key or visit "
    "https://site.financialmodelingprep.com/faqs?search=why-is-my-api-key-invalid for more "
    "information."
)
LIMIT_REACH = (
    "Limit Reach . Please upgrade your plan or visit our documentation for more details at "
    "https://site.financialmodelingprep.com/"
)
LEGACY = (
    "Legacy Endpoint : Due to Legacy endpoints being no longer supported - This endpoint is "
    "only available for legacy users who have valid subscriptions prior August 31, 2025. "
    "Please visit our documentation page https://site.financialmodelingprep.com/developer/docs "
    "for our current APIs."
)


def error_body(status: int, message: str) -> dict[str, str]:
    if status == 401:
        message = INVALID_KEY
    elif status == 429:
        message = LIMIT_REACH
    return {"Error Message": message}


def _checked(request: Request) -> None:
    if request.param("apikey") == "invalid":
        raise fail(error_body(401, ""), 401)


def _symbols(request: Request) -> list[str]:
    raw = request.param("symbol")
    if not raw:
        raise fail(error_body(400, "Invalid or missing query parameter - symbol"), 400)
    return [s.strip() for s in raw.split(",") if s.strip()]


def quote(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    out = []
    for display in _symbols(request):
        q = world.market.quote(display, world.now())
        out.append(
            {
                "symbol": display.upper(),
                "name": q.company.name,
                "price": q.price,
                "changePercentage": q.change_pct,
                "change": q.change,
                "volume": q.bar.volume,
                "dayLow": q.bar.low,
                "dayHigh": q.bar.high,
                "yearHigh": q.year_high,
                "yearLow": q.year_low,
                "marketCap": int(q.market_cap),
                "priceAvg50": q.avg50,
                "priceAvg200": q.avg200,
                "exchange": q.company.exchange,
                "open": q.bar.open,
                "previousClose": q.previous_close,
                "timestamp": epoch_seconds(ny_time(q.bar.date, 16)),
            }
        )
    return json_response(out)


def historical_eod(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    display = _symbols(request)[0].upper()
    last = last_completed_session(world.now())
    try:
        end = min(parse_date(request.param("to")) or last, last)
        start = parse_date(request.param("from")) or end - dt.timedelta(days=5 * 365)
    except ValueError as exc:
        raise fail(error_body(400, f"Invalid date: {exc}"), 400) from exc
    rows = [
        {
            "symbol": display,
            "date": bar.date.isoformat(),
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "change": round(bar.close - bar.open, 2),
            "changePercent": round((bar.close - bar.open) / bar.open * 100, 5),
            "vwap": bar.vwap,
        }
        for bar in world.market.series(display).bars(start, end)
    ]
    return json_response(list(reversed(rows)))


def _period_and_limit(request: Request, default_limit: int) -> tuple[str, int]:
    period = request.param("period", "annual") or "annual"
    if period not in ("annual", "quarter", "FY", "Q1", "Q2", "Q3", "Q4"):
        raise fail(error_body(400, f"Invalid period: {period}"), 400)
    return period, max(0, request.int_param("limit", default_limit))


def income_statement(world: World, request: Request, _: dict[str, str]) -> Response:
    return _statements(world, request, world.fundamentals.income_statements)


def balance_sheet(world: World, request: Request, _: dict[str, str]) -> Response:
    return _statements(world, request, world.fundamentals.balance_sheets)


def _statements(
    world: World,
    request: Request,
    statements: Callable[[str, str, str, int, dt.date], list[dict[str, Any]]],
) -> Response:
    """A statement endpoint: one symbol, a ``period`` and a ``limit`` (5 by default)."""
    _checked(request)
    display = _symbols(request)[0].upper()
    period, limit = _period_and_limit(request, 5)
    return json_response(statements(display, display, period, limit, world.today()))


def earnings(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    display = _symbols(request)[0].upper()
    rows: list[dict[str, Any]] = world.fundamentals.earnings(
        display, display, max(0, request.int_param("limit", 12)), world.today()
    )
    return json_response(rows)


def legacy(world: World, request: Request, _: dict[str, str]) -> Response:
    raise HTTPFailure(json_response(error_body(403, LEGACY), 403))


PROVIDER = Provider(
    slug="fmp",
    routes=(
        route("GET", r"/stable/quote", quote),
        route("GET", r"/stable/historical-price-eod/full", historical_eod),
        route("GET", r"/stable/income-statement", income_statement),
        route("GET", r"/stable/balance-sheet-statement", balance_sheet),
        route("GET", r"/stable/earnings", earnings),
        route("GET", r"/api/v[34]/.*", legacy),
    ),
    error_body=error_body,
)
