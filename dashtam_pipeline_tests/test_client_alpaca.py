"""Alpaca client: parsers fed every recorded Alpaca payload, error classification, and the
client end to end over ``httpx.MockTransport`` (real paths, key headers, activity paging,
no key in any error)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.alpaca import client as alpaca
from dashtam_pipeline.providers.alpaca.client import (
    AlpacaClient,
    activity_type_of,
    parse_account,
    parse_activities,
    parse_positions,
)
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.brokerage import AccountSchema, PositionSchema, TransactionSchema
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

KEY_ID = "PKTESTKEYID0001"
SECRET = "test-secret-key-0002"
BASE = "https://paper-api.alpaca.markets"
AS_OF = dt.date(2025, 11, 14)
PAPER_ACCOUNT = "alpaca/v2_account_paper_real_2025-11-14.json"
PAPER_POSITIONS = "alpaca/v2_positions_paper_real_2025-11-14.json"
FILL_DIV = "alpaca/account_activities_fill_div_anonymized.json"
FILL_FEE = "alpaca/account_activities_fill_fee_anonymized.json"


def make_client(handler: Handler) -> AlpacaClient:
    settings = offline_settings(
        "alpaca", alpaca_api_key_id=KEY_ID, alpaca_api_secret_key=SECRET, alpaca_base_url=BASE,
    )
    return mock_client(AlpacaClient, handler, settings)


# -- accounts and positions --------------------------------------------------------------------
def test_paper_account_money_strings_become_floats_and_the_number_is_masked() -> None:
    row, number = parse_account(load_json(PAPER_ACCOUNT), provider="alpaca", as_of=AS_OF)
    assert row == {
        "provider": "alpaca", "account_id": "****OD4M", "account_type": "margin",
        "cash": 954321.95, "equity": 1000067.78, "as_of_date": AS_OF,
    }
    assert number == "PA33WXN7OD4M"


@pytest.mark.parametrize("payload", ["alpaca/docs_example_account.json",
                                     "alpaca/v2_account_alpaca_py_mock.json"])
def test_docs_and_alpaca_py_accounts_read_the_same(payload: str) -> None:
    # the docs send daytrade_count as a string, alpaca-py as an int: neither matters here
    row, _ = parse_account(load_json(payload), provider="alpaca", as_of=AS_OF)
    assert row["account_id"] == "****ABCD"
    assert row["cash"] == -23140.2 and row["equity"] == 103820.56
    assert row["account_type"] == "margin"  # multiplier "4"


def test_account_type_prefers_alpacas_field_then_the_multiplier() -> None:
    body = load_json(PAPER_ACCOUNT)
    assert parse_account(body | {"account_type": "CASH"}, provider="a", as_of=AS_OF)[0][
        "account_type"] == "cash"
    assert parse_account(body | {"multiplier": "1"}, provider="a", as_of=AS_OF)[0][
        "account_type"] == "cash"


def test_paper_positions_sum_to_the_accounts_long_market_value() -> None:
    result = parse_positions(load_json(PAPER_POSITIONS), provider="alpaca",
                             account_id="****OD4M", as_of=AS_OF)
    frame = PositionSchema.validate(owned(result.frame))
    assert result.rejected == []
    assert list(frame["symbol"]) == ["AAPL", "AMD", "AMZN", "GOOG", "META", "NVDA", "SPY", "TSLA"]
    assert frame["market_value"].sum() == pytest.approx(45745.0845)
    long_market_value = float(load_json(PAPER_ACCOUNT)["long_market_value"])
    assert abs(frame["market_value"].sum() - long_market_value) < 1.0
    spy = frame[frame["symbol"] == "SPY"].iloc[0]
    assert (spy["quantity"], spy["average_cost"]) == (51.0, 666.737843)
    assert set(frame["account_id"]) == {"****OD4M"} and set(frame["asset_class"]) == {"us_equity"}


def test_docs_position_symbol_with_a_trailing_space_is_stripped() -> None:
    result = parse_positions([load_json("alpaca/docs_example_position.json")],
                             provider="alpaca", account_id="****ABCD", as_of=AS_OF)
    row = result.frame.iloc[0]
    assert row["symbol"] == "AAPL"
    assert (row["quantity"], row["market_value"], row["average_cost"]) == (5.0, 600.0, 100.0)


def test_a_position_without_a_number_is_rejected_not_raised() -> None:
    bad = dict(load_json(PAPER_POSITIONS)[0], qty="n/a")
    result = parse_positions([bad], provider="alpaca", account_id="****OD4M", as_of=AS_OF)
    assert result.frame.empty
    assert "qty is not a number" in result.rejected[0].reason


# -- activities --------------------------------------------------------------------------------
def test_fills_and_dividends_signed_with_each_partial_fill_its_own_row() -> None:
    result = parse_activities(load_json(FILL_DIV), provider="alpaca", account_id="****OD4M")
    frame = TransactionSchema.validate(owned(result.frame))
    assert list(frame.columns) == column_names(TransactionSchema)
    assert list(frame["type"]) == ["SELL", "DIVIDEND", "BUY", "BUY", "BUY", "BUY", "DIVIDEND"]
    assert frame["transaction_id"].is_unique
    sell = frame.iloc[0]
    assert (sell["quantity"], sell["price"], sell["amount"]) == (54.0, 9.33, 503.82)
    buys = frame[frame["type"] == "BUY"]
    assert list(buys["quantity"]) == [100.0, 27.0, 27.0, 21.0]
    assert buys["quantity"].sum() == 175.0  # the order's final cum_qty
    assert list(buys["amount"]) == [-42250.0, -11407.5, -11407.5, -8872.5]
    dividend = frame.iloc[1]
    assert (dividend["symbol"], dividend["amount"], dividend["quantity"]) == ("EFG", 1.87, 11.0)
    assert dividend["trade_date"] == dt.date(2021, 6, 16)
    assert str(dividend["occurred_at"]) == "2021-06-16 04:00:00+00:00"  # midnight in New York
    assert str(frame.iloc[2]["occurred_at"]) == "2021-06-17 15:35:39.608000+00:00"


def test_fees_are_negative_and_never_quote_the_account_number() -> None:
    result = parse_activities(load_json(FILL_FEE), provider="alpaca",
                              account_id="****9999", account_number="999999999")
    frame = TransactionSchema.validate(owned(result.frame))
    assert len(frame) == 5 and frame["transaction_id"].is_unique
    fees = frame[frame["type"] == "FEE"]
    assert list(fees["amount"]) == [-0.01, -0.01]
    assert fees["description"].str.startswith(("TAF fee", "REG fee")).all()
    assert not frame["description"].str.contains("999999999").any()
    assert fees["description"].str.endswith("by ****9999").all()
    # the anonymized export reuses the first fill's id for the TAF fee: both rows kept
    assert frame.iloc[3]["transaction_id"].endswith("#FEE")
    assert any("reused" in note for note in result.notes)
    assert frame[frame["type"] == "SELL"]["amount"].sum() == pytest.approx(9.33 * 56)


def test_dividend_quantity_with_19_decimals() -> None:
    result = parse_activities(load_json("alpaca/activity_DIV_fractional_qty_apca_test.json"),
                              provider="alpaca", account_id="****0001")
    row = result.frame.iloc[0]
    assert row["quantity"] == float("201.9617035750071243")
    assert (row["type"], row["symbol"], row["amount"], row["price"]) == (
        "DIVIDEND", "SPY", 21.97, 0.108783)
    assert row["transaction_id"] == "20200626000000000::e3163618-f82b-4568-af54-b30404484224"


def test_docs_trade_and_non_trade_activity_examples() -> None:
    fill = parse_activities(load_json("alpaca/docs_example_trade_activity_FILL.json"),
                            provider="alpaca", account_id="****ABCD").frame.iloc[0]
    assert (fill["type"], fill["symbol"], fill["amount"]) == ("BUY", "LPCN", -1.63)
    div = parse_activities(load_json("alpaca/docs_example_nontrade_activity_DIV.json"),
                           provider="alpaca", account_id="****ABCD").frame.iloc[0]
    assert (div["type"], div["symbol"], div["amount"], div["price"]) == (
        "DIVIDEND", "T", 1.02, 0.51)


def test_broker_api_items_carry_their_own_masked_account() -> None:
    items = (load_json("alpaca/broker_v1_accounts_activities_page1.json")
             + load_json("alpaca/broker_v1_accounts_activities_page2.json"))
    frame = parse_activities(items, provider="alpaca", account_id="****XXXX").frame
    assert len(frame) == 8
    assert list(frame["account_id"][:3]) == ["****b9b4", "****9bca", "****a165"]
    deposits = frame[frame["type"] == "DEPOSIT"]
    assert len(deposits) == 7
    assert deposits["amount"].sum() == pytest.approx(227723.21)
    fill = frame[frame["type"] == "BUY"].iloc[0]
    assert (fill["symbol"], fill["quantity"], fill["amount"]) == ("GOOGL", 9.0, -23678.55)


@pytest.mark.parametrize(("code", "expected"), [
    ("DIVNRA", "DIVIDEND"), ("FEE", "FEE"), ("CSD", "DEPOSIT"), ("CSW", "WITHDRAWAL"),
    ("INT", "INTEREST"), ("JNLC", "TRANSFER"), ("ACATC", "OTHER"),
])
def test_non_trade_activity_types(code: str, expected: str) -> None:
    assert activity_type_of(code).value == expected


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "status", "kind", "retryable"), [
    ("alpaca/error_401_request_not_authorized.json", 401, ErrorKind.AUTH, False),
    ("alpaca/error_403_forbidden_bad_key.json", 403, ErrorKind.AUTH, False),
    ("alpaca/error_403_insufficient_buying_power.json", 403, ErrorKind.BAD_REQUEST, False),
    ("alpaca/error_403_data_api_sip_subscription.json", 403, ErrorKind.NOT_ENTITLED, False),
    ("alpaca/error_404_position_does_not_exist.json", 404, ErrorKind.NOT_FOUND, False),
])
def test_error_bodies_are_classified(payload: str, status: int, kind: ErrorKind,
                                     retryable: bool) -> None:
    body = load_json(payload)
    client = make_client(lambda request: json_response(body, status))
    with pytest.raises(ProviderError) as caught:
        client.fetch_accounts(FetchRequest(as_of=AS_OF))
    error = caught.value
    assert (error.provider, error.kind, error.retryable, error.status_code) == (
        "alpaca", kind, retryable, status)
    assert body["message"] in str(error)
    assert KEY_ID not in str(error) and SECRET not in str(error)


def test_rate_limit_is_retried_then_reported() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return json_response({"message": "too many requests."}, 429)

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_accounts(FetchRequest(as_of=AS_OF))
    assert caught.value.kind is ErrorKind.RATE_LIMITED and caught.value.retryable
    assert len(calls) == 3


# -- end to end --------------------------------------------------------------------------------
def test_client_sends_key_headers_and_pages_activities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alpaca, "PAGE_SIZE", 4)
    page1 = load_json("alpaca/broker_v1_accounts_activities_page1.json")
    page2 = load_json("alpaca/broker_v1_accounts_activities_page2.json")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v2/account":
            return json_response(load_json(PAPER_ACCOUNT))
        if request.url.path == "/v2/positions":
            return json_response(load_json(PAPER_POSITIONS))
        assert request.url.path == "/v2/account/activities"
        token = request.url.params.get("page_token")
        pages = {None: page1, page1[-1]["id"]: page2, page2[-1]["id"]: []}
        return json_response(pages[token])

    client = make_client(handler)
    accounts = AccountSchema.validate(owned(client.fetch_accounts(FetchRequest(as_of=AS_OF)).frame))
    positions = client.fetch_positions(FetchRequest(as_of=AS_OF)).frame
    result = client.fetch_transactions(
        FetchRequest(start=dt.date(2022, 3, 1), end=dt.date(2022, 4, 30), as_of=AS_OF))

    assert accounts.iloc[0]["cash"] == 954321.95
    assert set(positions["account_id"]) == {"****OD4M"} and len(positions) == 8
    assert len(result.frame) == 8
    for request in seen:
        assert request.headers["APCA-API-KEY-ID"] == KEY_ID
        assert request.headers["APCA-API-SECRET-KEY"] == SECRET
        assert KEY_ID not in str(request.url) and SECRET not in str(request.url)
    activity_calls = [r for r in seen if r.url.path.endswith("/activities")]
    assert len(activity_calls) == 3
    first = activity_calls[0].url.params
    assert (first["after"], first["until"], first["direction"], first["page_size"]) == (
        "2022-02-28", "2022-05-01", "asc", "4")
    assert "page_token" not in first
    assert activity_calls[2].url.params["page_token"] == page2[-1]["id"]
