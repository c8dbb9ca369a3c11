"""Schwab client: parsers fed every recorded Schwab payload, the OAuth helpers (authorize
URL, redirect code, token exchange and refresh) and the data calls end to end over
``httpx.MockTransport`` — real paths, Basic auth on the token call, Bearer on data calls,
and no token or app secret in any error."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.schwab.client import (
    TRANSACTION_TYPES,
    OAuthTokens,
    SchwabClient,
    authorize_url,
    code_from_redirect_url,
    exchange_code,
    oauth_error_fields,
    oauth_http,
    parse_account_numbers,
    parse_accounts,
    parse_transactions,
    refresh_tokens,
    transaction_windows,
)
from dashtam_pipeline.schemas.brokerage import AccountSchema, PositionSchema, TransactionSchema
from dashtam_pipeline.settings import ProviderSettings, load_settings
from dashtam_pipeline_tests.client_helpers import (
    Handler,
    json_response,
    mock_client,
    offline_settings,
    owned,
)
from dashtam_pipeline_tests.payloads import load_json

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

APP_KEY = "app-key-0123456789"
APP_SECRET = "app-secret-9876543210"
ACCESS = "access-token-abcdef123456"
REFRESH = "refresh-token-zyxwv98765"
BASE = "https://api.schwabapi.com"
CALLBACK = "https://127.0.0.1:8182"
AS_OF = dt.date(2024, 5, 10)
NOW = dt.datetime(2024, 5, 10, 14, 0, tzinfo=dt.UTC)
MASKED = "schwab/accounts_fields_positions_margin_masked.json"
OPTION = "schwab/accounts_fields_positions_margin_option_position.json"
TRADES = "schwab/transactions_types_TRADE_options_2024-05.json"
HIMS = "schwab/transaction_single_option_trade_HIMS.json"
TOKENS = "schwab/oauth_token_response_SHAPE_ONLY_placeholder_values.json"
REFRESH_EXPIRED = "schwab/oauth_token_error_400_refresh_token_authentication_error.json"
INVALID_CLIENT = "schwab/oauth_token_error_401_invalid_client.json"
ACCOUNT_NUMBERS = "schwab/accountNumbers_SHAPE_ONLY_test_mock.json"

class StaticTokens:
    """A token source that always has the same access token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def access_token(self) -> str:
        return self.token


def provider_settings() -> ProviderSettings:
    return offline_settings(
        "schwab", schwab_app_key=APP_KEY, schwab_app_secret=APP_SECRET, schwab_base_url=BASE,
    )


def make_client(handler: Handler, token: str | None = ACCESS) -> SchwabClient:
    return mock_client(SchwabClient, handler, provider_settings(),
                       token_source=StaticTokens(token) if token is not None else None)


def token_http(handler: Handler) -> Any:
    return mock_client(oauth_http, handler, provider_settings())


def assert_no_secret(text: str) -> None:
    for secret in (APP_KEY, APP_SECRET, ACCESS, REFRESH,
                   base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode()):
        assert secret not in text


# -- accounts and positions --------------------------------------------------------------------
def test_masked_margin_account_balances_and_equity_positions() -> None:
    accounts, positions = parse_accounts(load_json(MASKED), provider="schwab", as_of=AS_OF)
    account = AccountSchema.validate(owned(accounts.frame)).iloc[0]
    # Schwab's own mask "********" keeps no characters: the id is just "****"
    assert (account["account_id"], account["account_type"]) == ("****", "MARGIN")
    assert (account["cash"], account["equity"]) == (13367.24, 16039.8)
    frame = PositionSchema.validate(owned(positions.frame))
    assert list(frame["symbol"]) == ["NVDA", "MSCI"]
    assert list(frame["quantity"]) == [4.0, 4.0]
    assert list(frame["average_cost"]) == [113.53, 572.32]
    long_market_value = load_json(MASKED)[0]["securitiesAccount"]["currentBalances"][
        "longMarketValue"]
    assert frame["market_value"].sum() == pytest.approx(long_market_value)


def test_option_position_keeps_its_occ_symbol() -> None:
    accounts, positions = parse_accounts(load_json(OPTION), provider="schwab", as_of=AS_OF)
    account = accounts.frame.iloc[0]
    assert (account["account_id"], account["cash"], account["equity"]) == (
        "****5678", 3540.83, 4045.83)
    option = PositionSchema.validate(owned(positions.frame)).iloc[0]
    assert option["symbol"] == "AMAT  241115C00210000"
    assert (option["asset_class"], option["quantity"], option["market_value"],
            option["average_cost"]) == ("OPTION", 1.0, 505.0, 5.25)
    assert "12345678" not in accounts.frame.to_string() + positions.frame.to_string()


def test_short_quantity_is_subtracted() -> None:
    body = load_json(MASKED)
    body[0]["securitiesAccount"]["positions"][0] |= {"longQuantity": 0, "shortQuantity": 3}
    _, positions = parse_accounts(body, provider="schwab", as_of=AS_OF)
    assert positions.frame.iloc[0]["quantity"] == -3.0


# -- transactions ------------------------------------------------------------------------------
def test_trade_amounts_are_net_amount_which_is_the_sum_of_leg_costs() -> None:
    records = load_json(TRADES)
    frame = TransactionSchema.validate(owned(
        parse_transactions(records, provider="schwab").frame))
    for record, (_, row) in zip(records, frame.iterrows(), strict=True):
        assert row["transaction_id"] == str(record["activityId"])
        assert row["amount"] == record["netAmount"]
        assert row["amount"] == pytest.approx(sum(leg["cost"] for leg in record["transferItems"]))
    assert list(frame["type"]) == ["BUY", "SELL", "SELL"]
    assert list(frame["symbol"]) == [
        "CVS   240816C00057500", "AAPL  240517C00180000", "SNAP  240517C00012000"]
    assert list(frame["quantity"]) == [1.0, 1.0, 2.0]
    assert list(frame["price"]) == [2.48, 6.5, 3.1]
    assert list(frame["account_id"]) == ["****5678", "****3928", "****3928"]
    assert list(frame["trade_date"]) == [dt.date(2024, 5, 7), dt.date(2024, 5, 3),
                                         dt.date(2024, 4, 30)]
    assert str(frame.iloc[0]["occurred_at"]) == "2024-05-07 13:30:01+00:00"
    assert not frame.to_string().count("21453928")


def test_lean_record_with_bare_fee_legs() -> None:
    row = parse_transactions(load_json(HIMS), provider="schwab").frame.iloc[0]
    assert (row["type"], row["symbol"], row["quantity"], row["price"], row["amount"]) == (
        "BUY", "HIMS  250801P00046000", 1.0, 0.81, -81.66)
    assert row["account_id"] == "****1495" and row["transaction_id"] == "100209943191"
    assert row["description"] == "HIMS & HERS HEALTH INC 08/01/2025 $46 Put"


def test_net_amount_missing_falls_back_on_the_leg_costs() -> None:
    record = load_json(HIMS)
    del record["netAmount"]
    del record["transferItems"][-1]["instrument"]["description"]
    row = parse_transactions(record, provider="schwab").frame.iloc[0]
    assert row["amount"] == -81.66
    assert row["description"] == "BUY 1 HIMS  250801P00046000 @ 0.81"


@pytest.mark.parametrize(("schwab_type", "description", "amount", "expected"), [
    ("DIVIDEND_OR_INTEREST", "QUALIFIED DIVIDEND", 12.5, "DIVIDEND"),
    ("DIVIDEND_OR_INTEREST", "SCHWAB1 INT 04/26-05/27", 0.42, "INTEREST"),
    ("ACH_RECEIPT", "TFR FROM BANK", 500.0, "DEPOSIT"),
    ("WIRE_OUT", "WIRE FUNDS", -1000.0, "WITHDRAWAL"),
    ("JOURNAL", "JOURNAL TO 87654321", -50.0, "TRANSFER"),
    ("MEMORANDUM", "SOMETHING NEW", 0.0, "OTHER"),
])
def test_non_trade_types(schwab_type: str, description: str, amount: float,
                         expected: str) -> None:
    # a non-trade record in the shape of the recorded trade, minus its security leg
    record = load_json(HIMS) | {"type": schwab_type, "description": description,
                                "netAmount": amount}
    record["transferItems"] = record["transferItems"][:1]
    row = parse_transactions([record], provider="schwab").frame.iloc[0]
    assert (row["type"], row["amount"], row["symbol"]) == (expected, amount, None)
    assert "87654321" not in row["description"]


def test_a_trade_without_a_security_leg_is_rejected_with_the_number_masked() -> None:
    record = load_json(HIMS)
    record["transferItems"] = record["transferItems"][:4]
    result = parse_transactions([record], provider="schwab")
    assert result.frame.empty
    assert "no security leg" in result.rejected[0].reason
    assert result.rejected[0].record["accountNumber"] == "****1495"


def test_account_numbers_map_hashes() -> None:
    assert parse_account_numbers(load_json(ACCOUNT_NUMBERS)) == {"ABC123HASH": "15011495"}


# -- OAuth -------------------------------------------------------------------------------------
def test_authorize_url_carries_app_key_and_callback() -> None:
    url = urlsplit(authorize_url(provider_settings()))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{BASE}/v1/oauth/authorize"
    assert parse_qs(url.query) == {"response_type": ["code"], "client_id": [APP_KEY],
                                   "redirect_uri": [CALLBACK]}
    custom = authorize_url(load_settings(schwab_app_key=APP_KEY,
                                         schwab_callback_url="https://localhost:9000/cb"))
    assert parse_qs(urlsplit(custom).query)["redirect_uri"] == ["https://localhost:9000/cb"]


def test_code_from_redirect_url_decodes_the_trailing_at() -> None:
    url = f"{CALLBACK}/?code=C0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.Zx9%2BabC%40&session=abc-123"
    assert code_from_redirect_url(url) == "C0.b2F1dGgyLmJkYy5zY2h3YWIuY29t.Zx9+abC@"
    with pytest.raises(ProviderError) as caught:
        code_from_redirect_url(f"{CALLBACK}/?session=abc")
    assert caught.value.kind is ErrorKind.BAD_REQUEST and "code" in caught.value.message
    with pytest.raises(ProviderError) as denied:
        code_from_redirect_url(f"{CALLBACK}/?error=access_denied")
    assert denied.value.kind is ErrorKind.AUTH


def test_exchange_code_posts_basic_auth_form_and_returns_expiries() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(load_json(TOKENS))

    tokens = exchange_code(token_http(handler), "C0.abc%40", now=NOW)  # pasted still encoded
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/v1/oauth/token")
    expected = base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["authorization_code"], "code": ["C0.abc@"], "redirect_uri": [CALLBACK]}
    assert (tokens.access_token, tokens.refresh_token, tokens.id_token) == ("at", "rt", "x")
    assert (tokens.token_type, tokens.scope) == ("Bearer", "api")
    assert tokens.expires_at == NOW + dt.timedelta(seconds=1800)
    assert tokens.refresh_expires_at == NOW + dt.timedelta(days=7)
    assert "'at'" not in repr(tokens) and "'rt'" not in repr(tokens)


def test_refresh_keeps_the_original_refresh_expiry() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(load_json(TOKENS))

    original_expiry = NOW + dt.timedelta(days=2)
    tokens = refresh_tokens(token_http(handler), REFRESH, refresh_expires_at=original_expiry,
                            now=NOW)
    assert parse_qs(seen[0].content.decode()) == {
        "grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
    assert seen[0].headers["Authorization"].startswith("Basic ")
    assert tokens.refresh_expires_at == original_expiry
    assert tokens.expires_at == NOW + dt.timedelta(minutes=30)


def test_token_body_without_access_token_is_malformed() -> None:
    with pytest.raises(ProviderError) as caught:
        OAuthTokens.from_response({"token_type": "Bearer"}, issued_at=NOW)
    assert caught.value.kind is ErrorKind.MALFORMED


def test_expired_refresh_token_tells_the_user_to_reconnect() -> None:
    body = load_json(REFRESH_EXPIRED)
    with pytest.raises(ProviderError) as caught:
        refresh_tokens(token_http(lambda r: json_response(body, 400)), REFRESH, now=NOW)
    error = caught.value
    assert (error.provider, error.kind, error.retryable, error.status_code) == (
        "schwab", ErrorKind.AUTH, False, 400)
    assert "refresh_token_authentication_error" in str(error)
    assert "dashtam connect schwab" in str(error)
    assert_no_secret(str(error))


def test_wrapper_shape_with_schwabs_body_quoted_inside_is_unwrapped() -> None:
    inner = load_json(REFRESH_EXPIRED)
    wrapped = {"error": "invalid_request", "error_description": json.dumps(inner)}
    assert oauth_error_fields(wrapped) == (inner["error"], inner["error_description"])
    with pytest.raises(ProviderError) as caught:
        refresh_tokens(token_http(lambda r: json_response(wrapped, 400)), REFRESH, now=NOW)
    assert caught.value.kind is ErrorKind.AUTH and not caught.value.retryable


def test_invalid_client_names_the_app_settings_without_leaking_them() -> None:
    body = load_json(INVALID_CLIENT)
    with pytest.raises(ProviderError) as caught:
        exchange_code(token_http(lambda r: json_response(body, 401)), "C0.abc@", now=NOW)
    error = caught.value
    assert (error.kind, error.retryable, error.status_code) == (ErrorKind.AUTH, False, 401)
    assert "invalid_client" in str(error) and "SCHWAB_APP_SECRET" in str(error)
    assert_no_secret(str(error))


def test_token_call_echoing_secrets_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response({"message": f"bad {REFRESH} for {APP_KEY}"}, 500)

    with pytest.raises(ProviderError) as caught:
        refresh_tokens(token_http(handler), REFRESH, now=NOW)
    assert caught.value.kind is ErrorKind.UNAVAILABLE and caught.value.retryable
    assert_no_secret(str(caught.value))


# -- data calls end to end ---------------------------------------------------------------------
def schwab_api(seen: list[httpx.Request]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/trader/v1/accounts/accountNumbers":
            return json_response(load_json(ACCOUNT_NUMBERS))
        if path == "/trader/v1/accounts":
            return json_response(load_json(OPTION))
        if path == "/trader/v1/accounts/ABC123HASH/transactions":
            return json_response([*load_json(TRADES), load_json(HIMS)])
        return json_response({"message": "not found"}, 404)

    return handler


def test_data_calls_use_real_paths_and_the_bearer_token() -> None:
    seen: list[httpx.Request] = []
    client = make_client(schwab_api(seen))
    accounts = client.fetch_accounts(FetchRequest(as_of=AS_OF)).frame
    positions = client.fetch_positions(FetchRequest(as_of=AS_OF)).frame
    result = client.fetch_transactions(
        FetchRequest(start=dt.date(2024, 3, 28), end=dt.date(2024, 5, 10), as_of=AS_OF))

    assert accounts.iloc[0]["equity"] == 4045.83
    assert positions.iloc[0]["symbol"] == "AMAT  241115C00210000"
    frame = TransactionSchema.validate(owned(result.frame))
    assert len(frame) == 4 and frame["amount"].sum() == pytest.approx(
        -248.66 + 649.33 + 618.67 - 81.66)
    assert all(r.headers["Authorization"] == f"Bearer {ACCESS}" for r in seen)
    assert [r.url.path for r in seen] == [
        "/trader/v1/accounts", "/trader/v1/accounts", "/trader/v1/accounts/accountNumbers",
        "/trader/v1/accounts/ABC123HASH/transactions"]
    assert seen[0].url.params["fields"] == "positions"
    params = seen[-1].url.params
    assert params["startDate"] == "2024-03-28T00:00:00.000Z"
    assert params["endDate"] == "2024-05-10T23:59:59.999Z"
    assert params["types"].split(",") == list(TRANSACTION_TYPES)


def test_no_connection_is_not_connected_before_any_request() -> None:
    seen: list[httpx.Request] = []
    client = make_client(schwab_api(seen), token=None)
    with pytest.raises(ProviderError) as caught:
        client.fetch_accounts(FetchRequest(as_of=AS_OF))
    error = caught.value
    assert (error.provider, error.kind, error.retryable) == (
        "schwab", ErrorKind.NOT_CONNECTED, False)
    assert "dashtam connect schwab" in error.message
    assert seen == []


def test_refused_access_token_is_auth_and_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response({"message": f"token {ACCESS} is invalid"}, 401)

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_accounts(FetchRequest(as_of=AS_OF))
    error = caught.value
    assert (error.kind, error.retryable, error.status_code) == (ErrorKind.AUTH, False, 401)
    assert "dashtam connect schwab" in str(error)
    assert_no_secret(str(error))


def test_windows_longer_than_a_year_are_split() -> None:
    windows = transaction_windows(dt.date(2023, 1, 1), dt.date(2024, 6, 30))
    assert [(w["startDate"], w["endDate"]) for w in windows] == [
        ("2023-01-01T00:00:00.000Z", "2023-12-31T23:59:59.999Z"),
        ("2024-01-01T00:00:00.000Z", "2024-06-30T23:59:59.999Z"),
    ]
