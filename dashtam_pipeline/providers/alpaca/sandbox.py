"""Alpaca's trading API: ``/v2/account``, ``/v2/positions`` and account activities.

Money, quantities and prices are strings, as Alpaca sends them; activities are FILL,
DIV and FEE records whose ids sort in time order (``<17 digits>::<uuid>``), which is what
``page_token`` pages on.

Many users: a key pair names the sandbox user whose account answers. Sandbox user k's
keys are ``sandbox_keys(seed, k)``: the key id ``PKSBX<k, 4 digits><11 hex>`` and a
40-hex secret, both derived from the seed, so a demo or a test can hand a user their
own keys. A key id of that shape with the wrong secret, or for a user beyond
``DASHTAM_SANDBOX_USERS``, is refused with Alpaca's 401. Any other key pair (the
operator's ``ALPACA_*`` keys in the sandbox) is sandbox user 1, as before there were
users; ``invalid`` as either key is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashtam_pipeline.sandbox.brokerage_data import History
from dashtam_pipeline.sandbox.common import (
    UTC,
    Request,
    Response,
    fail,
    iso_z,
    json_response,
    parse_instant,
    stable_hex,
    stable_uuid,
)
from dashtam_pipeline.sandbox.routing import Provider, World, route

MAX_PAGE_SIZE = 100


def error_body(status: int, message: str) -> dict[str, Any]:
    if status == 401:
        return {"code": 40110000, "message": "request is not authorized"}
    if status == 429:
        return {"code": 42910000, "message": "rate limit exceeded"}
    return {"code": status * 100000, "message": message}


SANDBOX_KEY_PREFIX = "PKSBX"


def sandbox_keys(seed: int, user: int) -> tuple[str, str]:
    """(key id, secret key) of sandbox user ``user`` for this seed."""
    key_id = f"{SANDBOX_KEY_PREFIX}{user:04d}" + stable_hex(seed, "alpaca-key-id", user,
                                                           length=11).upper()
    return key_id, stable_hex(seed, "alpaca-secret-key", user, length=40)


def _key_user(world: World, key_id: str, secret: str) -> int | None:
    """The sandbox user a per-user key pair belongs to, or ``None`` if it is not one."""
    user = world.user_numbered(key_id[len(SANDBOX_KEY_PREFIX):len(SANDBOX_KEY_PREFIX) + 4])
    if user is None:
        return None
    return user if (key_id, secret) == sandbox_keys(world.seed, user) else None


def _checked(world: World, request: Request) -> int:
    """The sandbox user the request's keys answer for, or Alpaca's 401."""
    key_id = request.header("apca-api-key-id") or ""
    secret = request.header("apca-api-secret-key") or ""
    if "invalid" in (key_id, secret):
        raise fail(error_body(401, ""), 401)
    if not key_id.startswith(SANDBOX_KEY_PREFIX):
        return 1
    user = _key_user(world, key_id, secret)
    if user is None:
        raise fail(error_body(401, ""), 401)
    return user


def _history(world: World, request: Request) -> History:
    """The account history of the user the request's keys name."""
    return world.brokerage.history("alpaca", world.now(), _checked(world, request))


def num(value: float, places: int = 6) -> str:
    """Alpaca's decimal strings: no exponent, no trailing zeros (``"1914.5"``, ``"0"``)."""
    text = f"{round(float(value), places):.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _market_values(world: World, history: History) -> tuple[float, float]:
    """(long market value now, long market value at the previous close)."""
    now_value = last_value = 0.0
    for h in history.open_positions():
        series = world.market.series(h.symbol)
        now_value += h.qty * series.close_on_or_before(history.as_of)
        last_value += h.qty * world.brokerage.previous_close(h.symbol, history.as_of)
    return round(now_value, 2), round(last_value, 2)


def account(world: World, request: Request, _: dict[str, str]) -> Response:
    history = _history(world, request)
    name = history.spec.name
    long_value, last_long_value = _market_values(world, history)
    cash = history.cash
    equity = round(cash + long_value, 2)
    initial_margin = round(long_value / 2, 2)
    buying_power = round(max(0.0, 2 * (equity - initial_margin)), 2)
    return json_response(
        {
            "id": stable_uuid(world.seed, f"{name}-account"),
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": "PA3" + stable_hex(world.seed, f"{name}-number", length=9).upper(),
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "options_approved_level": 3,
            "options_trading_level": 3,
            "currency": "USD",
            "buying_power": num(buying_power),
            "regt_buying_power": num(buying_power),
            "daytrading_buying_power": "0",
            "effective_buying_power": num(buying_power),
            "non_marginable_buying_power": num(max(0.0, cash)),
            "options_buying_power": num(max(0.0, cash)),
            "bod_dtbp": "0",
            "cash": num(cash),
            "accrued_fees": "0",
            "portfolio_value": num(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": iso_z(
                dt.datetime.combine(history.spec.opened, dt.time(14, 0), UTC), millis=True
            ),
            "trade_suspended_by_user": False,
            "multiplier": "2",
            "shorting_enabled": True,
            "equity": num(equity),
            "last_equity": num(round(cash + last_long_value, 2)),
            "long_market_value": num(long_value),
            "short_market_value": "0",
            "position_market_value": num(long_value),
            "initial_margin": num(initial_margin),
            "maintenance_margin": num(round(long_value * 0.3, 2)),
            "last_maintenance_margin": num(round(last_long_value * 0.3, 2)),
            "sma": num(equity),
            "daytrade_count": 0,
            "balance_asof": history.as_of.isoformat(),
            "crypto_tier": 1,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }
    )


def _position(world: World, history: History, symbol: str) -> dict[str, Any] | None:
    h = history.holdings.get(symbol)
    if h is None or h.qty <= 0:
        return None
    company = world.market.series(symbol).company
    current = world.market.series(symbol).close_on_or_before(history.as_of)
    last = world.brokerage.previous_close(symbol, history.as_of)
    market_value = h.qty * current
    cost_basis = h.qty * h.avg_cost
    intraday = h.qty * (current - last)
    return {
        "asset_id": stable_uuid("alpaca-asset", symbol),
        "symbol": symbol,
        "exchange": company.exchange,
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": str(h.qty),
        "avg_entry_price": num(h.avg_cost),
        "side": "long",
        "market_value": num(market_value, 4),
        "cost_basis": num(cost_basis, 4),
        "unrealized_pl": num(market_value - cost_basis, 4),
        "unrealized_plpc": num((market_value - cost_basis) / cost_basis, 16),
        "unrealized_intraday_pl": num(intraday, 4),
        "unrealized_intraday_plpc": num(intraday / (h.qty * last), 16),
        "current_price": num(current),
        "lastday_price": num(last),
        "change_today": num((current - last) / last, 16),
        "qty_available": str(h.qty),
    }


def positions(world: World, request: Request, _: dict[str, str]) -> Response:
    history = _history(world, request)
    rows = [_position(world, history, h.symbol) for h in history.open_positions()]
    return json_response(sorted((r for r in rows if r), key=lambda r: r["symbol"]))


def position(world: World, request: Request, groups: dict[str, str]) -> Response:
    history = _history(world, request)
    found = _position(world, history, groups["symbol"].upper())
    if found is None:
        raise fail({"code": 40410000, "message": "position does not exist"}, 404)
    return json_response(found)


def _activity_id(moment: dt.datetime, *parts: object) -> str:
    stamp = moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"
    return f"{stamp}::{stable_uuid('alpaca-activity', *parts)}"


def activities_of(history: History) -> list[tuple[dt.datetime, dict[str, Any]]]:
    """Every activity with the instant it is filtered on, in id (time) order."""
    out: list[tuple[dt.datetime, dict[str, Any]]] = []
    for t in history.trades:
        order_id = stable_uuid("alpaca-order", t.seq)
        out.append((t.time, {
            "id": _activity_id(t.time, "fill", t.seq), "activity_type": "FILL",
            "transaction_time": iso_z(t.time, millis=True), "type": "fill",
            "price": num(t.price), "qty": str(t.qty), "side": t.side, "symbol": t.symbol,
            "leaves_qty": "0", "order_id": order_id, "cum_qty": str(t.qty),
            "order_status": "filled",
        }))
        day = t.time.date()
        fees = (("TAF", t.taf_fee, f"TAF fee for proceed of {t.qty} shares (1 trades) on {day}"),
                ("REG", t.sec_fee, f"REG fee for proceed of ${t.gross:.2f} on {day}"))
        for index, (kind, amount, text) in enumerate(fees):
            if amount > 0:
                moment = dt.datetime.combine(day, dt.time(23, 59, 59, 900_000 + index * 1000), UTC)
                out.append((moment, {
                    "id": _activity_id(moment, kind, t.seq), "activity_type": "FEE",
                    "date": day.isoformat(), "net_amount": num(-amount),
                    "description": f"{text} by 999999999", "status": "executed",
                }))
    for d in history.dividends:
        moment = dt.datetime.combine(d.pay_date, dt.time(8, 0), UTC)
        out.append((moment, {
            "id": _activity_id(moment, "div", d.seq), "activity_type": "DIV",
            "date": d.pay_date.isoformat(), "net_amount": num(d.amount),
            "description": f"Cash DIV @ {d.per_share}, Pos QTY: {float(d.qty)}, "
            f"Rec Date: {d.record_date}",
            "symbol": d.symbol, "qty": str(d.qty), "per_share_amount": num(d.per_share),
            "status": "executed",
        }))
    return sorted(out, key=lambda item: item[1]["id"])


def activities(world: World, request: Request, groups: dict[str, str]) -> Response:
    history = _history(world, request)
    types = groups.get("activity_type") or request.param("activity_types")
    wanted = {t.strip().upper() for t in types.split(",")} if types else None
    try:
        after = parse_instant(request.param("after"))
        until = parse_instant(request.param("until"), end_of_day=True)
        on_date = parse_instant(request.param("date"))
        page_size = min(request.int_param("page_size", MAX_PAGE_SIZE), MAX_PAGE_SIZE)
    except ValueError as exc:
        raise fail(error_body(422, f"invalid parameter: {exc}"), 422) from exc
    direction = request.param("direction", "desc")
    token = request.param("page_token")
    rows = [
        body
        for moment, body in activities_of(history)
        if (wanted is None or body["activity_type"] in wanted)
        and (after is None or moment >= after)
        and (until is None or moment <= until)
        and (on_date is None or moment.date() == on_date.date())
    ]
    if direction == "desc":
        rows.reverse()
    if token:
        rows = [r for r in rows if (r["id"] > token if direction == "asc" else r["id"] < token)]
    return json_response(rows[:page_size])


PROVIDER = Provider(
    slug="alpaca",
    routes=(
        route("GET", r"/v2/account", account),
        route("GET", r"/v2/positions", positions),
        route("GET", r"/v2/positions/(?P<symbol>[^/]+)", position),
        route("GET", r"/v2/account/activities", activities),
        route("GET", r"/v2/account/activities/(?P<activity_type>[A-Z_]+)", activities),
    ),
    error_body=error_body,
)
