"""The call audit on both state-store backends: every attempt stored, no secret stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import CallRecord, ProviderHTTP, RetryPolicy
from dashtam_pipeline.resilience.audit import CallAudit, call_summary, recent_calls
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore
from dashtam_pipeline_tests.clocks import FakeClock

KEY = "k3y-SECRET-0123456789"
START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)


def stored_text(store: StateStore) -> str:
    return repr(store.query("SELECT * FROM call_audit"))


def test_every_attempt_is_stored_without_secrets(
    state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_RUN_ID", "run-42")
    store = StateStore(state_url)
    audit = CallAudit(store, rights_profile="basic", secrets=[KEY])
    statuses = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["apikey"] == KEY  # the key did travel in the URL
        status = next(statuses)
        if status == 503:  # a provider that echoes the request URL, key included
            return httpx.Response(503, json={"message": f"overloaded: {request.url}"})
        return httpx.Response(200, json=[{"symbol": "AAPL"}])

    http = ProviderHTTP(
        load_settings(fmp_api_key=KEY).provider("fmp"),
        label="fmp",
        transport=httpx.MockTransport(handler),
        auth_params={"apikey": KEY},
        retry=RetryPolicy(initial_wait=0.0),
        hooks=[audit],
        sleep=lambda _s: None,
    )
    http.get_json("/quote", {"symbol": "AAPL"})
    calls = recent_calls(store, "fmp")
    assert [(c["attempt"], c["status_code"], c["outcome"]) for c in calls] == [
        (2, 200, "ok"), (1, 503, "unavailable"),
    ]
    first = calls[1]
    assert first["endpoint"] == "/quote" and first["method"] == "GET"
    assert first["rights_profile"] == "basic" and first["run_id"] == "run-42"
    assert "overloaded" in first["error"] and "apikey=***" in first["error"]
    assert first["latency_ms"] >= 0
    assert KEY not in stored_text(store)


def test_secrets_are_scrubbed_again_before_storing(state_url: str) -> None:
    """Defence in depth: a record that somehow still carries a secret is scrubbed."""
    store = StateStore(state_url)
    audit = CallAudit(store, rights_profile="pro", run_id="r1", secrets=["hunter2-password"])
    audit.after_attempt(CallRecord(
        provider="newsapi", method="GET", endpoint="/v2/everything?apiKey=abcdef123456",
        attempt=1, status_code=401, latency_ms=12.5, outcome="auth",
        error="refused token=tok-987654 and hunter2-password",
    ))
    text = stored_text(store)
    for secret in ("abcdef123456", "tok-987654", "hunter2-password"):
        assert secret not in text
    (call,) = recent_calls(store)
    assert call["endpoint"] == "/v2/everything?apiKey=***"
    assert call["error"] == "refused token=*** and ***"
    assert (call["run_id"], call["rights_profile"]) == ("r1", "pro")


def test_recent_calls_filters_and_limits(state_url: str) -> None:
    store = StateStore(state_url)
    clock = FakeClock(START)
    audit = CallAudit(store, rights_profile="basic", clock=clock)
    for i, provider in enumerate(["fmp", "fred", "fmp", "fmp"]):
        clock.now = START + timedelta(seconds=i)
        audit.after_attempt(CallRecord(provider, "GET", f"/p{i}", 1, 200, 1.0, "ok"))
    assert [c["endpoint"] for c in recent_calls(store, "fmp", limit=2)] == ["/p3", "/p2"]
    assert [c["endpoint"] for c in recent_calls(store)] == ["/p3", "/p2", "/p1", "/p0"]
    assert recent_calls(store, "polygon") == []


def test_call_summary_counts_failures_retries_and_latency(state_url: str) -> None:
    store = StateStore(state_url)
    clock = FakeClock(START)
    audit = CallAudit(store, rights_profile="basic", clock=clock)
    clock.now = START - timedelta(hours=1)  # before the window: not counted
    audit.after_attempt(CallRecord("fmp", "GET", "/quote", 1, 503, 5000.0, "unavailable"))
    clock.now = START
    for latency in range(1, 11):  # 10 ms .. 100 ms
        audit.after_attempt(CallRecord("fmp", "GET", "/quote", 1, 200, latency * 10.0, "ok"))
    audit.after_attempt(CallRecord("fmp", "GET", "/quote", 1, 503, 200.0, "unavailable"))
    audit.after_attempt(CallRecord("fmp", "GET", "/quote", 2, 503, 300.0, "unavailable"))
    audit.after_attempt(CallRecord("fred", "GET", "/series", 1, 200, 1.0, "ok"))
    summary = call_summary(store, "fmp", START)
    assert summary["calls"] == 12
    assert summary["failures"] == 2
    assert summary["retries"] == 1
    assert summary["latency_p50_ms"] == 70.0  # nearest rank over the 12 sorted latencies
    assert summary["latency_p95_ms"] == 300.0
    assert call_summary(store, "polygon", START)["calls"] == 0


def test_a_refused_attempt_is_not_audited(state_url: str) -> None:
    """Refusals raise before the attempt exists; they are errors of the call, not calls."""
    store = StateStore(state_url)
    audit = CallAudit(store, rights_profile="basic")

    class Refuse:
        def before_attempt(self, provider: str, endpoint: str) -> None:
            raise ProviderError(provider, ErrorKind.CIRCUIT_OPEN, "open", retryable=False)

        def after_attempt(self, record: CallRecord) -> None:
            return None

    http = ProviderHTTP(
        load_settings(fmp_api_key=KEY).provider("fmp"), label="fmp",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])),
        hooks=[Refuse(), audit],
    )
    with pytest.raises(ProviderError, match="circuit_open"):
        http.get_json("/quote")
    assert recent_calls(store) == []
