"""Charles Schwab Trader API client, and the OAuth helpers behind ``dashtam connect schwab``.

Schwab is the one OAuth provider: data calls carry a bearer access token that lives 30
minutes, obtained with an authorization code and refreshed with a refresh token that
Schwab lets live 7 days from the authorization (refreshing does not extend it). The
client never stores tokens: it asks a ``SchwabTokenSource`` for a valid access token
before each call, so the connection store (another module) can refresh and encrypt them.

The OAuth helpers are plain functions over the shared HTTP layer, so the CLI and the
sandbox exercise exactly the code the pipeline uses. Account numbers are masked as soon
as they are read; transactions are fetched per account ``hashValue`` as Schwab requires.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

import httpx

from dashtam_pipeline.accounts import (
    TransactionType,
    accounts_frame,
    market_today,
    mask_account,
    mentions_interest,
    optional_float,
    parse_date,
    parse_utc,
    positions_frame,
    scrub_account_numbers,
    scrub_record,
    transactions_frame,
)
from dashtam_pipeline.clients.base import (
    FetchRequest,
    FetchResult,
    ProviderClient,
    RejectedRecord,
    sandbox_base_url,
    sandbox_transport,
)
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import CallHook, ProviderHTTP, RetryPolicy
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import ProviderSettings, Settings
from dashtam_pipeline.symbols import to_canonical

_PROVIDER = ProviderSlug.SCHWAB.value
AUTHORIZE_PATH = "/v1/oauth/authorize"
TOKEN_PATH = "/v1/oauth/token"
ACCOUNT_NUMBERS_PATH = "/trader/v1/accounts/accountNumbers"
ACCOUNTS_PATH = "/trader/v1/accounts"
TRANSACTIONS_PATH = "/trader/v1/accounts/{hash}/transactions"
#: Schwab's documented lifetime of a refresh token, counted from the authorization.
REFRESH_TOKEN_LIFETIME = dt.timedelta(days=7)
#: App credentials sent to the sandbox when none are configured (it needs no real keys).
SANDBOX_APP_KEY = "sandbox-app-key"
SANDBOX_APP_SECRET = "sandbox-app-secret"
#: Look-back of ``fetch_transactions`` when the request names no window: a connection's
#: first sync asks for its whole history, which Schwab's Trader API serves back one year
#: (also its widest window per request), so the first sync asks for exactly that.
HISTORY_LIMIT = dt.timedelta(days=365)
DEFAULT_LOOKBACK = HISTORY_LIMIT
RECONNECT = "run `dashtam connect schwab`"
#: Every transaction type the pipeline asks for (docs/endpoints.md).
TRANSACTION_TYPES = (
    "TRADE", "DIVIDEND_OR_INTEREST", "ACH_RECEIPT", "ACH_DISBURSEMENT", "CASH_RECEIPT",
    "CASH_DISBURSEMENT", "ELECTRONIC_FUND", "WIRE_OUT", "WIRE_IN", "JOURNAL",
    "RECEIVE_AND_DELIVER",
)
_CASH_TYPES: Mapping[str, TransactionType] = {
    "ACH_RECEIPT": TransactionType.DEPOSIT,
    "CASH_RECEIPT": TransactionType.DEPOSIT,
    "WIRE_IN": TransactionType.DEPOSIT,
    "ACH_DISBURSEMENT": TransactionType.WITHDRAWAL,
    "CASH_DISBURSEMENT": TransactionType.WITHDRAWAL,
    "WIRE_OUT": TransactionType.WITHDRAWAL,
    "JOURNAL": TransactionType.TRANSFER,
    "ELECTRONIC_FUND": TransactionType.TRANSFER,
    "RECEIVE_AND_DELIVER": TransactionType.TRANSFER,
}
#: Statuses of records that never moved money.
_VOID_STATUSES = frozenset({"INVALID", "CANCELED", "CANCELLED"})
#: OAuth ``error`` codes that mean the refresh token or code is no longer usable.
_EXPIRED_GRANT_ERRORS = frozenset({"refresh_token_authentication_error", "invalid_grant"})
#: OAuth ``error`` codes that mean the app key / secret are refused.
_APP_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
#: Schwab serves at most a year of transactions per request: longer windows are split.
MAX_WINDOW = dt.timedelta(days=365)


class SchwabTokenSource(Protocol):
    """Where the client gets a currently valid access token (refreshing it if needed).
    Raises ``ProviderError`` (``NOT_CONNECTED`` or ``AUTH``) when it cannot."""

    def access_token(self) -> str: ...


# -- OAuth ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OAuthTokens:
    """One token response. The token values are kept out of ``repr`` so that logging the
    object, or an exception that holds it, cannot leak them."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    id_token: str | None = field(repr=False)
    token_type: str
    scope: str | None
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime

    @classmethod
    def from_response(
        cls,
        body: Any,
        *,
        issued_at: dt.datetime,
        refresh_token: str | None = None,
        refresh_expires_at: dt.datetime | None = None,
    ) -> OAuthTokens:
        """A ``/v1/oauth/token`` body → tokens with absolute UTC expiries. On a refresh,
        pass the refresh token and its expiry in use: Schwab may omit the refresh token
        from the answer and never extends its 7-day life."""
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                                "token response has no access_token", endpoint=TOKEN_PATH)
        new_refresh = body.get("refresh_token") or refresh_token
        if not new_refresh:
            raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                                "token response has no refresh_token", endpoint=TOKEN_PATH)
        try:
            expires_in = float(body.get("expires_in", 1800))
        except (TypeError, ValueError):
            raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                                "token response has a non-numeric expires_in",
                                endpoint=TOKEN_PATH) from None
        issued_at = issued_at.astimezone(dt.UTC)
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(new_refresh),
            id_token=body.get("id_token"),
            token_type=str(body.get("token_type") or "Bearer"),
            scope=body.get("scope"),
            expires_at=issued_at + dt.timedelta(seconds=expires_in),
            refresh_expires_at=refresh_expires_at or issued_at + REFRESH_TOKEN_LIFETIME,
        )


def _provider_settings(settings: Settings | ProviderSettings) -> ProviderSettings:
    return settings if isinstance(settings, ProviderSettings) else settings.provider(_PROVIDER)


def app_credentials(provider: ProviderSettings) -> tuple[str, str]:
    """``(app_key, app_secret)``; the sandbox needs no keys, so it gets placeholders there."""
    key, secret = provider.secret("schwab_app_key"), provider.secret("schwab_app_secret")
    if provider.sandbox:
        return key or SANDBOX_APP_KEY, secret or SANDBOX_APP_SECRET
    return key, secret


def _callback_url(settings: Settings | ProviderSettings, callback_url: str | None) -> str:
    return callback_url or _provider_settings(settings).urls["callback_url"]


def authorize_url(settings: Settings | ProviderSettings, *, callback_url: str | None = None) -> str:
    """The page the user opens to grant access; Schwab then redirects to the callback URL
    with ``?code=...&session=...``. ``callback_url`` defaults to ``SCHWAB_CALLBACK_URL``.
    In the sandbox the URL is the in-process sandbox's (``oauth_http`` can open it)."""
    provider = _provider_settings(settings)
    base = sandbox_base_url(ProviderSlug.SCHWAB) if provider.sandbox else provider.base_url
    query = urlencode({
        "response_type": "code",
        "client_id": app_credentials(provider)[0],
        "redirect_uri": _callback_url(settings, callback_url),
    })
    return f"{base.rstrip('/')}{AUTHORIZE_PATH}?{query}"


def code_from_redirect_url(url: str) -> str:
    """The authorization code in the URL Schwab redirected to. Schwab's codes end in ``@``,
    sent URL-encoded as ``%40``; the code must go back decoded (``+`` is kept as is)."""
    query = urlsplit(url.strip()).query
    params: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        params.setdefault(unquote(name), unquote(value))
    if params.get("error"):
        raise ProviderError(
            _PROVIDER, ErrorKind.AUTH,
            f"Schwab did not grant access ({params['error']}): {RECONNECT} and approve it",
            retryable=False,
        )
    code = params.get("code", "")
    if not code:
        raise ProviderError(
            _PROVIDER, ErrorKind.BAD_REQUEST,
            "the redirect URL has no `code` parameter: paste the whole address the browser "
            "was sent to after logging in to Schwab",
            retryable=False,
        )
    return code


def oauth_http(
    settings: Settings | ProviderSettings,
    *,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    hooks: Sequence[CallHook] = (),
) -> ProviderHTTP:
    """A ``ProviderHTTP`` for the token endpoint, with Schwab's error classification (the
    sandbox answers it when ``DASHTAM_SANDBOX`` is on)."""
    provider = _provider_settings(settings)
    if provider.sandbox and transport is None:
        transport = sandbox_transport()
        provider = replace(provider, base_url=sandbox_base_url(ProviderSlug.SCHWAB))
    return ProviderHTTP(provider, label=_PROVIDER, transport=transport,
                        classify=classify_schwab_error, retry=retry, hooks=hooks)


def exchange_code(
    http_or_settings: ProviderHTTP | Settings | ProviderSettings,
    code: str,
    *,
    callback_url: str | None = None,
    now: dt.datetime | None = None,
) -> OAuthTokens:
    """Trade an authorization code for tokens (``grant_type=authorization_code``). A code
    pasted still URL-encoded (``...%40``) is decoded: Schwab wants the trailing ``@``."""
    redirect = _callback_url(
        http_or_settings if not isinstance(http_or_settings, ProviderHTTP) else
        http_or_settings.settings, callback_url,
    )
    code = unquote(code.strip())
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    issued = now or dt.datetime.now(dt.UTC)  # before the call: expiries err on the early side
    try:
        body = _token_call(http_or_settings, form, secrets=[code])
    except ProviderError as error:
        if error.kind is ErrorKind.AUTH and error.status_code == 400:
            # the refused grant here is the code, not a refresh token: say so
            raise ProviderError(
                _PROVIDER, ErrorKind.AUTH,
                "Schwab refused the authorization code (a code works once, for a few "
                "minutes, with the callback URL it was issued for): log in again with "
                "`dashtam connect schwab` and paste the new redirect URL",
                status_code=error.status_code, retryable=False,
            ) from None
        raise
    return OAuthTokens.from_response(body, issued_at=issued)


def refresh_tokens(
    http_or_settings: ProviderHTTP | Settings | ProviderSettings,
    refresh_token: str,
    *,
    refresh_expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> OAuthTokens:
    """A new access token from a refresh token (``grant_type=refresh_token``). Pass the
    current ``refresh_expires_at``: Schwab does not extend the refresh token's life."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    issued = now or dt.datetime.now(dt.UTC)
    body = _token_call(http_or_settings, form, secrets=[refresh_token])
    return OAuthTokens.from_response(
        body, issued_at=issued, refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
    )


def _token_call(
    http_or_settings: ProviderHTTP | Settings | ProviderSettings,
    form: Mapping[str, str],
    *,
    secrets: Iterable[str],
) -> Any:
    """POST the token endpoint with HTTP Basic ``app_key:app_secret`` and a form body."""
    owned = not isinstance(http_or_settings, ProviderHTTP)
    http = oauth_http(http_or_settings) if owned else http_or_settings
    key, secret = app_credentials(http.settings)
    if not (key and secret):
        raise ProviderError(
            _PROVIDER, ErrorKind.NOT_CONFIGURED,
            "SCHWAB_APP_KEY and SCHWAB_APP_SECRET must be set to connect Schwab",
            retryable=False,
        )
    basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
    for value in (basic, key, secret, *secrets):
        http.add_secret(value)
    try:
        return http.request_json(
            "POST", TOKEN_PATH, data=dict(form), use_auth=False,
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded"},
        )
    finally:
        if owned:
            http.close()


# -- errors --------------------------------------------------------------------------------
def oauth_error_fields(body: Any) -> tuple[str, str]:
    """``(error, error_description)`` of an OAuth error body. Schwab's own body is
    ``{"error": ..., "error_description": ...}``; client wrappers re-wrap it with Schwab's
    body quoted as JSON inside their ``error_description``, so that shape is unwrapped."""
    if not isinstance(body, Mapping):
        return "", ""
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    if description.lstrip().startswith("{"):
        try:
            inner = json.loads(description)
        except ValueError:
            inner = None
        if isinstance(inner, Mapping) and inner.get("error"):
            return oauth_error_fields(inner)
    return error, description


def is_token_endpoint(response: httpx.Response) -> bool:
    """Whether ``response`` answers the OAuth token endpoint (``/v1/oauth/token``, under
    whatever base URL prefix). A response built without a request (tests) counts as one
    only if it carries an OAuth ``error`` body; see ``classify_schwab_error``."""
    try:
        path = response.request.url.path
    except RuntimeError:  # no request attached
        return False
    return path.rstrip("/").endswith(TOKEN_PATH)


def classify_schwab_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """Schwab's errors → typed errors with what to do.

    The transient statuses come first, on every endpoint: a 5xx, 429 or 408 is
    ``UNAVAILABLE``/``RATE_LIMITED`` (retried, counted by the breaker) whatever its body
    says. Gateways and proxies answer 5xx with bodies such as ``{"error": "Internal
    Server Error"}``; read as an OAuth error that would be a permanent "token endpoint
    refused the request" and never be retried.

    Only the token endpoint's own answers say something about the login: a refused grant
    (400 ``invalid_grant`` / ``refresh_token_authentication_error``, once the 7 days are
    over) and a refused app (401 ``invalid_client``) are AUTH and not retryable; the
    connection store turns the first into EXPIRED. On a data endpoint a 401 means the
    access token was refused; other 4xx keep the shared layer's reading of the status.
    """
    status = response.status_code
    if status < 400:
        return None
    if status >= 500 or status in (408, 425, 429):
        return None  # the shared layer: UNAVAILABLE / RATE_LIMITED, retried
    error, description = oauth_error_fields(body)
    token_call = is_token_endpoint(response)
    if error and token_call:
        if error in _EXPIRED_GRANT_ERRORS:
            return ProviderError(
                _PROVIDER, ErrorKind.AUTH,
                f"Schwab refused the authorization ({error}); refresh tokens expire 7 days "
                f"after connecting: {RECONNECT}", status_code=status, retryable=False,
            )
        if error in _APP_ERRORS:
            return ProviderError(
                _PROVIDER, ErrorKind.AUTH,
                f"Schwab rejected the app credentials ({error}: {description.strip()}): check "
                "SCHWAB_APP_KEY / SCHWAB_APP_SECRET and that the app is approved",
                status_code=status, retryable=False,
            )
        return ProviderError(_PROVIDER, ErrorKind.BAD_REQUEST,
                             f"token endpoint refused the request ({error}: {description})",
                             status_code=status, retryable=False)
    if status == 401:
        return ProviderError(
            _PROVIDER, ErrorKind.AUTH,
            f"Schwab refused the access token ({_message(body) or error or 'unauthorized'}): "
            f"if this persists, {RECONNECT}", status_code=status, retryable=False,
        )
    return None  # the shared layer's reading of the status is right for the rest


def _message(body: Any) -> str:
    if isinstance(body, Mapping):
        return str(body.get("message") or body.get("error") or "")
    return ""


# -- pure parsers (tests feed them the recorded payloads) ----------------------------------
def parse_accounts(
    body: Any, *, provider: str, as_of: dt.date
) -> tuple[FetchResult, FetchResult]:
    """``/trader/v1/accounts?fields=positions`` → (accounts, positions). Option positions
    keep their OCC symbol as Schwab sends it (``"AMAT  241115C00210000"``), stripped."""
    if not isinstance(body, list):
        raise ProviderError(_PROVIDER, ErrorKind.MALFORMED, "accounts response is not a list",
                            endpoint=ACCOUNTS_PATH)
    accounts: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    bad_accounts: list[RejectedRecord] = []
    bad_positions: list[RejectedRecord] = []
    for entry in body:
        account = entry.get("securitiesAccount") if isinstance(entry, Mapping) else None
        if not isinstance(account, Mapping):
            bad_accounts.append(RejectedRecord("schwab account entry has no securitiesAccount",
                                               scrub_record(entry)))
            continue
        account_id = mask_account(str(account.get("accountNumber") or ""))
        balances = account.get("currentBalances") or {}
        try:
            accounts.append({
                "provider": provider, "account_id": account_id,
                "account_type": account.get("type"),
                "cash": optional_float(balances.get("cashBalance"), "cashBalance"),
                "equity": optional_float(balances.get("liquidationValue"), "liquidationValue"),
                "as_of_date": as_of,
            })
        except ValueError as exc:
            bad_accounts.append(RejectedRecord(f"schwab account: {exc}", scrub_record(entry)))
            continue
        for item in account.get("positions") or []:
            try:
                positions.append(_position_row(item, provider, account_id, as_of))
            except (ValueError, AttributeError) as exc:
                bad_positions.append(RejectedRecord(f"schwab position: {exc}",
                                                    scrub_record(item)))
    return (FetchResult(accounts_frame(accounts), bad_accounts),
            FetchResult(positions_frame(positions), bad_positions))


def _position_row(
    item: Mapping[str, Any], provider: str, account_id: str, as_of: dt.date
) -> dict[str, Any]:
    instrument = item.get("instrument") or {}
    symbol = str(instrument.get("symbol") or "").strip()
    if not symbol:
        raise ValueError("position has no instrument.symbol")
    long_qty = optional_float(item.get("longQuantity"), "longQuantity") or 0.0
    short_qty = optional_float(item.get("shortQuantity"), "shortQuantity") or 0.0
    if not math.isfinite(long_qty - short_qty):  # 1e308 - (-1e308) overflows to inf
        raise ValueError("longQuantity - shortQuantity is too large to store")
    return {
        "provider": provider, "account_id": account_id,
        "symbol": to_canonical(symbol, ProviderSlug.SCHWAB),
        "asset_class": instrument.get("assetType"),
        "quantity": long_qty - short_qty,
        "market_value": optional_float(item.get("marketValue"), "marketValue"),
        "average_cost": optional_float(item.get("averagePrice"), "averagePrice"),
        "as_of_date": as_of,
    }


def parse_transactions(
    body: Any, *, provider: str, account_number: str | None = None
) -> FetchResult:
    """``/trader/v1/accounts/{hash}/transactions`` → ``brokerage.transactions`` rows.

    ``amount`` is Schwab's ``netAmount`` (the sum of the legs' ``cost``, fees included);
    a trade's quantity (unsigned: the type says the side), price and symbol come from its
    non-currency leg, and its side from that leg's signed ``amount`` (the cash sign as a
    fallback). ``account_number`` (from ``accountNumbers``) is used when a record omits
    its own.
    """
    rows, rejected, notes = transaction_rows(body, provider=provider,
                                             account_number=account_number)
    return FetchResult(transactions_frame(rows), rejected, notes)


def transaction_rows(
    body: Any, *, provider: str, account_number: str | None = None
) -> tuple[list[dict[str, Any]], list[RejectedRecord], list[str]]:
    """``parse_transactions`` before the frame is built (to merge several accounts)."""
    items = [body] if isinstance(body, Mapping) else body
    if not isinstance(items, list):
        raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                            "transactions response is not a list", endpoint=TRANSACTIONS_PATH)
    rows: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    notes: list[str] = []
    known = [account_number] if account_number else []
    for item in items:
        status = str(item.get("status") or "").upper() if isinstance(item, Mapping) else ""
        if status in _VOID_STATUSES:
            notes.append(f"schwab: skipped {status.lower()} activity {item.get('activityId')}")
            continue
        try:
            row = _transaction_row(item, known)
        except (ValueError, AttributeError, TypeError) as exc:
            rejected.append(RejectedRecord(f"schwab transaction: {exc}",
                                           scrub_record(item, known)))
            continue
        number = str(item.get("accountNumber") or account_number or "")
        rows.append(row | {"provider": provider, "account_id": mask_account(number)})
    return rows, rejected, notes


def _transaction_row(item: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
    activity_id = item.get("activityId")
    if activity_id in (None, ""):
        raise ValueError("record has no activityId")
    record_type = str(item.get("type") or "").upper()
    legs = [leg for leg in item.get("transferItems") or [] if isinstance(leg, Mapping)]
    security = next(
        (leg for leg in legs
         if (leg.get("instrument") or {}).get("assetType", "CURRENCY") != "CURRENCY"),
        None,
    )
    amount = _net_amount(item, legs)
    occurred = parse_utc(item.get("time") or item.get("tradeDate"), "time")
    trade_date = parse_date(item.get("tradeDate") or item.get("time"), "tradeDate")
    instrument = (security or {}).get("instrument") or {}
    symbol = str(instrument.get("symbol") or "").strip() or None
    description = item.get("description") or instrument.get("description") or record_type
    row: dict[str, Any] = {
        "transaction_id": str(activity_id),
        "occurred_at": occurred,
        "trade_date": trade_date,
        "symbol": to_canonical(symbol, ProviderSlug.SCHWAB) if symbol else None,
        "quantity": None,
        "price": None,
        "amount": amount,
        "currency": "USD",
        "description": scrub_account_numbers(str(description), known),
        "source_file": None,
    }
    if record_type == "TRADE":
        if security is None:
            raise ValueError(f"trade {activity_id} has no security leg")
        quantity = optional_float(security.get("amount"), "transferItems.amount") or 0.0
        side = _trade_side(security, quantity, amount)
        price = optional_float(security.get("price"), "transferItems.price")
        if description == record_type:  # no description sent: say what the trade was
            description = f"{side.value} {abs(quantity):g} {symbol}" + (
                f" @ {price:g}" if price is not None else "")
        return row | {"type": side.value, "quantity": abs(quantity), "price": price,
                      "description": scrub_account_numbers(description, known)}
    if record_type == "DIVIDEND_OR_INTEREST":
        kind = TransactionType.INTEREST if mentions_interest(str(description)) else (
            TransactionType.DIVIDEND)
        return row | {"type": kind.value}
    return row | {"type": _CASH_TYPES.get(record_type, TransactionType.OTHER).value}


def _net_amount(item: Mapping[str, Any], legs: Sequence[Mapping[str, Any]]) -> float:
    """``netAmount``, or the sum of the legs' ``cost`` when Schwab leaves it out."""
    net = optional_float(item.get("netAmount"), "netAmount")
    if net is not None:
        return net
    costs = [optional_float(leg.get("cost"), "transferItems.cost") for leg in legs]
    if not any(c is not None for c in costs):
        raise ValueError(f"record {item.get('activityId')} has neither netAmount nor costs")
    return round(sum(c for c in costs if c is not None), 2)


def _trade_side(leg: Mapping[str, Any], quantity: float, cash: float) -> TransactionType:
    """The security leg's ``amount`` is signed (+ bought, - sold); a leg without one falls
    back on the cash direction, then on ``positionEffect`` for a zero-cost trade."""
    if quantity:
        return TransactionType.BUY if quantity > 0 else TransactionType.SELL
    if cash:
        return TransactionType.BUY if cash < 0 else TransactionType.SELL
    opening = str(leg.get("positionEffect") or "").upper() == "OPENING"
    return TransactionType.BUY if opening else TransactionType.SELL


def parse_account_numbers(body: Any) -> dict[str, str]:
    """``accountNumbers`` → ``{hashValue: accountNumber}`` (numbers stay in memory only)."""
    if not isinstance(body, list):
        raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                            "accountNumbers response is not a list",
                            endpoint=ACCOUNT_NUMBERS_PATH)
    pairs = {str(e.get("hashValue")): str(e.get("accountNumber") or "")
             for e in body if isinstance(e, Mapping) and e.get("hashValue")}
    if len(pairs) != len(body):
        raise ProviderError(_PROVIDER, ErrorKind.MALFORMED,
                            "an accountNumbers entry has no hashValue",
                            endpoint=ACCOUNT_NUMBERS_PATH)
    return pairs


def transaction_windows(start: dt.date, end: dt.date) -> list[dict[str, str]]:
    """Query parameters for ``[start, end]`` (whole UTC days), split into windows of at
    most ``MAX_WINDOW``."""
    windows: list[dict[str, str]] = []
    day = start
    while day <= end:
        last = min(end, day + MAX_WINDOW - dt.timedelta(days=1))
        windows.append({
            "startDate": schwab_timestamp(dt.datetime.combine(day, dt.time(), dt.UTC)),
            "endDate": schwab_timestamp(
                dt.datetime.combine(last, dt.time(23, 59, 59, 999000), dt.UTC)),
            "types": ",".join(TRANSACTION_TYPES),
        })
        day = last + dt.timedelta(days=1)
    return windows


def schwab_timestamp(moment: dt.datetime) -> str:
    """Schwab's ISO form with milliseconds: ``2024-03-28T21:10:42.000Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z")


# -- the client ----------------------------------------------------------------------------
class SchwabClient(ProviderClient):
    """Accounts, positions and transactions of every account the Schwab login can see."""

    slug = ProviderSlug.SCHWAB

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        token_source: SchwabTokenSource | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        hooks: Sequence[CallHook] = (),
    ) -> None:
        self.token_source = token_source
        self._bearer: str | None = None
        super().__init__(settings, transport=transport, retry=retry, hooks=hooks)

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_schwab_error(response, body)

    # -- data ----------------------------------------------------------------------------
    def fetch_accounts(self, request: FetchRequest) -> FetchResult:
        accounts, _ = self._accounts(request)
        return accounts

    def fetch_positions(self, request: FetchRequest) -> FetchResult:
        _, positions = self._accounts(request)
        return positions

    def fetch_transactions(self, request: FetchRequest) -> FetchResult:
        """Every account's transactions in ``[start, end]`` (default: the whole history
        Schwab offers, ``HISTORY_LIMIT``), in windows of at most a year (Schwab's limit per
        request)."""
        end_day = request.end or request.as_of or market_today()
        start_day = request.start or end_day - DEFAULT_LOOKBACK
        numbers = parse_account_numbers(self._get(ACCOUNT_NUMBERS_PATH))
        rows: list[dict[str, Any]] = []
        rejected: list[RejectedRecord] = []
        notes: list[str] = []
        for account_hash, number in numbers.items():
            count = 0
            for params in transaction_windows(start_day, end_day):
                body = self._get(TRANSACTIONS_PATH.format(hash=account_hash), params)
                part_rows, part_rejected, part_notes = transaction_rows(
                    body, provider=self.provider_label, account_number=number)
                rows += part_rows
                rejected += part_rejected
                notes += part_notes
                count += len(part_rows)
            notes.append(f"schwab: account {mask_account(number)}: {count} transactions")
        return FetchResult(transactions_frame(rows), rejected, notes)

    # -- internals -----------------------------------------------------------------------
    def _accounts(self, request: FetchRequest) -> tuple[FetchResult, FetchResult]:
        body = self._get(ACCOUNTS_PATH, {"fields": "positions"})
        return parse_accounts(body, provider=self.provider_label,
                              as_of=request.as_of or market_today())

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a data endpoint with the bearer. A 401 there means the access token was
        refused: it is refreshed once (the token endpoint's answer is what decides the
        connection: a refused refresh token makes it EXPIRED and raises NOT_CONNECTED)
        and the request is sent again; a second 401 is raised as is."""
        self._authorize()
        try:
            return self.http.get_json(path, params)
        except ProviderError as error:
            refresh = getattr(self.token_source, "refresh", None)
            if not (error.kind is ErrorKind.AUTH and error.status_code == 401
                    and callable(refresh)):
                raise
            token = refresh()
            if not token or token == self._bearer:
                raise
            self._use_bearer(token)
            return self.http.get_json(path, params)

    def _authorize(self) -> None:
        """Put a fresh bearer on the HTTP layer (and mark the token as a secret)."""
        self._use_bearer(self._access_token())

    def _use_bearer(self, token: str) -> None:
        if token != self._bearer:
            self.http.add_secret(token)
            self.http.set_auth_header("Authorization", f"Bearer {token}")
            self._bearer = token

    def _access_token(self) -> str:
        if self.token_source is None:  # the sandbox checks tokens too: no shortcut there
            raise ProviderError(_PROVIDER, ErrorKind.NOT_CONNECTED,
                                f"no Schwab connection: {RECONNECT}", retryable=False)
        token = self.token_source.access_token()
        if not token:
            raise ProviderError(_PROVIDER, ErrorKind.NOT_CONNECTED,
                                f"the Schwab connection has no access token: {RECONNECT}",
                                retryable=False)
        return token
