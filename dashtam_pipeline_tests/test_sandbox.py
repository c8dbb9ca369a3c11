"""The sandbox answers every provider's real paths in the recorded shapes, deterministically,
and its faults and counters behave, in-process (WSGI transport) and over loopback."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from dashtam_pipeline.clients.base import SANDBOX_ROOT, sandbox_base_url
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.server import environment_lines, serve
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.payloads import all_payloads, load_bytes, load_json

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

#: a Wednesday afternoon in New York: the last completed session is Tuesday 2025-03-11
NOW = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.UTC)
LAST_SESSION = dt.date(2025, 3, 11)
CALLBACK = "https://127.0.0.1:8182"
BASIC = "Basic " + base64.b64encode(b"APPKEY:APPSECRET").decode()



@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def app(clock: FakeClock) -> SandboxApp:
    return SandboxApp(seed=42, clock=clock)


@pytest.fixture
def client(app: SandboxApp) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=SANDBOX_ROOT) as c:
        yield c


def get(client: httpx.Client, slug: str, path: str, **params: Any) -> httpx.Response:
    return client.get(sandbox_base_url(slug) + path, params=params)


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_same_shape(actual: Any, recorded: Any, where: str = "$") -> None:
    """Same keys at every level, and the same JSON type wherever both sides have a value."""
    if isinstance(recorded, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(recorded), (where, set(actual) ^ set(recorded))
        for key in recorded:
            assert_same_shape(actual[key], recorded[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(actual, list), where
        if recorded and actual:
            assert_same_shape(actual[0], recorded[0], f"{where}[0]")
    elif recorded is not None and actual is not None:
        assert kind(actual) == kind(recorded), (where, actual, recorded)


# -- shapes ------------------------------------------------------------------------------
def test_fmp_bodies_have_the_recorded_shapes(client: httpx.Client) -> None:
    quote = get(client, "fmp", "/quote", symbol="BRK-B", apikey="k").json()
    assert_same_shape(quote, load_json("fmp/stable_quote_AAPL.json"))
    assert quote[0]["symbol"] == "BRK-B" and isinstance(quote[0]["timestamp"], int)
    bars = get(client, "fmp", "/historical-price-eod/full", symbol="AAPL",
               **{"from": "2025-01-02", "to": "2025-01-10"}).json()
    assert_same_shape(bars, load_json("fmp/stable_historical_price_eod_full_AAPL.json"))
    assert [b["date"] for b in bars] == sorted((b["date"] for b in bars), reverse=True)
    # trading days from Thu 2 to Fri 10 January 2025: the NYSE closed on the 9th, the
    # national day of mourning for President Carter
    assert len(bars) == 6 and "2025-01-09" not in {b["date"] for b in bars}
    for path, payload in (
        ("/income-statement", "fmp/stable_income_statement_AAPL_annual.json"),
        ("/balance-sheet-statement", "fmp/stable_balance_sheet_statement_AAPL_annual.json"),
    ):
        body = get(client, "fmp", path, symbol="AAPL", period="annual", limit=5).json()
        assert_same_shape(body, load_json(payload))
        assert len(body) == 5 and {row["period"] for row in body} == {"FY"}
        quarters = get(client, "fmp", path, symbol="AAPL", period="quarter", limit=8).json()
        assert len(quarters) == 8 and {r["period"] for r in quarters} == {"Q1", "Q2", "Q3", "Q4"}


def test_fmp_statements_add_up(client: httpx.Client) -> None:
    income = get(client, "fmp", "/income-statement", symbol="MSFT", period="annual").json()[0]
    assert income["grossProfit"] == income["revenue"] - income["costOfRevenue"]
    assert income["operatingIncome"] == income["grossProfit"] - income["operatingExpenses"]
    assert income["netIncome"] == income["incomeBeforeTax"] - income["incomeTaxExpense"]
    assert income["eps"] == round(income["netIncome"] / income["weightedAverageShsOut"], 2)
    assert 100e9 < income["revenue"] < 600e9
    sheet = get(client, "fmp", "/balance-sheet-statement", symbol="MSFT").json()[0]
    assert sheet["totalAssets"] == sheet["totalLiabilities"] + sheet["totalEquity"]
    assert sheet["totalAssets"] == sheet["totalCurrentAssets"] + sheet["totalNonCurrentAssets"]
    assert sheet["date"] == income["date"] and sheet["filingDate"] <= "2025-03-12"
    quarters = get(client, "fmp", "/income-statement", symbol="MSFT", period="quarter",
                   limit=8).json()
    fiscal_year = [q for q in quarters if q["fiscalYear"] == income["fiscalYear"]]
    assert len(fiscal_year) == 4
    assert sum(q["revenue"] for q in fiscal_year) == income["revenue"]


def test_fmp_earnings_have_actuals_except_the_next_report(client: httpx.Client) -> None:
    rows = get(client, "fmp", "/earnings", symbol="AAPL", limit=9).json()
    assert set(rows[0]) == {"symbol", "date", "epsActual", "epsEstimated", "revenueActual",
                            "revenueEstimated", "lastUpdated"}
    assert rows[0]["date"] > "2025-03-12" and rows[0]["epsActual"] is None
    assert rows[0]["revenueActual"] is None and rows[0]["epsEstimated"] is not None
    past = rows[1:]
    assert len(past) == 8 and all(r["date"] <= "2025-03-12" for r in past)
    assert all(isinstance(r["epsActual"], float) and r["revenueActual"] > 0 for r in past)


def test_polygon_bodies_have_the_recorded_shapes(client: httpx.Client) -> None:
    prev = get(client, "polygon", "/v2/aggs/ticker/BRK.B/prev", adjusted="true").json()
    assert_same_shape(prev, load_json("polygon/aggs_prev_AAPL.json"))
    aggs = get(client, "polygon", "/v2/aggs/ticker/AAPL/range/1/day/2025-01-02/2025-01-03",
               adjusted="true", sort="asc", limit=50000).json()
    assert_same_shape(aggs, load_json("polygon/aggs_range_1_day_AAPL.json"))
    # t is in ms: midnight New York of each session
    assert [dt.datetime.fromtimestamp(r["t"] / 1000, dt.UTC).isoformat() for r in aggs["results"]
            ] == ["2025-01-02T05:00:00+00:00", "2025-01-03T05:00:00+00:00"]
    snap = get(client, "polygon", "/v3/snapshot/options/AAPL", limit=250).json()
    recorded = json.loads(load_bytes("polygon/snapshot_options_chain_AAPL.json"))
    assert set(snap) - {"next_url"} == set(recorded)
    assert_same_shape(snap["results"], recorded["results"])


def test_polygon_ranges_page_with_an_absolute_next_url(client: httpx.Client) -> None:
    path = "/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-03-31"
    full = get(client, "polygon", path, limit=50000).json()["results"]
    page = get(client, "polygon", path, limit=20, apiKey="k").json()
    collected = list(page["results"])
    while "next_url" in page:
        assert page["next_url"].startswith(SANDBOX_ROOT + "/polygon/v2/aggs/")
        # append: httpx 0.28's params= would replace next_url's query (and its cursor)
        page = client.get(page["next_url"] + "&apiKey=k").json()
        collected += page.get("results", [])
    # Q1 2024's weekdays (65) less New Year's Day, MLK Day, Presidents' Day, Good Friday
    assert collected == full and len(full) == 61


def test_polygon_options_chain_pages_and_holds_together(client: httpx.Client) -> None:
    page = get(client, "polygon", "/v3/snapshot/options/AAPL", limit=10).json()
    contracts = list(page["results"])
    while page.get("next_url"):
        # append: httpx 0.28's params= would replace next_url's query (and its cursor)
        page = client.get(page["next_url"] + "&apiKey=k").json()
        contracts += page["results"]
    tickers = [c["details"]["ticker"] for c in contracts]
    assert len(tickers) == len(set(tickers)) > 50
    assert all(re.fullmatch(r"O:AAPL\d{6}[CP]\d{8}", t) for t in tickers)
    spot = get(client, "fmp", "/quote", symbol="AAPL").json()[0]["price"]
    for c in contracts:
        d, g = c["details"], c["greeks"]
        assert c["underlying_asset"]["price"] == spot
        assert d["expiration_date"] > LAST_SESSION.isoformat()
        assert (0 < g["delta"] < 1) if d["contract_type"] == "call" else (-1 < g["delta"] < 0)
        assert g["gamma"] > 0 and g["vega"] > 0 and c["implied_volatility"] > 0
        assert c["day"]["close"] >= 0.01 and c["open_interest"] > 0
        strike = f"{round(d['strike_price'] * 1000):08d}"
        assert d["ticker"].endswith(("C" if d["contract_type"] == "call" else "P") + strike)
    brk = get(client, "polygon", "/v3/snapshot/options/BRK.B", limit=1).json()
    assert brk["results"][0]["details"]["ticker"].startswith("O:BRKB")


def test_fred_bodies_have_the_recorded_shapes(client: httpx.Client) -> None:
    series = get(client, "fred", "/series", series_id="GDP", file_type="json").json()
    assert_same_shape(series, load_json("fred/series_GDP.json"))
    meta = series["seriess"][0]
    assert (meta["frequency"], meta["frequency_short"]) == ("Quarterly", "Q")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 07:55:01-0[56]", meta["last_updated"])
    obs = get(client, "fred", "/series/observations", series_id="GDP", file_type="json",
              realtime_start="1776-07-04", realtime_end="9999-12-31").json()
    assert_same_shape(obs, load_json("fred/series_observations_GDP_all_vintages.json"))
    vintages = get(client, "fred", "/series/vintagedates", series_id="GDP",
                   file_type="json").json()
    assert_same_shape(vintages, load_json("fred/series_vintagedates_GDP.json"))
    assert vintages["vintage_dates"] == sorted({o["realtime_start"] for o in obs["observations"]})
    for series_id, frequency in (("CPIAUCSL", "Monthly"), ("DGS10", "Daily"), ("T10Y2Y", "Daily")):
        body = get(client, "fred", "/series", series_id=series_id, file_type="json").json()
        assert body["seriess"][0]["frequency"] == frequency


def test_fred_vintages_revisions_and_missing_values(client: httpx.Client) -> None:
    obs = get(client, "fred", "/series/observations", series_id="GDP", file_type="json",
              realtime_start="1776-07-04", realtime_end="9999-12-31").json()["observations"]
    by_date: dict[str, list[dict[str, str]]] = {}
    for row in obs:
        by_date.setdefault(row["date"], []).append(row)
    revised = [rows for rows in by_date.values() if len(rows) >= 3]
    assert revised, "some GDP dates must have several vintages"
    for rows in by_date.values():
        assert sum(r["realtime_end"] == "9999-12-31" for r in rows) == 1
        starts = [r["realtime_start"] for r in rows]
        assert starts == sorted(set(starts))
        for earlier, later in itertools.pairwise(rows):  # contiguous vintages
            end = dt.date.fromisoformat(earlier["realtime_end"])
            assert end + dt.timedelta(days=1) == dt.date.fromisoformat(later["realtime_start"])
    assert any(r["value"] == "." for r in obs) and float(obs[-1]["value"]) > 20000
    assert max(r["realtime_start"] for r in obs) <= "2025-03-12"
    # the default real-time window is today: one current value per date
    today = get(client, "fred", "/series/observations", series_id="GDP",
                file_type="json").json()["observations"]
    assert len(today) == len(by_date)
    assert {r["realtime_start"] for r in today} == {"2025-03-12"}
    current = {d: rows[-1]["value"] for d, rows in by_date.items()}
    assert {r["date"]: r["value"] for r in today} == current
    # as of an earlier day, the first estimate of the latest quarter is what was known
    latest = max(d for d, rows in by_date.items() if len(rows) >= 3)
    first = by_date[latest][0]
    then = get(client, "fred", "/series/observations", series_id="GDP", file_type="json",
               realtime_start=first["realtime_start"], realtime_end=first["realtime_start"],
               observation_start=latest, observation_end=latest).json()["observations"]
    assert [r["value"] for r in then] == [first["value"]]


def test_fred_pages_by_offset(client: httpx.Client) -> None:
    params = {"series_id": "DGS10", "file_type": "json", "realtime_start": "1776-07-04",
              "realtime_end": "9999-12-31"}
    full = get(client, "fred", "/series/observations", **params).json()
    rows: list[dict[str, str]] = []
    offset = 0
    while True:
        page = get(client, "fred", "/series/observations", limit=1000, offset=offset,
                   **params).json()
        assert (page["count"], page["limit"], page["offset"]) == (full["count"], 1000, offset)
        rows += page["observations"]
        offset += 1000
        if offset >= page["count"]:
            break
    assert rows == full["observations"] and full["count"] > 2000


def test_fred_errors_are_the_real_400s(client: httpx.Client) -> None:
    unknown = get(client, "fred", "/series/observations", series_id="NOSUCHSERIES",
                  file_type="json")
    assert unknown.status_code == 400
    assert unknown.json() == load_json("fred/error_400_series_does_not_exist.json")
    bad_key = get(client, "fred", "/series", series_id="GDP", api_key="invalid", file_type="json")
    assert bad_key.status_code == 400
    recorded = load_json("fred/error_400_api_key_not_registered.json")
    assert bad_key.json()["error_message"] == recorded["error_message"]
    future = get(client, "fred", "/series/observations", series_id="GDP", file_type="json",
                 realtime_end="2030-01-01")
    assert future.status_code == 400
    shape = load_json("fred/error_400_realtime_end_after_today.json")
    assert future.json()["error_message"].split("(")[0] == shape["error_message"].split("(")[0]


def test_newsapi_everything_pages_within_the_window(client: httpx.Client) -> None:
    window = {"q": "AAPL", "from": "2025-02-01T00:00:00Z", "to": "2025-02-21T23:59:59Z",
              "language": "en", "sortBy": "publishedAt"}
    first = client.get(sandbox_base_url("newsapi") + "/everything",
                       params=window | {"pageSize": 20, "page": 1},
                       headers={"X-Api-Key": "k"}).json()
    assert_same_shape(first, load_json("newsapi/everything_q_rep_issue_pageSize5_relevancy.json"))
    total = first["totalResults"]
    assert 40 <= total <= 100
    articles = list(first["articles"])
    page = 1
    while page * 20 < total:
        page += 1
        articles += get(client, "newsapi", "/everything", pageSize=20, page=page,
                        **window).json()["articles"]
    assert len(articles) == total == len({a["url"] for a in articles})
    stamps = [a["publishedAt"] for a in articles]
    assert stamps == sorted(stamps, reverse=True)
    assert all("2025-02-01T00:00:00Z" <= s <= "2025-02-21T23:59:59Z" for s in stamps)
    titles = " ".join(a["title"] for a in articles)
    assert re.search(r"jump|beat|upgrade|rall", titles) and re.search(r"falls|miss|slide", titles)
    too_far = get(client, "newsapi", "/everything", pageSize=50, page=3, **window)
    assert too_far.status_code == 426
    assert_same_shape(too_far.json(), load_json("newsapi/error_maximumResultsReached_http426.json"))
    assert too_far.json()["code"] == "maximumResultsReached"
    bad = get(client, "newsapi", "/everything", apiKey="invalid", **window)
    assert (bad.status_code, bad.json()) == (401, load_json("newsapi/error_apiKeyInvalid.json"))


def test_alpaca_bodies_have_the_recorded_shapes(client: httpx.Client) -> None:
    account = get(client, "alpaca", "/v2/account").json()
    assert_same_shape(account, load_json("alpaca/v2_account_paper_real_2025-11-14.json"))
    assert account["account_number"].startswith("PA3")
    positions = get(client, "alpaca", "/v2/positions").json()
    assert_same_shape(positions, load_json("alpaca/v2_positions_paper_real_2025-11-14.json"))
    assert positions, "the sandbox account holds positions"
    long_value = 0.0
    for p in positions:
        quote = get(client, "fmp", "/quote", symbol=p["symbol"]).json()[0]
        assert float(p["current_price"]) == quote["price"]
        assert float(p["market_value"]) == pytest.approx(int(p["qty"]) * quote["price"])
        long_value += float(p["market_value"])
    assert float(account["long_market_value"]) == pytest.approx(long_value, abs=0.01)
    assert float(account["equity"]) == pytest.approx(float(account["cash"]) + long_value, abs=0.01)
    bad = client.get(sandbox_base_url("alpaca") + "/v2/account",
                     headers={"APCA-API-KEY-ID": "invalid", "APCA-API-SECRET-KEY": "s"})
    assert (bad.status_code, bad.json()) == (
        401, load_json("alpaca/error_401_request_not_authorized.json"))


def test_alpaca_activities_page_by_token(client: httpx.Client) -> None:
    window = {"after": "2024-01-01T00:00:00Z", "until": "2025-03-12T00:00:00Z",
              "direction": "asc"}
    everything = get(client, "alpaca", "/v2/account/activities", **window).json()
    by_type = {a["activity_type"]: a for a in everything}
    assert set(by_type) == {"FILL", "DIV", "FEE"}
    fills = load_json("alpaca/account_activities_fill_div_anonymized.json")
    assert_same_shape(by_type["FILL"], fills[0])
    assert_same_shape(by_type["DIV"], fills[1])
    fees = load_json("alpaca/account_activities_fill_fee_anonymized.json")
    assert_same_shape(by_type["FEE"], fees[3])
    collected: list[dict[str, Any]] = []
    token = None
    while True:
        params = window | {"page_size": 25} | ({"page_token": token} if token else {})
        page = get(client, "alpaca", "/v2/account/activities", **params).json()
        collected += page
        if len(page) < 25:
            break
        token = page[-1]["id"]
    ids = [a["id"] for a in collected]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) > 50
    # page_size caps at 100, so the unpaged call above saw only the first page
    assert collected[: len(everything)] == everything
    march = get(client, "alpaca", "/v2/account/activities", after="2025-03-01",
                until="2025-03-11", direction="desc").json()
    assert all("2025-03-01" <= (a.get("transaction_time") or a["date"])[:10] <= "2025-03-11"
               for a in march)


# -- Schwab OAuth ------------------------------------------------------------------------
def _authorize(client: httpx.Client) -> str:
    answer = client.get(sandbox_base_url("schwab") + "/v1/oauth/authorize",
                        params={"response_type": "code", "client_id": "APPKEY",
                                "redirect_uri": CALLBACK})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?code=") and "%40&session=" in location
    query = parse_qs(urlparse(location).query)
    assert re.fullmatch(r"[0-9a-f-]{36}", query["session"][0])
    return query["code"][0]


def _token(client: httpx.Client, auth: str = BASIC, **form: str) -> httpx.Response:
    return client.post(sandbox_base_url("schwab") + "/v1/oauth/token", data=form,
                       headers={"Authorization": auth})


def test_schwab_oauth_flow_with_expiry(client: httpx.Client, clock: FakeClock) -> None:
    code = _authorize(client)
    assert code.endswith("@")
    granted = _token(client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK)
    assert granted.status_code == 200
    tokens = granted.json()
    assert list(tokens) == list(
        load_json("schwab/oauth_token_response_SHAPE_ONLY_placeholder_values.json"))
    assert tokens["expires_in"] == 1800 and tokens["token_type"] == "Bearer"
    reused = _token(client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")

    def accounts(access: str) -> httpx.Response:
        return client.get(sandbox_base_url("schwab") + "/trader/v1/accounts/accountNumbers",
                          headers={"Authorization": f"Bearer {access}"})

    numbers = accounts(tokens["access_token"])
    assert numbers.status_code == 200
    assert re.fullmatch(r"[0-9A-F]{64}", numbers.json()[0]["hashValue"])
    assert set(numbers.json()[0]) == set(
        load_json("schwab/accountNumbers_SHAPE_ONLY_test_mock.json")[0])

    clock.now += dt.timedelta(minutes=31)  # the access token has expired
    assert accounts(tokens["access_token"]).status_code == 401
    refreshed = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200
    new_access = refreshed.json()["access_token"]
    assert new_access != tokens["access_token"] and accounts(new_access).status_code == 200

    clock.now += dt.timedelta(days=7)  # the refresh token has expired too
    expired = _token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    recorded = load_json("schwab/oauth_token_error_400_refresh_token_authentication_error.json")
    assert expired.status_code == 400 and list(expired.json()) == list(recorded)
    assert expired.json()["error"] == "refresh_token_authentication_error"
    unknown = _token(client, grant_type="refresh_token", refresh_token="not-a-token")
    assert unknown.json()["error"] == "refresh_token_authentication_error"
    no_basic = _token(client, auth="", grant_type="authorization_code", code="x")
    assert no_basic.status_code == 401
    recorded_401 = json.loads(load_bytes("schwab/oauth_token_error_401_invalid_client.json"))
    assert no_basic.json() == recorded_401
    bad_code = _token(client, grant_type="authorization_code", code="C0.bogus.x@",
                      redirect_uri=CALLBACK)
    assert (bad_code.status_code, bad_code.json()["error"]) == (400, "invalid_grant")


def test_schwab_tokens_are_honoured_by_another_instance_with_the_same_seed(
    clock: FakeClock,
) -> None:
    with httpx.Client(transport=httpx.WSGITransport(app=SandboxApp(seed=42, clock=clock))) as a, \
         httpx.Client(transport=httpx.WSGITransport(app=SandboxApp(seed=42, clock=clock))) as b:
        code = _authorize(a)
        tokens = _token(b, grant_type="authorization_code", code=code,
                        redirect_uri=CALLBACK).json()
        answer = a.get(sandbox_base_url("schwab") + "/trader/v1/accounts",
                       headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert answer.status_code == 200


def test_schwab_data_has_the_recorded_shapes(client: httpx.Client) -> None:
    code = _authorize(client)
    access = _token(client, grant_type="authorization_code", code=code,
                    redirect_uri=CALLBACK).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    base = sandbox_base_url("schwab")
    accounts = client.get(base + "/trader/v1/accounts", params={"fields": "positions"},
                          headers=headers).json()
    assert_same_shape(accounts, load_json("schwab/accounts_fields_positions_margin_masked.json"))
    balances = accounts[0]["securitiesAccount"]["currentBalances"]
    positions = accounts[0]["securitiesAccount"]["positions"]
    assert balances["longMarketValue"] == pytest.approx(sum(p["marketValue"] for p in positions))
    assert balances["liquidationValue"] == pytest.approx(
        balances["cashBalance"] + balances["longMarketValue"])
    held = {p["instrument"]["symbol"] for p in positions}
    assert held and held <= {"AAPL", "AMZN", "GOOGL", "BRK/B", "MSFT"}  # Schwab's spelling
    bare = client.get(base + "/trader/v1/accounts", headers=headers).json()
    assert "positions" not in bare[0]["securitiesAccount"]
    hash_value = client.get(base + "/trader/v1/accounts/accountNumbers",
                            headers=headers).json()[0]["hashValue"]
    rows = client.get(base + f"/trader/v1/accounts/{hash_value}/transactions", headers=headers,
                      params={"startDate": "2024-01-01T00:00:00.000Z",
                              "endDate": "2025-03-12T00:00:00.000Z",
                              "types": "TRADE,DIVIDEND_OR_INTEREST"}).json()
    assert {r["type"] for r in rows} == {"TRADE", "DIVIDEND_OR_INTEREST"}
    recorded = load_json("schwab/transactions_types_TRADE_options_2024-05.json")
    trade = next(r for r in rows if r["type"] == "TRADE")
    assert set(trade) == set(recorded[0])
    assert_same_shape(trade["transferItems"][0], recorded[0]["transferItems"][0])
    single = load_json("schwab/transaction_single_option_trade_HIMS.json")
    assert set(trade) == set(single)
    for r in rows:
        assert r["netAmount"] == pytest.approx(sum(i["cost"] for i in r["transferItems"]))
        assert "2024-01-01" <= r["time"][:10] <= "2025-03-12"
    only_trades = client.get(base + f"/trader/v1/accounts/{hash_value}/transactions",
                             headers=headers, params={"startDate": "2024-01-01T00:00:00.000Z",
                                                      "endDate": "2025-03-12T00:00:00.000Z",
                                                      "types": "TRADE"}).json()
    assert {r["type"] for r in only_trades} == {"TRADE"}
    no_token = client.get(base + "/trader/v1/accounts")
    assert no_token.status_code == 401 and "message" in no_token.json()


# -- prices, determinism -----------------------------------------------------------------
def test_bars_are_consistent_and_quotes_follow_the_last_session(client: httpx.Client) -> None:
    for symbol in ("AAPL", "BRK-B", "NVDA", "ZZTOP"):
        bars = get(client, "fmp", "/historical-price-eod/full", symbol=symbol,
                   **{"from": "2000-01-01", "to": "2025-12-31"}).json()
        assert bars[0]["date"] == LAST_SESSION.isoformat()  # nothing from today or later
        assert bars[-1]["date"] == "2000-01-03"
        for b in bars:
            assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
            assert b["low"] > 0 and b["volume"] > 0 and b["low"] <= b["vwap"] <= b["high"]
        assert all(dt.date.fromisoformat(b["date"]).weekday() < 5 for b in bars)
        quote = get(client, "fmp", "/quote", symbol=symbol).json()[0]
        assert quote["price"] == bars[0]["close"]
        assert quote["previousClose"] == bars[1]["close"]
        assert quote["change"] == pytest.approx(bars[0]["close"] - bars[1]["close"], abs=0.006)
        assert quote["timestamp"] == int(dt.datetime(2025, 3, 11, 20, tzinfo=dt.UTC).timestamp())
    aapl = get(client, "fmp", "/historical-price-eod/full", symbol="AAPL",
               **{"from": "2024-01-02", "to": "2024-01-02"}).json()
    assert 150 < aapl[0]["close"] < 230
    prev = get(client, "polygon", "/v2/aggs/ticker/AAPL/prev").json()["results"][0]
    fmp = get(client, "fmp", "/quote", symbol="AAPL").json()[0]
    assert (prev["c"], prev["t"]) == (fmp["price"], fmp["timestamp"] * 1000)


def test_same_seed_same_answers_other_seed_other_prices(clock: FakeClock) -> None:
    paths = [
        ("fmp", "/quote", {"symbol": "AAPL"}),
        ("polygon", "/v3/snapshot/options/MSFT", {"limit": 5}),
        ("fred", "/series/observations", {"series_id": "UNRATE", "file_type": "json"}),
        ("newsapi", "/everything", {"q": "NVDA"}),
        ("alpaca", "/v2/account/activities", {"page_size": 50}),
    ]

    def answers(seed: int) -> list[Any]:
        transport = httpx.WSGITransport(app=SandboxApp(seed=seed, clock=clock))
        with httpx.Client(transport=transport) as c:
            return [get(c, slug, path, **params).json() for slug, path, params in paths]

    assert answers(42) == answers(42)
    assert answers(42)[0][0]["price"] != answers(7)[0][0]["price"]


def test_unknown_routes_answer_404_json(client: httpx.Client) -> None:
    unknown = client.get("/nowhere/at/all")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    missing = get(client, "polygon", "/v9/nothing")
    assert missing.status_code == 404 and missing.json()["status"] == "ERROR"
    legacy = client.get(SANDBOX_ROOT + "/fmp/api/v3/quote/AAPL")
    assert legacy.status_code == 403
    assert legacy.json() == load_json("fmp/error_403_legacy_endpoint_v3_after_2025-08-31.json")
    bad_key = get(client, "fmp", "/quote", symbol="AAPL", apikey="invalid")
    assert (bad_key.status_code, bad_key.json()) == (
        401, load_json("fmp/error_401_invalid_api_key.json"))
    polygon = get(client, "polygon", "/v2/aggs/ticker/AAPL/prev", apiKey="invalid")
    assert polygon.status_code == 401
    assert_same_shape(polygon.json(), load_json("polygon/error_401_unknown_api_key_SHAPE.json"))


# -- faults and counters -----------------------------------------------------------------
def test_faults_apply_to_the_next_count_requests_and_are_counted(
    app: SandboxApp, client: httpx.Client
) -> None:
    app.add_fault(r"^/fmp/stable/quote$", status=429, count=2)
    statuses = [get(client, "fmp", "/quote", symbol="AAPL").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    limited = app.add_fault("/fmp/", status=429, count=1)
    assert limited > 0
    body = get(client, "fmp", "/quote", symbol="AAPL").json()
    assert body == load_json("fmp/error_429_limit_reach.json")
    app.add_fault("/polygon/", status=429, count=1, headers={"Retry-After": "7"})
    limited_polygon = get(client, "polygon", "/v2/aggs/ticker/AAPL/prev")
    assert limited_polygon.headers["Retry-After"] == "7"
    assert_same_shape(limited_polygon.json(), load_json("polygon/error_429_rate_limited.json"))
    app.add_fault("/newsapi/", status=429, count=1)
    assert get(client, "newsapi", "/everything", q="X").json() == load_json(
        "newsapi/error_rateLimited.json")
    app.add_fault("/fred/", body="{not json", count=1)
    malformed = get(client, "fred", "/series", series_id="GDP", file_type="json")
    assert malformed.status_code == 200 and malformed.text == "{not json"
    counts = app.request_counts()
    assert counts["fmp /stable/quote"] == 4 and counts["fmp"] == 4
    assert counts["fred /fred/series"] == 1 and counts["polygon"] == 1
    app.add_fault("/alpaca/", status=500)
    assert [get(client, "alpaca", "/v2/account").status_code for _ in range(2)] == [500, 500]
    app.clear_faults()
    assert get(client, "alpaca", "/v2/account").status_code == 200
    app.reset()
    assert app.request_counts() == {}


def test_reset_connection_is_a_transport_error_in_process(
    app: SandboxApp, client: httpx.Client
) -> None:
    app.add_fault("/fred/", reset_connection=True, count=1)
    with pytest.raises(httpx.TransportError):
        get(client, "fred", "/series", series_id="GDP", file_type="json")
    assert get(client, "fred", "/series", series_id="GDP", file_type="json").status_code == 200


def test_faults_over_loopback_timeouts_resets_and_the_control_plane(clock: FakeClock) -> None:
    with serve(app=SandboxApp(seed=42, clock=clock)) as server, httpx.Client() as http:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        fmp = server.base_url("fmp")
        assert http.get(fmp + "/quote", params={"symbol": "AAPL"}).json()[0]["symbol"] == "AAPL"

        added = http.post(server.url + "/_sandbox/faults",
                          json={"route_regex": "/fmp/", "delay_seconds": 2.0, "count": 1})
        assert added.status_code == 201
        with pytest.raises(httpx.ReadTimeout):
            http.get(fmp + "/quote", params={"symbol": "AAPL"}, timeout=0.3)

        http.post(server.url + "/_sandbox/faults",
                  json={"route_regex": "/fmp/", "reset_connection": True, "count": 1})
        with pytest.raises(httpx.TransportError):
            http.get(fmp + "/quote", params={"symbol": "AAPL"})

        http.post(server.url + "/_sandbox/faults", json={"route_regex": "/fmp/", "status": 503})
        assert http.get(fmp + "/quote", params={"symbol": "AAPL"}).status_code == 503
        assert http.delete(server.url + "/_sandbox/faults").status_code == 200
        assert http.get(fmp + "/quote", params={"symbol": "AAPL"}).status_code == 200

        counts = http.get(server.url + "/_sandbox/requests").json()
        assert counts == {"fmp /stable/quote": 5, "fmp": 5}
        assert http.post(server.url + "/_sandbox/reset").status_code == 200
        assert http.get(server.url + "/_sandbox/requests").json() == {}
        bad = http.post(server.url + "/_sandbox/faults", json={"nope": 1})
        assert bad.status_code == 400


def test_environment_lines_point_every_provider_at_the_server() -> None:
    lines = environment_lines("http://127.0.0.1:9999")
    assert "FMP_BASE_URL=http://127.0.0.1:9999/fmp/stable" in lines
    assert "FRED_BASE_URL=http://127.0.0.1:9999/fred/fred" in lines
    assert "NEWS_BASE_URL=http://127.0.0.1:9999/newsapi/v2" in lines
    assert "SCHWAB_CALLBACK_URL=http://127.0.0.1:9999/_sandbox/callback" in lines
    assert "ALPACA_API_KEY_ID=sandbox" in lines


def test_sample_chase_exports_are_real_recorded_files() -> None:
    samples = sorted((Path(__file__).parents[1] / "dashtam_pipeline/sandbox/samples").glob("*"))
    assert len(samples) == 4
    recorded = {load_bytes(name, record=False) for name in all_payloads("chase_file/")
                if name.endswith(".csv")}
    for sample in samples:
        assert re.fullmatch(r"Chase\d{4}_Activity_\d{8}\.CSV", sample.name)
        assert sample.read_bytes() in recorded


def test_the_callback_page_shows_the_redirect(client: httpx.Client) -> None:
    callback = SANDBOX_ROOT + "/_sandbox/callback"
    answer = client.get(sandbox_base_url("schwab") + "/v1/oauth/authorize",
                        params={"response_type": "code", "client_id": "APPKEY",
                                "redirect_uri": callback})
    shown = client.get(answer.headers["location"]).json()
    assert shown["code"].endswith("@") and shown["redirect_url"] == answer.headers["location"]
    tokens = _token(client, grant_type="authorization_code", code=shown["code"],
                    redirect_uri=callback)
    assert tokens.status_code == 200
