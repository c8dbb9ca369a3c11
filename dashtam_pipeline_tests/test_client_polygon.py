"""Polygon client: every recorded payload parses to exact values (ns timestamps included),
errors classify by status and body, and the fetch methods follow ``next_url`` with the key."""

from __future__ import annotations

import copy
import datetime as dt
import json
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest, RejectedRecord
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.polygon.client import (
    PolygonClient,
    occ_contract,
    parse_aggs,
    parse_daily_bars,
    parse_last_nbbo,
    parse_last_trade,
    parse_options_contracts,
    parse_options_snapshot,
    parse_prev_quotes,
    parse_trades,
)
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.market import DailyBarSchema, OptionContractSchema, QuoteSchema
from dashtam_pipeline_tests.client_helpers import (
    Handler,
    Recorder,
    mock_client,
    offline_settings,
    unused,
)
from dashtam_pipeline_tests.payloads import all_payloads, load_bytes, load_json

KEY = "test-key-123"
AS_OF = dt.date(2023, 3, 13)
NEW_YORK = ZoneInfo("America/New_York")


# -- aggregates ----------------------------------------------------------------------------
def test_prev_aggregate_as_quote() -> None:
    frame = parse_prev_quotes(load_json("polygon/aggs_prev_AAPL.json"), "polygon")
    QuoteSchema.validate(frame)
    assert list(frame.columns) == column_names(QuoteSchema)
    row = frame.iloc[0]
    assert (row["symbol"], row["price"], row["open"]) == ("AAPL", 156.8, 162.25)
    assert (row["day_high"], row["day_low"]) == (162.34, 156.72)
    assert row["volume"] == 95595226
    assert row["quoted_at"] == pd.Timestamp("2022-04-26 20:00:00", tz="UTC")  # t in ms
    assert row["quote_date"] == dt.date(2022, 4, 26)
    for column in ("previous_close", "change", "change_pct", "market_cap", "exchange"):
        assert pd.isna(row[column]), column
    assert row["provider"] == "polygon" and not row["is_stale"]


def test_range_aggregates_as_daily_bars() -> None:
    frame = parse_daily_bars(load_json("polygon/aggs_range_1_day_AAPL.json"), "sandbox:polygon")
    DailyBarSchema.validate(frame)
    assert frame["date"].tolist() == [dt.date(2005, 4, 1), dt.date(2005, 4, 4)]
    first = frame.iloc[0]
    assert first["symbol"] == "AAPL"  # from the body's "ticker"
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        1.5032, 1.5064, 1.4489, 1.4604)
    assert first["volume"] == 642646396.0
    assert first["vwap"] == 1.469
    assert set(frame["provider"]) == {"sandbox:polygon"}


def test_grouped_aggregates_take_symbol_per_bar() -> None:
    frame = parse_aggs(load_json("polygon/aggs_grouped_us_stocks.json"))
    assert len(frame) == 1
    bar = frame.iloc[0]
    assert bar["symbol"] == "GIK"
    assert bar["timestamp"] == pd.Timestamp(1602705600000, unit="ms", tz="UTC")
    assert bar["date"] == dt.date(2020, 10, 14)  # the bar's own date, not the one asked
    assert (bar["open"], bar["close"], bar["vwap"], bar["volume"]) == (
        9.99, 10.02, 9.9979, 895345.0)
    assert bar["transactions"] == 96


def test_bar_without_timestamp_is_rejected() -> None:
    body = copy.deepcopy(load_json("polygon/aggs_range_1_day_AAPL.json"))
    del body["results"][1]["t"]
    rejected: list[RejectedRecord] = []
    frame = parse_daily_bars(body, "polygon", rejected=rejected)
    assert frame["date"].tolist() == [dt.date(2005, 4, 1)]
    assert len(rejected) == 1 and "'t'" in rejected[0].reason
    assert rejected[0].record == body["results"][1]


# -- options -----------------------------------------------------------------------------
def test_options_chain_snapshot_with_leading_whitespace() -> None:
    raw = load_bytes("polygon/snapshot_options_chain_AAPL.json")
    assert raw[:1] == b"\n"  # the recorded file really starts with a blank line
    frame = parse_options_snapshot(json.loads(raw), "polygon", as_of=AS_OF)
    OptionContractSchema.validate(frame)
    row = frame.iloc[0]
    assert row["contract"] == "AAPL230616C00150000"
    assert (row["underlying"], row["contract_type"]) == ("AAPL", "call")
    assert row["strike"] == 150.0
    assert row["expiration"] == dt.date(2023, 6, 16)
    assert row["as_of_date"] == AS_OF
    assert (row["volume"], row["open_interest"]) == (8.0, 8133.0)
    assert row["implied_volatility"] == 0.3570277203465058
    assert (row["delta"], row["gamma"]) == (0.6436614934293701, 0.0061735291012820675)
    assert (row["theta"], row["vega"]) == (-0.028227189324641973, 0.6381159723175714)
    assert row["last_price"] == 29.0  # day.close


def test_single_contract_snapshot_and_last_trade_fallback() -> None:
    body = load_json("polygon/snapshot_option_contract_AAPL.json")
    frame = parse_options_snapshot(body, "polygon", as_of=AS_OF)
    assert frame["contract"].tolist() == ["AAPL230616C00150000"]
    assert frame.iloc[0]["last_price"] == 29.0
    no_session = copy.deepcopy(body)
    no_session["results"]["day"] = {}
    row = parse_options_snapshot(no_session, "polygon", as_of=AS_OF).iloc[0]
    assert row["last_price"] == 29.25  # last_trade.price
    assert pd.isna(row["volume"])


def test_occ_contract_strips_prefix_and_padding() -> None:
    assert occ_contract("O:AAPL230616C00150000") == "AAPL230616C00150000"
    assert occ_contract(" O:SPY   240119P00400000 ") == "SPY240119P00400000"


def test_options_reference_list_and_single() -> None:
    listing = load_json("polygon/options_contracts_list.json")
    assert listing["next_url"].startswith("https://api.polygon.io/v3/reference/options")
    frame = parse_options_contracts(listing)
    assert len(frame) == 10
    assert frame["strike"].tolist() == [float(s) for s in range(65, 115, 5)]
    assert frame.iloc[0]["contract"] == "A220520C00065000"
    assert set(frame["underlying"]) == {"A"}
    assert set(frame["expiration"]) == {dt.date(2022, 5, 20)}
    single = parse_options_contracts(load_json("polygon/options_contract_single.json")).iloc[0]
    assert (single["contract"], single["underlying"]) == ("EVRI240119C00002500", "EVRI")
    assert (single["strike"], single["expiration"]) == (2.5, dt.date(2024, 1, 19))
    assert single["shares_per_contract"] == 100


# -- trades and quotes: nanosecond timestamps -------------------------------------------------
def test_last_trade_ns_timestamps_are_exact() -> None:
    frame = parse_last_trade(load_json("polygon/last_trade_AAPL.json"))
    row = frame.iloc[0]
    assert row["sip_timestamp"].value == 1651179319310617300
    assert row["participant_timestamp"].value == 1651179319308000000
    assert row["trf_timestamp"].value == 1651179319310588400
    # the float path would have been off: the exactness above is not a given
    assert int(float(1651179319310617300)) != 1651179319310617300
    assert (row["symbol"], row["price"], row["size"]) == ("AAPL", 166.25, 2.0)
    assert row["conditions"] == [12, 37]
    assert row["trade_id"] == "237688"


def test_last_nbbo() -> None:
    row = parse_last_nbbo(load_json("polygon/last_nbbo_AAPL.json")).iloc[0]
    assert (row["bid"], row["bid_size"], row["ask"], row["ask_size"]) == (155.65, 1, 155.66, 14)
    assert (row["bid_exchange"], row["ask_exchange"]) == (19, 11)
    assert row["sip_timestamp"].value == 1652192754171838500
    assert row["participant_timestamp"].value == 1652192754171619000


def test_trades_v3() -> None:
    frame = parse_trades(load_json("polygon/trades_v3_AAPL.json"), symbol="AAPL")
    assert frame["price"].tolist() == [156.43, 157.43]
    assert frame["exchange"].tolist() == [11, 12]
    assert frame.iloc[0]["sip_timestamp"].value == 1651181822461979400
    assert frame.iloc[0]["participant_timestamp"].value == 1651181822461636600
    assert frame.iloc[0]["trf_timestamp"].value == 1651181557090806500
    assert str(frame["sip_timestamp"].dtype) == "datetime64[ns, UTC]"


# -- classification ----------------------------------------------------------------------
def _client(handler: Handler, base_url: str = "https://api.polygon.io") -> PolygonClient:
    settings = offline_settings("polygon", polygon_api_key=KEY, polygon_base_url=base_url)
    return mock_client(PolygonClient, handler, settings)


@pytest.mark.parametrize(
    ("payload", "status", "kind", "retryable"),
    [
        ("polygon/error_429_rate_limited.json", 429, ErrorKind.RATE_LIMITED, True),
        ("polygon/error_429_rate_limited.json", 200, ErrorKind.RATE_LIMITED, True),
        ("polygon/error_401_unknown_api_key_SHAPE.json", 401, ErrorKind.AUTH, False),
        ("polygon/error_403_NOT_AUTHORIZED_today_before_eod.json", 403,
         ErrorKind.NOT_ENTITLED, False),
        ("polygon/error_403_NOT_AUTHORIZED_not_entitled_massive_era.json", 403,
         ErrorKind.NOT_ENTITLED, False),
    ],
)
def test_classify_error_bodies(
    payload: str, status: int, kind: ErrorKind, retryable: bool
) -> None:
    body = load_json(payload)
    error = _client(unused).classify(httpx.Response(status, json=body), body)
    assert error is not None
    assert (error.provider, error.kind, error.retryable) == ("polygon", kind, retryable)
    assert error.message == (body.get("error") or body.get("message"))


def test_error_status_with_http_200_is_an_error() -> None:
    body = {"status": "ERROR", "request_id": "r", "error": "Could not parse the date"}
    error = _client(unused).classify(httpx.Response(200, json=body), body)
    assert error is not None and error.kind is ErrorKind.BAD_REQUEST and not error.retryable


def test_classify_success_bodies_is_none() -> None:
    client = _client(unused)
    for payload in all_payloads("polygon/"):
        if payload.startswith("polygon/error_"):
            continue
        body = json.loads(load_bytes(payload, record=False))
        assert client.classify(httpx.Response(200, json=body), body) is None, payload


# -- end to end through a mock transport ---------------------------------------------------
def test_fetch_quotes_from_prev_aggregate() -> None:
    body = copy.deepcopy(load_json("polygon/aggs_prev_AAPL.json"))
    body["ticker"] = body["results"][0]["T"] = "BRK.B"
    empty = {"ticker": "NOPE", "queryCount": 0, "resultsCount": 0, "adjusted": True,
             "status": "OK", "request_id": "x"}
    recorder = Recorder.in_order(body, empty)
    result = _client(recorder).fetch_quotes(FetchRequest(symbols=("BRK.B", "NOPE")))
    assert str(recorder.requests[0].url) == (
        f"https://api.polygon.io/v2/aggs/ticker/BRK.B/prev?adjusted=true&apiKey={KEY}")
    QuoteSchema.validate(result.frame)
    assert result.frame["symbol"].tolist() == ["BRK.B"]
    assert result.frame["price"].tolist() == [156.8]
    assert result.notes == ["polygon: no previous-day bar for NOPE"]


def test_fetch_daily_bars_follows_next_url_with_key() -> None:
    full = load_json("polygon/aggs_range_1_day_AAPL.json")
    next_url = ("https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1112331600000/"
                "2005-04-04?cursor=bGltaXQ9MQ&adjusted=true&sort=asc&limit=1")
    first = {**full, "results": full["results"][:1], "next_url": next_url}
    second = {**full, "results": full["results"][1:]}
    recorder = Recorder.in_order(first, second)
    result = _client(recorder).fetch_daily_bars(FetchRequest(
        symbols=("AAPL",), start=dt.date(2005, 4, 1), end=dt.date(2005, 4, 4)))
    first_request, second_request = recorder.requests
    assert first_request.url.path == "/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04"
    assert dict(first_request.url.params) == {
        "adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": KEY}
    assert second_request.url.path == (
        "/v2/aggs/ticker/AAPL/range/1/day/1112331600000/2005-04-04")
    assert dict(second_request.url.params) == {
        "cursor": "bGltaXQ9MQ", "adjusted": "true", "sort": "asc", "limit": "1",
        "apiKey": KEY}
    DailyBarSchema.validate(result.frame)
    assert result.frame["date"].tolist() == [dt.date(2005, 4, 1), dt.date(2005, 4, 4)]
    assert result.frame["close"].tolist() == [1.4604, 1.4675]


def test_fetch_options_chain_pages_on_a_prefixed_base_url() -> None:
    raw = load_bytes("polygon/snapshot_options_chain_AAPL.json")
    first = json.loads(raw)
    first["next_url"] = "https://api.polygon.io/v3/snapshot/options/AAPL?cursor=YXA9MjUw"
    put = copy.deepcopy(first["results"][0])
    put["details"].update(contract_type="put", ticker="O:AAPL230616P00150000")
    second = {"request_id": "r2", "results": [put], "status": "OK"}
    recorder = Recorder.in_order(json.dumps(first).encode(), second)
    client = _client(recorder, base_url="http://proxy.internal/polygon")
    result = client.fetch_options_chain(FetchRequest(symbols=("AAPL",), as_of=AS_OF))
    assert [str(r.url) for r in recorder.requests] == [
        f"http://proxy.internal/polygon/v3/snapshot/options/AAPL?limit=250&apiKey={KEY}",
        f"http://proxy.internal/polygon/v3/snapshot/options/AAPL?cursor=YXA9MjUw&apiKey={KEY}",
    ]
    OptionContractSchema.validate(result.frame)
    assert result.frame["contract"].tolist() == ["AAPL230616C00150000", "AAPL230616P00150000"]
    assert result.frame["contract_type"].tolist() == ["call", "put"]
    assert set(result.frame["as_of_date"]) == {AS_OF}


def test_options_chain_served_raw_with_leading_whitespace() -> None:
    recorder = Recorder.in_order(load_bytes("polygon/snapshot_options_chain_AAPL.json"))
    result = _client(recorder).fetch_options_chain(FetchRequest(symbols=("AAPL",)))
    assert result.frame["contract"].tolist() == ["AAPL230616C00150000"]
    assert result.frame.iloc[0]["as_of_date"] == dt.datetime.now(NEW_YORK).date()


def test_rate_limit_is_retried_then_succeeds() -> None:
    recorder = Recorder.in_order(
        httpx.Response(429, json=load_json("polygon/error_429_rate_limited.json")),
        load_json("polygon/aggs_prev_AAPL.json"),
    )
    result = _client(recorder).fetch_quotes(FetchRequest(symbols=("AAPL",)))
    assert len(recorder.requests) == 2
    assert result.frame["price"].tolist() == [156.8]


def test_not_entitled_is_not_retried_and_key_never_leaks() -> None:
    body = load_json("polygon/error_403_NOT_AUTHORIZED_not_entitled_massive_era.json")
    calls: list[httpx.Request] = []

    def echo(request: httpx.Request) -> httpx.Response:
        # worst case: the provider echoes the whole request URL, key included
        calls.append(request)
        return httpx.Response(403, json={**body, "message": f"{body['message']} ({request.url})"})

    with pytest.raises(ProviderError) as caught:
        _client(echo).fetch_options_chain(FetchRequest(symbols=("AAPL",), as_of=AS_OF))
    error = caught.value
    assert (error.kind, error.retryable, error.provider) == (
        ErrorKind.NOT_ENTITLED, False, "polygon")
    assert len(calls) == 1 and KEY in str(calls[0].url)
    assert "not entitled" in str(error)
    assert KEY not in str(error) and KEY not in repr(error.args)
