"""NewsAPI client: the parser fed the recorded payloads, error classification, and the
client end to end over ``httpx.MockTransport`` (header auth, paging, the 426 stop)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from typing import Any

import httpx
import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.newsapi.client import (
    NewsApiClient,
    article_id,
    classify_newsapi_error,
    parse_articles,
    request_window,
)
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.news import NewsArticleSchema
from dashtam_pipeline.sentiment import score_article
from dashtam_pipeline_tests.client_helpers import Handler, mock_client, offline_settings
from dashtam_pipeline_tests.payloads import load_json

KEY = "news-test-key-456"
BASE = "https://newsapi.org/v2"
EVERYTHING = "newsapi/everything_q_rep_issue_pageSize5_relevancy.json"
HEADLINES = "newsapi/top_headlines_country_us_q_NewYork_pageSize3.json"
DAY = dt.date(2024, 12, 13)
REMOVED = {
    "source": {"id": None, "name": "[Removed]"}, "author": None, "title": "[Removed]",
    "description": "[Removed]", "url": "https://removed.com", "urlToImage": None,
    "publishedAt": "1970-01-01T00:00:00Z", "content": "[Removed]",
}


def make_client(handler: Handler) -> NewsApiClient:
    settings = offline_settings("newsapi", news_api_key=KEY, news_base_url=BASE)
    return mock_client(NewsApiClient, handler, settings)


def articles(count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` distinct articles shaped like the recorded ones."""
    template = load_json(EVERYTHING)["articles"][0]
    return [
        {**template, "url": f"https://example.com/{tag}/{i}", "title": f"{tag} story {i}"}
        for i in range(count)
    ]


def parse(payload: str | dict[str, Any], symbol: str | None = None) -> Any:
    body = load_json(payload) if isinstance(payload, str) else payload
    return parse_articles(body, query="q", symbol=symbol, provider="newsapi")


# -- parser ------------------------------------------------------------------------------------
def test_everything_payload() -> None:
    body = load_json(EVERYTHING)
    result = parse(body)
    frame = result.frame
    assert list(frame.columns) == column_names(NewsArticleSchema)
    assert len(frame) == 5 and result.rejected == [] and result.notes == []
    first = frame.iloc[0]
    url = body["articles"][0]["url"]
    assert first["article_id"] == hashlib.sha256(url.encode()).hexdigest()[:32]
    assert first["title"] == "Loyalists, Lapdogs, and Cronies"
    assert first["author"] == "McKay Coppins"
    assert first["source_name"] == "The Atlantic"
    assert first["published_at"] == pd.Timestamp("2023-12-04 10:59:00", tz="UTC")
    assert first["content"].endswith("… [+8329 chars]")  # kept as sent
    assert pd.isna(first["symbol"]) and first["query"] == "q" and first["provider"] == "newsapi"
    # HTML entities are unescaped
    caller = frame[frame["source_name"] == "The Daily Caller"].iloc[0]
    assert caller["description"].startswith("The Senate confirmed President Joe Biden's 150th")
    assert "&#039;" not in "".join(frame["description"])
    # CRLF inside content survives
    breitbart = frame[frame["source_name"] == "Breitbart News"].iloc[0]
    assert "release. \r\nThe advertisement" in breitbart["content"]
    for _, row in frame.iterrows():
        assert -1.0 <= row["sentiment"] <= 1.0
    validated = NewsArticleSchema.validate(frame)
    assert str(validated["published_at"].dtype) == "datetime64[us, UTC]"


def test_top_headlines_payload_with_nulls_and_trailing_spaces() -> None:
    frame = parse(HEADLINES, symbol="NYT").frame
    assert len(frame) == 3
    assert frame["title"].iloc[0] == (
        "Yankees trade for star closer Devin Williams in end to Nestor Cortes\u2019 Bronx tenure"
        " - New York Post"
    )
    assert frame["author"].tolist() == ["New York Post", "The New York Times", "Ariel Zilber"]
    assert frame["description"].isna().tolist() == [True, True, False]
    assert frame["content"].isna().tolist() == [True, True, False]
    assert frame["source_name"].tolist() == ["Google News", "Google News", "New York Post"]
    assert (frame["symbol"] == "NYT").all()
    # a headline-only article is scored on its headline alone
    assert frame["sentiment"].iloc[1] == score_article(frame["title"].iloc[1])
    assert len(NewsArticleSchema.validate(frame)) == 3


def test_removed_placeholders_are_dropped_and_bad_articles_rejected() -> None:
    body = load_json(EVERYTHING)
    no_url = {**body["articles"][1], "url": None}
    body["articles"] = [REMOVED, body["articles"][0], no_url, {**REMOVED, "title": " [Removed] "}]
    result = parse(body)
    assert result.frame["title"].tolist() == ["Loyalists, Lapdogs, and Cronies"]
    assert result.notes == ["'q': dropped 2 '[Removed]' placeholder article(s)"]
    assert [r.record for r in result.rejected] == [no_url]
    assert "no http(s) url" in result.rejected[0].reason


def test_article_id_strips_whitespace_and_is_stable() -> None:
    assert article_id(" https://a.example/x \n") == article_id("https://a.example/x")
    assert len(article_id("https://a.example/x")) == 32
    assert article_id("https://a.example/x") != article_id("https://a.example/y")


def test_window_is_new_york_midnight_to_midnight_in_utc() -> None:
    assert request_window(DAY, DAY) == ("2024-12-13T05:00:00Z", "2024-12-14T05:00:00Z")
    # summer time, and a window spanning a weekend
    assert request_window(dt.date(2024, 7, 5), dt.date(2024, 7, 8)) == (
        "2024-07-05T04:00:00Z", "2024-07-09T04:00:00Z"
    )


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "status", "kind", "retryable"),
    [
        ("newsapi/error_apiKeyInvalid.json", 401, ErrorKind.AUTH, False),
        ("newsapi/error_apiKeyInvalid.json", 200, ErrorKind.AUTH, False),
        ("newsapi/error_rateLimited.json", 429, ErrorKind.RATE_LIMITED, True),
        ("newsapi/error_rateLimited.json", 200, ErrorKind.RATE_LIMITED, True),
        ("newsapi/error_maximumResultsReached_http426.json", 426, ErrorKind.BAD_REQUEST, False),
    ],
)
def test_recorded_errors_are_classified(
    payload: str, status: int, kind: ErrorKind, retryable: bool
) -> None:
    body = load_json(payload)
    error = classify_newsapi_error(httpx.Response(status, json=body), body)
    assert error is not None
    assert (error.kind, error.provider, error.retryable) == (kind, "newsapi", retryable)
    assert error.message.startswith(body["code"] + ": ")


def test_unknown_codes_fall_back_to_the_status() -> None:
    body = {"status": "error", "code": "somethingNew", "message": "boom"}
    error = classify_newsapi_error(httpx.Response(502, json=body), body)
    assert error is not None and error.kind is ErrorKind.UNAVAILABLE and error.retryable
    ok = load_json(HEADLINES)
    assert classify_newsapi_error(httpx.Response(200, json=ok), ok) is None


# -- end to end over a mock transport ----------------------------------------------------------
def test_request_shape_paging_and_symbols() -> None:
    seen: list[httpx.Request] = []
    pages = {("AAPL", 1): articles(100, "aapl"), ("AAPL", 2): articles(30, "aapl2"),
             ("inflation", 1): articles(2, "aapl")}  # same URLs as two AAPL articles

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q, page = request.url.params["q"], int(request.url.params["page"])
        total = 130 if q == "AAPL" else 2
        return httpx.Response(
            200, json={"status": "ok", "totalResults": total, "articles": pages[(q, page)]}
        )

    client = make_client(handler)
    result = client.fetch_news_articles(
        FetchRequest(symbols=("AAPL", "MSFT"), queries=("AAPL", "inflation"), start=DAY, end=DAY)
    )
    assert [(r.url.params["q"], r.url.params["page"]) for r in seen] == [
        ("AAPL", "1"), ("AAPL", "2"), ("inflation", "1")
    ]
    request = seen[0]
    assert request.url.path == "/v2/everything"
    assert request.headers["X-Api-Key"] == KEY
    assert "apiKey" not in request.url.params
    assert dict(request.url.params) == {
        "q": "AAPL", "from": "2024-12-13T05:00:00Z", "to": "2024-12-14T05:00:00Z",
        "language": "en", "sortBy": "publishedAt", "pageSize": "100", "page": "1",
    }
    frame = result.frame
    assert len(frame) == 132
    assert (frame.loc[frame["query"] == "AAPL", "symbol"] == "AAPL").all()
    assert frame.loc[frame["query"] == "inflation", "symbol"].isna().all()
    # the article found by both queries is one row per symbol (AAPL and NULL)
    shared = frame[frame["url"] == "https://example.com/aapl/0"]
    assert shared["symbol"].isna().tolist() == [False, True]
    assert not frame.duplicated(["article_id", "symbol"]).any()
    assert len(NewsArticleSchema.validate(frame)) == 132


def test_duplicates_within_a_query_are_dropped_with_a_note() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        # new articles pushed the last article of page 1 onto page 2
        batch = articles(100, "a") if page == 1 else articles(100, "a")[99:] + articles(5, "b")
        return httpx.Response(200, json={"status": "ok", "totalResults": 106, "articles": batch})

    result = make_client(handler).fetch_news_articles(
        FetchRequest(symbols=("AAPL",), queries=("AAPL",), start=DAY, end=DAY)
    )
    assert len(result.frame) == 105
    assert "dropped 1 duplicate article(s)" in result.notes


def test_result_cap_on_a_later_page_ends_paging_without_failing() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        calls.append(page)
        if page == 2:
            return httpx.Response(
                426, json=load_json("newsapi/error_maximumResultsReached_http426.json")
            )
        return httpx.Response(
            200, json={"status": "ok", "totalResults": 500, "articles": articles(100, "p1")}
        )

    result = make_client(handler).fetch_news_articles(
        FetchRequest(symbols=("NVDA",), queries=("NVDA",), start=DAY, end=DAY)
    )
    assert calls == [1, 2]
    assert len(result.frame) == 100
    assert any("maximumResultsReached" in note and "page 2" in note for note in result.notes)


def test_result_cap_on_the_first_page_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            426, json=load_json("newsapi/error_maximumResultsReached_http426.json")
        )

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_news_articles(
            FetchRequest(queries=("NVDA",), start=DAY, end=DAY)
        )
    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.status_code == 426


def test_page_cap_protects_the_daily_quota() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        calls.append(page)
        return httpx.Response(
            200, json={"status": "ok", "totalResults": 10_000,
                       "articles": articles(100, f"p{page}")}
        )

    client = make_client(handler)
    client.max_pages = 2
    result = client.fetch_news_articles(FetchRequest(queries=("oil",), start=DAY, end=DAY))
    assert calls == [1, 2] and len(result.frame) == 200
    assert result.notes == ["'oil': read the first 2 pages only (MAX_PAGES)"]


@pytest.mark.parametrize("status", [200, 401])
def test_bad_key_is_auth_and_never_leaks(status: int) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        body = load_json("newsapi/error_apiKeyInvalid.json")
        body["message"] += f" (you sent {request.headers['X-Api-Key']})"
        return httpx.Response(status, json=body)

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_news_articles(
            FetchRequest(queries=("AAPL",), start=DAY, end=DAY)
        )
    error = caught.value
    assert (error.kind, error.provider, error.retryable) == (ErrorKind.AUTH, "newsapi", False)
    assert len(calls) == 1
    assert KEY not in str(error) and KEY not in error.message
    assert "apiKeyInvalid" in str(error)


def test_rate_limited_is_retried() -> None:
    answers = [
        httpx.Response(429, json=load_json("newsapi/error_rateLimited.json")),
        httpx.Response(200, json=load_json(HEADLINES)),
    ]
    result = make_client(lambda request: answers.pop(0)).fetch_news_articles(
        FetchRequest(queries=("New York",), start=DAY, end=DAY)
    )
    assert len(result.frame) == 3 and answers == []


def test_window_is_required() -> None:
    client = make_client(lambda request: httpx.Response(200, json=load_json(HEADLINES)))
    with pytest.raises(ValueError, match="date window"):
        client.fetch_news_articles(FetchRequest(queries=("AAPL",)))


def test_removed_articles_in_a_live_response_are_noted() -> None:
    body = copy.deepcopy(load_json(HEADLINES))
    body["articles"].append(REMOVED)
    client = make_client(lambda request: httpx.Response(200, json=body))
    result = client.fetch_news_articles(FetchRequest(queries=("New York",), start=DAY, end=DAY))
    assert len(result.frame) == 3
    assert result.notes == ["'New York': dropped 1 '[Removed]' placeholder article(s)"]
