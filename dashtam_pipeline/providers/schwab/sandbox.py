"""Schwab's Trader API: the OAuth endpoints and the bearer-protected account data.

``/v1/oauth/authorize`` answers the browser's redirect to ``redirect_uri?code=...%40&session=...``;
``/v1/oauth/token`` takes HTTP Basic ``app_key:app_secret`` and a form. The data paths need
``Authorization: Bearer <access token>`` and answer Schwab's nested account objects and
transactions whose ``netAmount`` is the sum of their ``transferItems[].cost``.

Many users: the authorize step is Schwab's login page, and who logs in there is the
``login_hint`` parameter (``sandbox-user-<k>``, default user 1; a user beyond
``DASHTAM_SANDBOX_USERS`` is refused). The tokens that login leads to answer for that
user's account only: another user's account hash is unknown to them (404), and a token
of a user the sandbox no longer has is refused like any bad token (401).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any
from urllib.parse import quote, unquote

from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.sandbox.brokerage_data import (
    History,
    Trade,
    account_name,
    account_number,
)
from dashtam_pipeline.sandbox.common import (
    UTC,
    Request,
    Response,
    fail,
    json_response,
    parse_instant,
    stable_hex,
    stable_seed,
)
from dashtam_pipeline.sandbox.oauth import OAuthError, invalid_client
from dashtam_pipeline.sandbox.routing import Provider, World, route
from dashtam_pipeline.symbols import to_provider

_CURRENCY = {"assetType": "CURRENCY", "status": "ACTIVE", "symbol": "CURRENCY_USD",
             "description": "USD currency", "instrumentId": 1, "closingPrice": 0}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Schwab's ServiceError shape: a message and a list of details."""
    return {"message": message or f"HTTP {status}", "errors": [message or f"HTTP {status}"]}


def _oauth_failure(error: OAuthError) -> Exception:
    return fail(error.body, error.status)


# -- OAuth -------------------------------------------------------------------------------
LOGIN_HINT = "login_hint"
_LOGIN_PREFIX = "sandbox-user-"


def login_hint(user: int) -> str:
    """Who logs in at the sandbox's authorize page: add ``login_hint=<this>`` to the
    authorize URL to connect sandbox user ``user`` (the demo's browser does)."""
    return f"{_LOGIN_PREFIX}{user}"


def _login_user(world: World, request: Request) -> int:
    """The sandbox user logging in (user 1 when no one is named), or a refusal."""
    hint = request.param(LOGIN_HINT)
    if hint is None:
        return 1
    user = world.user_numbered(hint[len(_LOGIN_PREFIX):] if hint.startswith(_LOGIN_PREFIX)
                               else "")
    if user is None:
        raise fail({"error": "access_denied",
                    "error_description": f"no such sandbox user; {LOGIN_HINT} must be "
                    f"{_LOGIN_PREFIX}1..{world.users}"}, 400)
    return user


def authorize(world: World, request: Request, _: dict[str, str]) -> Response:
    client_id, redirect_uri = request.param("client_id"), request.param("redirect_uri")
    if not client_id or client_id == "invalid":
        raise _oauth_failure(invalid_client())
    if not redirect_uri or request.param("response_type", "code") != "code":
        raise fail({"error": "invalid_request",
                    "error_description": "redirect_uri and response_type=code are required"}, 400)
    code, session = world.oauth.authorize(client_id, redirect_uri, _login_user(world, request))
    location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}"
    location += f"code={quote(code, safe='.')}&session={session}"
    if request.param("state"):
        location += f"&state={quote(request.param('state') or '')}"
    return Response(302, b"", [("Location", location), ("Content-Length", "0")])


def _basic_client(request: Request) -> str:
    header = request.header("authorization") or ""
    if not header.startswith("Basic "):
        raise _oauth_failure(invalid_client())
    try:
        app_key, _, app_secret = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _oauth_failure(invalid_client()) from None
    if not app_key or not app_secret or "invalid" in (app_key, app_secret):
        raise _oauth_failure(invalid_client())
    return app_key


def token(world: World, request: Request, _: dict[str, str]) -> Response:
    client_id = _basic_client(request)
    grant_type = request.form.get("grant_type")
    try:
        if grant_type == "authorization_code":
            code = request.form.get("code", "")
            code = unquote(code) if "%40" in code else code  # tolerate a double-encoded "@"
            body = world.oauth.exchange_code(client_id, code, request.form.get("redirect_uri"))
        elif grant_type == "refresh_token":
            body = world.oauth.refresh(client_id, request.form.get("refresh_token", ""))
        else:
            raise fail({"error": "unsupported_grant_type",
                        "error_description": f"grant_type {grant_type!r} is not supported"}, 400)
    except OAuthError as error:
        raise _oauth_failure(error) from None
    return json_response(body)


# -- data --------------------------------------------------------------------------------
def _authorized(world: World, request: Request) -> int:
    """The sandbox user the bearer token answers for, or Schwab's 401."""
    header = request.header("authorization") or ""
    access = header[7:].strip() if header.startswith("Bearer ") else ""
    grant = world.oauth.access_grant(access) if access else None
    if grant is None or not world.knows_user(grant.user):
        raise fail(error_body(401, "Client not authorized"), 401)
    return grant.user


def account_hash(world: World, user: int) -> str:
    return stable_hex(f"{account_name('schwab', user)}-account-hash", world.seed,
                      length=64).upper()


def _number(world: World, user: int) -> str:
    return account_number(account_name("schwab", user), world.seed)


def account_numbers(world: World, request: Request, _: dict[str, str]) -> Response:
    user = _authorized(world, request)
    return json_response([{"accountNumber": _number(world, user),
                           "hashValue": account_hash(world, user)}])


def _position(world: World, history: History, symbol: str, qty: int, avg: float) -> dict:
    series = world.market.series(symbol)
    current = series.close_on_or_before(history.as_of)
    last = world.brokerage.previous_close(symbol, history.as_of)
    value = round(qty * current, 2)
    return {
        "shortQuantity": 0,
        "averagePrice": round(avg, 4),
        "currentDayProfitLoss": round(qty * (current - last), 2),
        "currentDayProfitLossPercentage": round((current - last) / last * 100, 2),
        "longQuantity": qty,
        "settledLongQuantity": qty,
        "settledShortQuantity": 0,
        "instrument": {
            "assetType": "EQUITY",
            "cusip": series.company.cusip,
            "symbol": to_provider(symbol, ProviderSlug.SCHWAB),
            "netChange": round(current - last, 4),
        },
        "marketValue": value,
        "maintenanceRequirement": round(value * 0.3, 2),
        "averageLongPrice": round(avg, 4),
        "taxLotAverageLongPrice": round(avg, 4),
        "longOpenProfitLoss": round(value - qty * avg, 2),
        "previousSessionLongQuantity": qty,
        "currentDayCost": 0,
    }


def _account(world: World, user: int, with_positions: bool) -> dict[str, Any]:
    history = world.brokerage.history("schwab", world.now(), user)
    positions = [_position(world, history, h.symbol, h.qty, h.avg_cost)
                 for h in history.open_positions()]
    long_value = round(sum(p["marketValue"] for p in positions), 2)
    cash = history.cash
    liquidation = round(cash + long_value, 2)
    buying_power = round(max(0.0, 2 * cash), 2)
    account: dict[str, Any] = {
        "type": "MARGIN",
        "accountNumber": _number(world, user),
        "roundTrips": 0,
        "isDayTrader": False,
        "isClosingOnlyRestricted": False,
        "pfcbFlag": False,
    }
    if with_positions:
        account["positions"] = positions
    account["initialBalances"] = {
        "accruedInterest": 0, "availableFundsNonMarginableTrade": cash, "bondValue": 0,
        "buyingPower": buying_power, "cashBalance": cash, "cashAvailableForTrading": 0,
        "cashReceipts": 0, "dayTradingBuyingPower": round(4 * cash, 2),
        "dayTradingBuyingPowerCall": 0, "dayTradingEquityCall": 0, "equity": liquidation,
        "equityPercentage": 100, "liquidationValue": liquidation, "longMarginValue": long_value,
        "longOptionMarketValue": 0, "longStockValue": long_value, "maintenanceCall": 0,
        "maintenanceRequirement": round(long_value * 0.3, 2), "margin": cash,
        "marginEquity": liquidation, "moneyMarketFund": 0, "mutualFundValue": 0, "regTCall": 0,
        "shortMarginValue": 0, "shortOptionMarketValue": 0, "shortStockValue": 0,
        "totalCash": 0, "isInCall": False, "pendingDeposits": 0, "marginBalance": 0,
        "shortBalance": 0, "accountValue": liquidation,
    }
    account["currentBalances"] = {
        "accruedInterest": 0, "cashBalance": cash, "cashReceipts": 0,
        "longOptionMarketValue": 0, "liquidationValue": liquidation,
        "longMarketValue": long_value, "moneyMarketFund": 0, "savings": 0,
        "shortMarketValue": 0, "pendingDeposits": 0, "mutualFundValue": 0, "bondValue": 0,
        "shortOptionMarketValue": 0, "availableFunds": cash,
        "availableFundsNonMarginableTrade": cash, "buyingPower": buying_power,
        "buyingPowerNonMarginableTrade": cash, "dayTradingBuyingPower": round(4 * cash, 2),
        "equity": liquidation, "equityPercentage": 100, "longMarginValue": long_value,
        "maintenanceCall": 0, "maintenanceRequirement": round(long_value * 0.3, 2),
        "marginBalance": 0, "regTCall": 0, "shortBalance": 0, "shortMarginValue": 0,
        "sma": cash,
    }
    account["projectedBalances"] = {
        "availableFunds": cash, "availableFundsNonMarginableTrade": cash,
        "buyingPower": buying_power, "dayTradingBuyingPower": round(4 * cash, 2),
        "dayTradingBuyingPowerCall": 0, "maintenanceCall": 0, "regTCall": 0, "isInCall": False,
        "stockBuyingPower": buying_power,
    }
    return {
        "securitiesAccount": account,
        "aggregatedBalance": {"currentLiquidationValue": liquidation,
                              "liquidationValue": liquidation},
    }


def _wants_positions(request: Request) -> bool:
    return "positions" in (request.param("fields") or "").split(",")


def accounts(world: World, request: Request, _: dict[str, str]) -> Response:
    user = _authorized(world, request)
    return json_response([_account(world, user, _wants_positions(request))])


def _own_account(world: World, request: Request, groups: dict[str, str]) -> int:
    """The token's user, if the path's account hash is theirs (another user's account is
    as unknown to them as a made-up hash)."""
    user = _authorized(world, request)
    if groups["hash"] != account_hash(world, user):
        raise fail(error_body(404, "Invalid account number"), 404)
    return user


def one_account(world: World, request: Request, groups: dict[str, str]) -> Response:
    user = _own_account(world, request, groups)
    return json_response(_account(world, user, _wants_positions(request)))


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _fee(amount: float, fee_type: str) -> dict[str, Any]:
    return {"instrument": dict(_CURRENCY), "amount": amount, "cost": -amount, "feeType": fee_type}


def _trade_record(world: World, number: str, t: Trade) -> dict[str, Any]:
    symbol = to_provider(t.symbol, ProviderSlug.SCHWAB)
    sign = 1 if t.side == "buy" else -1
    close = world.market.series(t.symbol).close_on_or_before(t.time.date())
    items = [
        _fee(0, "COMMISSION"),
        _fee(t.sec_fee, "SEC_FEE"),
        _fee(t.taf_fee, "TAF_FEE"),
        {
            "instrument": {"assetType": "EQUITY", "status": "ACTIVE", "symbol": symbol,
                           "instrumentId": stable_seed("schwab-instrument", t.symbol) % 10**8,
                           "closingPrice": close, "type": "COMMON_STOCK"},
            "amount": sign * t.qty,
            "cost": round(-sign * t.gross, 2),
            "price": t.price,
            "positionEffect": "OPENING" if t.side == "buy" else "CLOSING",
        },
    ]
    return {
        "activityId": 80_000_000_000 + t.seq * 7919,
        "time": _stamp(t.time),
        "accountNumber": number,
        "type": "TRADE",
        "status": "VALID",
        "subAccount": "MARGIN",
        "tradeDate": _stamp(t.time),
        "positionId": 2_300_000_000 + stable_seed("schwab-position", t.symbol) % 10**8,
        "orderId": 1_000_000_000_000 + t.seq * 104729,
        "netAmount": round(sum(i["cost"] for i in items), 2),
        "transferItems": items,
    }


def transactions_of(
    world: World, user: int = 1
) -> list[tuple[dt.datetime, str, dict[str, Any]]]:
    """(time, type, record) for every transaction of sandbox user ``user``'s account."""
    history = world.brokerage.history("schwab", world.now(), user)
    number = _number(world, user)
    out = [(t.time, "TRADE", _trade_record(world, number, t)) for t in history.trades]
    for d in history.dividends:
        moment = dt.datetime.combine(d.pay_date, dt.time(8, 0), UTC)
        symbol = to_provider(d.symbol, ProviderSlug.SCHWAB)
        items = [
            {"instrument": {"assetType": "EQUITY", "status": "ACTIVE", "symbol": symbol,
                            "instrumentId": stable_seed("schwab-instrument", d.symbol) % 10**8,
                            "type": "COMMON_STOCK"},
             "amount": 0, "cost": 0},
            {"instrument": dict(_CURRENCY), "amount": d.amount, "cost": d.amount},
        ]
        out.append((moment, "DIVIDEND_OR_INTEREST", {
            "activityId": 80_000_000_000 + d.seq * 7919,
            "time": _stamp(moment),
            "description": f"ORDINARY DIVIDEND~{symbol}",
            "accountNumber": number,
            "type": "DIVIDEND_OR_INTEREST",
            "status": "VALID",
            "subAccount": "CASH",
            "tradeDate": _stamp(moment),
            "netAmount": d.amount,
            "transferItems": items,
        }))
    return sorted(out, key=lambda item: item[0], reverse=True)


def transactions(world: World, request: Request, groups: dict[str, str]) -> Response:
    user = _own_account(world, request, groups)
    try:
        start = parse_instant(request.param("startDate"))
        end = parse_instant(request.param("endDate"))
    except ValueError as exc:
        raise fail(error_body(400, f"Invalid date: {exc}"), 400) from exc
    if start is None or end is None:
        raise fail(error_body(400, "startDate and endDate are required"), 400)
    types = request.param("types")
    wanted = {t.strip() for t in types.split(",")} if types else None
    symbol = request.param("symbol")
    rows = [
        record
        for moment, kind, record in transactions_of(world, user)
        if start <= moment <= end
        and (wanted is None or kind in wanted)
        and (symbol is None or any(i["instrument"].get("symbol") == symbol
                                   for i in record["transferItems"]))
    ]
    return json_response(rows)


PROVIDER = Provider(
    slug="schwab",
    routes=(
        route("GET", r"/v1/oauth/authorize", authorize),
        route("POST", r"/v1/oauth/token", token),
        route("GET", r"/trader/v1/accounts/accountNumbers", account_numbers),
        route("GET", r"/trader/v1/accounts", accounts),
        route("GET", r"/trader/v1/accounts/(?P<hash>[0-9A-Fa-f]{64})", one_account),
        route("GET", r"/trader/v1/accounts/(?P<hash>[0-9A-Fa-f]{64})/transactions", transactions),
    ),
    error_body=error_body,
)
