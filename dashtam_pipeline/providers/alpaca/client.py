"""Alpaca trading API client: the account, its positions and its activities.

Alpaca authenticates with two headers (``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``) and
sends every money and quantity field as a string, sometimes with 19 decimals
(``"201.9617035750071243"``): they are read as exact decimals so that a fill's cash amount,
``qty * price``, carries no float noise. Activities come in two shapes: trade activities
(``FILL``, one row per partial fill, timestamped) and non-trade activities (``DIV``,
``FEE``, ``CSD``, ... dated, with a signed ``net_amount``). The Broker API serves the same
items with an ``account_id`` per item; ``parse_activities`` reads both.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from dashtam_pipeline.accounts import (
    TransactionType,
    accounts_frame,
    decimal_value,
    float_value,
    market_date,
    market_midnight_utc,
    market_today,
    mask_account,
    optional_float,
    parse_date,
    parse_utc,
    positions_frame,
    scrub_account_numbers,
    scrub_record,
    transactions_frame,
)
from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.symbols import to_canonical

ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
ACTIVITIES_PATH = "/v2/account/activities"
PAGE_SIZE = 100
_PROVIDER = ProviderSlug.ALPACA.value

#: Non-trade activity types with a fixed meaning; ``DIV*`` and ``JNL*`` families are
#: matched by prefix in ``activity_type_of``.
_NON_TRADE_TYPES: Mapping[str, TransactionType] = {
    "FEE": TransactionType.FEE,
    "CFEE": TransactionType.FEE,  # crypto fee
    "PTC": TransactionType.FEE,  # pass-through charge
    "CSD": TransactionType.DEPOSIT,
    "CSW": TransactionType.WITHDRAWAL,
    "INT": TransactionType.INTEREST,
}
_TRADE_ACTIVITIES = frozenset({"FILL", "PARTIAL_FILL"})


# -- pure parsers (tests feed them the recorded payloads) ----------------------------------
def parse_account(body: Any, *, provider: str, as_of: dt.date) -> tuple[dict[str, Any], str]:
    """``/v2/account`` → one ``brokerage.accounts`` row, and the raw account number (kept
    in memory only, to mask it inside fee descriptions)."""
    if not isinstance(body, Mapping) or not body.get("account_number"):
        raise ProviderError(
            _PROVIDER, ErrorKind.MALFORMED, "account response has no account_number",
            endpoint=ACCOUNT_PATH,
        )
    number = str(body["account_number"])
    try:
        row = {
            "provider": provider,
            "account_id": mask_account(number),
            "account_type": account_type_of(body),
            "cash": optional_float(body.get("cash"), "cash"),
            "equity": optional_float(body.get("equity"), "equity"),
            "as_of_date": as_of,
        }
    except ValueError as exc:
        raise ProviderError(
            _PROVIDER, ErrorKind.MALFORMED, f"account response: {exc}", endpoint=ACCOUNT_PATH
        ) from None
    return row, number


def account_type_of(body: Mapping[str, Any]) -> str | None:
    """Alpaca's ``account_type`` when sent, else from ``multiplier``: 1 is a cash account,
    2 or 4 (Reg-T / day-trading leverage) a margin account."""
    if body.get("account_type"):
        return str(body["account_type"]).lower()
    multiplier = body.get("multiplier")
    if multiplier in (None, ""):
        return None
    return "cash" if float_value(multiplier, "multiplier") <= 1 else "margin"


def parse_positions(
    body: Any, *, provider: str, account_id: str, as_of: dt.date
) -> FetchResult:
    """``/v2/positions`` → ``brokerage.positions`` rows (symbols stripped and canonical:
    the docs example sends ``"AAPL "``). A position that does not parse is rejected."""
    if not isinstance(body, list):
        raise ProviderError(
            _PROVIDER, ErrorKind.MALFORMED, "positions response is not a list",
            endpoint=POSITIONS_PATH,
        )
    rows: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for item in body:
        try:
            symbol = str(item.get("symbol") or "").strip()
            if not symbol:
                raise ValueError("symbol is missing")
            rows.append({
                "provider": provider,
                "account_id": account_id,
                "symbol": to_canonical(symbol, ProviderSlug.ALPACA),
                "asset_class": item.get("asset_class"),
                "quantity": float_value(item.get("qty"), "qty"),
                "market_value": optional_float(item.get("market_value"), "market_value"),
                "average_cost": optional_float(item.get("avg_entry_price"), "avg_entry_price"),
                "as_of_date": as_of,
            })
        except (ValueError, AttributeError) as exc:
            rejected.append(RejectedRecord(f"alpaca position: {exc}", scrub_record(item)))
    return FetchResult(positions_frame(rows), rejected)


def activity_type_of(activity_type: str) -> TransactionType:
    """Alpaca's ``activity_type`` of a non-trade activity → the contract's type."""
    code = activity_type.upper()
    if code in _NON_TRADE_TYPES:
        return _NON_TRADE_TYPES[code]
    if code.startswith("DIV"):  # DIV, DIVCGL, DIVCGS, DIVNRA, DIVROC, DIVTXEX, ...
        return TransactionType.DIVIDEND
    if code.startswith("JNL"):  # JNL, JNLC, JNLS
        return TransactionType.TRANSFER
    return TransactionType.OTHER


def parse_activities(
    body: Any,
    *,
    provider: str,
    account_id: str | None = None,
    account_number: str | None = None,
) -> FetchResult:
    """``/v2/account/activities`` (or the Broker API's ``/v1/accounts/activities``) →
    ``brokerage.transactions`` rows.

    Fills: BUY/SELL with ``amount = -+ qty * price``. Non-trade activities: the signed
    ``net_amount``. ``account_id`` is the masked trading account, unless an item carries
    its own (Broker API). ``account_number`` is masked wherever a description quotes it
    (fee descriptions end with ``by <account number>``).
    """
    items = [body] if isinstance(body, Mapping) else body
    if not isinstance(items, list):
        raise ProviderError(
            _PROVIDER, ErrorKind.MALFORMED, "activities response is not a list",
            endpoint=ACTIVITIES_PATH,
        )
    known = [account_number] if account_number else []
    rows: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for item in items:
        try:
            row = _activity_row(item, known)
        except (ValueError, AttributeError, TypeError) as exc:
            rejected.append(RejectedRecord(f"alpaca activity: {exc}", scrub_record(item, known)))
            continue
        own_account = item.get("account_id")
        row["provider"] = provider
        row["account_id"] = mask_account(str(own_account)) if own_account else (
            account_id or mask_account(account_number)
        )
        rows.append(row)
    rows, notes = _unique_ids(rows)
    return FetchResult(transactions_frame(rows), rejected, notes)


def _activity_row(item: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
    activity_id = item.get("id")
    activity_type = str(item.get("activity_type") or "").upper()
    if not activity_id:
        raise ValueError("activity has no id")
    if not activity_type:
        raise ValueError(f"activity {activity_id} has no activity_type")
    symbol = str(item.get("symbol") or "").strip()
    row: dict[str, Any] = {
        "transaction_id": str(activity_id),
        "symbol": to_canonical(symbol, ProviderSlug.ALPACA) if symbol else None,
        "currency": "USD",
        "source_file": None,
    }
    if activity_type in _TRADE_ACTIVITIES:
        return row | _fill_fields(item)
    day = parse_date(item.get("date"), "date")
    description = item.get("description") or activity_type
    return row | {
        "type": activity_type_of(activity_type).value,
        "occurred_at": market_midnight_utc(day),
        "trade_date": day,
        "quantity": optional_float(item.get("qty"), "qty"),
        "price": optional_float(item.get("per_share_amount"), "per_share_amount"),
        "amount": float_value(item.get("net_amount"), "net_amount"),
        "description": scrub_account_numbers(str(description), known),
    }


def _fill_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """A fill's own row: each partial fill is its own activity with its own id."""
    side = str(item.get("side") or "").lower()
    if side not in ("buy", "sell", "sell_short"):
        raise ValueError(f"fill {item.get('id')} has an unknown side {item.get('side')!r}")
    quantity = decimal_value(item.get("qty"), "qty")
    price = decimal_value(item.get("price"), "price")
    moment = parse_utc(item.get("transaction_time"), "transaction_time")
    is_buy = side == "buy"
    cash = quantity * price
    numbers = {"quantity": float(quantity), "price": float(price),
               "amount": float(-cash if is_buy else cash)}
    if not all(math.isfinite(v) for v in numbers.values()):  # Decimal("1e400") → inf
        raise ValueError(f"fill {item.get('id')}: qty, price or qty * price is too large "
                         "to store")
    return {
        "type": (TransactionType.BUY if is_buy else TransactionType.SELL).value,
        "occurred_at": moment,
        "trade_date": market_date(moment),
        **numbers,
        "description": f"{side} {quantity.normalize():f} {item.get('symbol', '').strip()} @ "
        f"{price.normalize():f} ({item.get('type') or 'fill'})",
    }


def _unique_ids(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Alpaca ids are unique per activity, but a page boundary can repeat an item and
    anonymized exports reuse one id for a fill and its fee. Exact repeats are dropped; a
    different activity under a taken id gets ``#<TYPE>`` appended so neither row is lost."""
    seen: dict[str, dict[str, Any]] = {}
    unique: list[dict[str, Any]] = []
    notes: list[str] = []
    for row in rows:
        key = row["transaction_id"]
        if key in seen:
            if seen[key]["type"] == row["type"] and seen[key]["amount"] == row["amount"]:
                notes.append(f"alpaca: activity {key} repeated; kept once")
                continue
            row = row | {"transaction_id": f"{key}#{row['type']}"}
            notes.append(f"alpaca: activity id {key} reused by a {row['type']}; stored as "
                         f"{row['transaction_id']}")
        seen[row["transaction_id"]] = row
        unique.append(row)
    return unique, notes


def classify_alpaca_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """Alpaca's error bodies (``{"code": 40110000, "message": ...}``, or a bare
    ``{"message": ...}`` from the data API) → a typed error with advice."""
    status = response.status_code
    if status < 400:
        return None
    message = str(body.get("message") or "") if isinstance(body, Mapping) else ""
    code = body.get("code") if isinstance(body, Mapping) else None
    text = message.lower()
    detail = f"{message or response.reason_phrase}" + (f" (code {code})" if code else "")
    kind, advice = _alpaca_kind(status, text)
    return ProviderError(_PROVIDER, kind, f"{detail}: {advice}" if advice else detail,
                         status_code=status)


def _alpaca_kind(status: int, text: str) -> tuple[ErrorKind, str]:
    if status == 401 or (status == 403 and "forbidden" in text):
        return ErrorKind.AUTH, (
            "check ALPACA_API_KEY_ID / ALPACA_API_SECRET_KEY and that ALPACA_BASE_URL is "
            "the keys' environment (paper keys only work on paper-api.alpaca.markets)"
        )
    if status == 403 and "subscription" in text:
        return ErrorKind.NOT_ENTITLED, "the Alpaca data plan does not include this feed"
    if status == 403:
        return ErrorKind.BAD_REQUEST, "Alpaca refused the request for this account"
    if status == 404:
        return ErrorKind.NOT_FOUND, ""
    if status == 429:
        return ErrorKind.RATE_LIMITED, "Alpaca allows 200 requests per minute"
    if status >= 500:
        return ErrorKind.UNAVAILABLE, ""
    return ErrorKind.BAD_REQUEST, ""


# -- the client ----------------------------------------------------------------------------
class AlpacaClient(ProviderClient):
    """Accounts, positions and activities of one Alpaca trading account."""

    slug = ProviderSlug.ALPACA

    def auth_headers(self) -> dict[str, str]:
        return {
            "APCA-API-KEY-ID": self.settings.secret("alpaca_api_key_id"),
            "APCA-API-SECRET-KEY": self.settings.secret("alpaca_api_secret_key"),
        }

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_alpaca_error(response, body)

    def _account(self, as_of: dt.date) -> tuple[dict[str, Any], str]:
        return parse_account(self.http.get_json(ACCOUNT_PATH), provider=self.provider_label,
                             as_of=as_of)

    def fetch_accounts(self, request: FetchRequest) -> FetchResult:
        row, _ = self._account(_as_of(request))
        return FetchResult(accounts_frame([row]))

    def fetch_positions(self, request: FetchRequest) -> FetchResult:
        as_of = _as_of(request)
        account, _ = self._account(as_of)
        body = self.http.get_json(POSITIONS_PATH)
        return parse_positions(body, provider=self.provider_label,
                               account_id=account["account_id"], as_of=as_of)

    def fetch_transactions(self, request: FetchRequest) -> FetchResult:
        """Every activity in ``[request.start, request.end]``, oldest first, page by page
        (``page_token`` = the last id, while a full page came back)."""
        account, number = self._account(_as_of(request))
        items = list(self._activity_pages(request))
        result = parse_activities(items, provider=self.provider_label,
                                  account_id=account["account_id"], account_number=number)
        result.notes.insert(0, f"alpaca: {len(items)} activities read")
        return result

    def _activity_pages(self, request: FetchRequest) -> Iterable[Mapping[str, Any]]:
        params: dict[str, Any] = {
            "after": _day_before(request.start),
            "until": _day_after(request.end),
            "direction": "asc",
            "page_size": PAGE_SIZE,
        }
        while True:
            page = self.http.get_json(ACTIVITIES_PATH, params)
            if not isinstance(page, list):
                raise self.malformed("activities response is not a list", ACTIVITIES_PATH)
            yield from page
            if len(page) < PAGE_SIZE or not page[-1].get("id"):
                return
            params = params | {"page_token": page[-1]["id"]}


def _as_of(request: FetchRequest) -> dt.date:
    return request.as_of or market_today()


def _day_before(day: dt.date | None) -> str | None:
    """Alpaca's ``after`` is exclusive: the day before makes the window's first day whole."""
    return (day - dt.timedelta(days=1)).isoformat() if day else None


def _day_after(day: dt.date | None) -> str | None:
    """``until`` is exclusive too: the day after keeps the window's last day whole."""
    return (day + dt.timedelta(days=1)).isoformat() if day else None
