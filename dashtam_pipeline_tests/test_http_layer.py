"""The shared HTTP layer: retries with backoff, Retry-After, classification, redaction."""

from __future__ import annotations

import httpx
import pytest

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import ProviderHTTP, RetryPolicy, redact
from dashtam_pipeline.settings import load_settings

KEY = "k3y-SECRET-0123456789"


def make_http(handler, sleeps: list[float] | None = None, **kwargs) -> ProviderHTTP:
    settings = load_settings(fmp_api_key=KEY).provider("fmp")
    return ProviderHTTP(
        settings,
        label="fmp",
        transport=httpx.MockTransport(handler),
        auth_params={"apikey": KEY},
        sleep=(sleeps.append if sleeps is not None else (lambda _s: None)),
        **kwargs,
    )


def test_url_appends_real_path_to_prefixed_base_url() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=[])

    http = make_http(handler)
    http.get_json("/quote", {"symbol": "BRK-B"})
    assert seen[0].path == "/stable/quote"
    assert seen[0].params["symbol"] == "BRK-B" and seen[0].params["apikey"] == KEY


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_status_retried_with_exponential_backoff(status: int) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"message": "busy"})

    http = make_http(handler, sleeps, retry=RetryPolicy(jitter=0))
    with pytest.raises(ProviderError) as info:
        http.get_json("/quote")
    assert len(calls) == 3
    assert sleeps == [1.0, 2.0]
    assert info.value.retryable and info.value.provider == "fmp"
    assert len(http.stats.records) == 3 and http.stats.summary()["retries"] == 2


def test_retry_after_header_is_honoured_and_capped() -> None:
    sleeps: list[float] = []
    responses = iter([
        httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
        httpx.Response(429, headers={"Retry-After": "999"}, json={"message": "slow down"}),
        httpx.Response(200, json=[{"ok": True}]),
    ])
    http = make_http(lambda r: next(responses), sleeps, retry=RetryPolicy(retry_after_cap=30))
    assert http.get_json("/quote") == [{"ok": True}]
    assert sleeps == [7.0, 30.0]


@pytest.mark.parametrize("status,kind", [(401, ErrorKind.AUTH), (403, ErrorKind.AUTH),
                                         (400, ErrorKind.BAD_REQUEST), (404, ErrorKind.NOT_FOUND)])
def test_permanent_errors_are_not_retried(status: int, kind: ErrorKind) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"message": f"nope apikey={KEY}"})

    with pytest.raises(ProviderError) as info:
        make_http(handler).get_json("/quote")
    assert len(calls) == 1
    assert info.value.kind is kind and not info.value.retryable
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_timeouts_and_connection_errors_are_transient_and_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"failed to reach {request.url}")

    with pytest.raises(ProviderError) as info:
        make_http(handler).get_json("/quote", {"symbol": "AAPL"})
    assert info.value.kind is ErrorKind.UNAVAILABLE and info.value.retryable
    assert KEY not in str(info.value)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(ProviderError, match="no answer within 5 s"):
        make_http(slow).get_json("/quote")


def test_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(ProviderError) as info:
        make_http(lambda r: httpx.Response(200, text="<html>oops</html>")).get_json("/quote")
    assert info.value.kind is ErrorKind.MALFORMED


def test_classifier_turns_http_200_into_error() -> None:
    def classify(response: httpx.Response, body: object) -> ProviderError | None:
        if isinstance(body, dict) and "Error Message" in body:
            return ProviderError("fmp", ErrorKind.RATE_LIMITED, body["Error Message"])
        return None

    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"Error Message": "Limit Reach ."})

    with pytest.raises(ProviderError) as info:
        make_http(handler, classify=classify).get_json("/quote")
    assert info.value.kind is ErrorKind.RATE_LIMITED and len(calls) == 3


def test_redact_removes_values_and_secret_params() -> None:
    text = f"GET https://x/y?apikey={KEY}&api_key=other123&symbol=AAPL token {KEY}"
    cleaned = redact(text, [KEY])
    assert KEY not in cleaned and "other123" not in cleaned and "symbol=AAPL" in cleaned


def test_absolute_cursor_url_keeps_its_query_and_gets_auth() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={})

    make_http(handler).get_json("https://api.example.test/v3/snapshot/options/AAPL?cursor=abc123")
    assert seen[0].params["cursor"] == "abc123" and seen[0].params["apikey"] == KEY
    assert seen[0].path == "/v3/snapshot/options/AAPL"
