"""The circuit breaker on both state-store backends, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import ProviderHTTP, RetryPolicy
from dashtam_pipeline.resilience.breaker import CircuitBreaker, breaker_states
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore
from dashtam_pipeline_tests.clocks import FakeClock

START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)


def make_breaker(state_url: str, clock: FakeClock, **kwargs: float) -> CircuitBreaker:
    options = {"threshold": 3, "timeout_seconds": 60, **kwargs}
    return CircuitBreaker(StateStore(state_url), "fmp", clock=clock, **options)  # type: ignore[arg-type]


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        breaker.before_request()
        breaker.record("unavailable")


def test_opens_at_exactly_the_threshold(state_url: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    breaker.record("unavailable")
    breaker.record("malformed")
    assert breaker.state().state == "closed"
    assert breaker.state().consecutive_failures == 2
    breaker.before_request()  # still allowed below the threshold
    breaker.record("rate_limited")
    state = breaker.state()
    assert state.state == "open"
    assert state.consecutive_failures == 3
    assert state.opened_at == START
    assert state.next_probe_at == START + timedelta(seconds=60)
    with pytest.raises(ProviderError) as info:
        breaker.before_request()
    error = info.value
    assert error.kind is ErrorKind.CIRCUIT_OPEN and not error.retryable
    assert "circuit open after 3 consecutive failures since 2025-03-03T14:00:00+00:00" in str(error)
    assert "next probe at 2025-03-03T14:01:00+00:00" in str(error)


def test_open_breaker_refuses_without_a_request_in_every_process(state_url: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    other_process = make_breaker(state_url, clock)
    requests: list[httpx.Request] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(503, json={"message": "down"})

    http = ProviderHTTP(
        load_settings(fmp_api_key="k-123456").provider("fmp"),
        label="fmp",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=3, initial_wait=0.0),
        hooks=[breaker],
        sleep=sleeps.append,
    )
    with pytest.raises(ProviderError) as first:
        http.get_json("/quote", {"symbol": "AAPL"})
    assert first.value.kind is ErrorKind.UNAVAILABLE
    assert len(requests) == 3
    assert len(sleeps) == 2

    with pytest.raises(ProviderError) as second:
        http.get_json("/quote", {"symbol": "AAPL"})
    assert second.value.kind is ErrorKind.CIRCUIT_OPEN
    assert second.value.endpoint == "/quote"
    assert len(requests) == 3  # nothing was sent
    assert len(sleeps) == 2  # and the refusal was not retried
    assert len(http.stats.records) == 3  # a refusal is not an attempt

    with pytest.raises(ProviderError, match="circuit_open"):
        other_process.before_request()


def test_half_open_lets_exactly_one_probe_through(state_url: str) -> None:
    clock = FakeClock(START)
    process_a = make_breaker(state_url, clock)
    process_b = make_breaker(state_url, clock)
    open_breaker(process_a)
    clock.advance(59)
    assert process_b.state().state == "open"
    clock.advance(1)
    assert process_b.state().state == "half_open"

    process_a.before_request()  # the probe
    with pytest.raises(ProviderError) as refused:
        process_b.before_request()
    assert refused.value.kind is ErrorKind.CIRCUIT_OPEN
    assert "a probe is in flight" in refused.value.message
    assert process_b.state().state == "half_open"


def test_probe_success_closes(state_url: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    open_breaker(breaker)
    clock.advance(60)
    breaker.before_request()
    breaker.record("ok")
    state = breaker.state()
    assert (state.state, state.consecutive_failures, state.opened_at) == ("closed", 0, None)
    breaker.before_request()
    make_breaker(state_url, clock).before_request()


def test_probe_failure_reopens_with_a_new_opened_at(state_url: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    open_breaker(breaker)
    clock.advance(61)
    breaker.before_request()
    breaker.record("unavailable")
    state = breaker.state()
    assert state.state == "open"
    assert state.opened_at == START + timedelta(seconds=61)
    assert state.next_probe_at == START + timedelta(seconds=121)
    with pytest.raises(ProviderError, match="circuit_open"):
        breaker.before_request()


def test_a_probe_that_never_reports_expires(state_url: str) -> None:
    clock = FakeClock(START)
    killed = make_breaker(state_url, clock)
    survivor = make_breaker(state_url, clock)
    open_breaker(killed)
    clock.advance(60)
    killed.before_request()  # the probe's process dies without recording an outcome
    clock.advance(59)
    with pytest.raises(ProviderError, match="circuit_open"):
        survivor.before_request()
    clock.advance(1)
    survivor.before_request()  # the stale probe expired: this one is the new probe
    with pytest.raises(ProviderError, match="circuit_open"):
        killed.before_request()
    survivor.record("ok")
    assert survivor.state().state == "closed"


@pytest.mark.parametrize("outcome", ["not_found", "bad_request", "auth", "not_entitled", "ok"])
def test_an_answer_resets_the_failure_count(state_url: str, outcome: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    breaker.record("unavailable")
    breaker.record("unavailable")
    breaker.record(outcome)
    assert breaker.state().consecutive_failures == 0
    breaker.record("unavailable")
    breaker.record("unavailable")
    assert breaker.state().state == "closed"


def test_a_404_over_http_resets_the_count(state_url: str) -> None:
    clock = FakeClock(START)
    breaker = make_breaker(state_url, clock)
    statuses = iter([503, 503, 404, 503, 503, 200])
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(status := next(statuses))
        return httpx.Response(status, json=[] if status == 200 else {"message": "x"})

    http = ProviderHTTP(
        load_settings(fmp_api_key="k-123456").provider("fmp"),
        label="fmp",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=3, initial_wait=0.0),
        hooks=[breaker],
        sleep=lambda _s: None,
    )
    with pytest.raises(ProviderError) as not_found:
        http.get_json("/quote")  # 503, 503, then 404 (not retried)
    assert not_found.value.kind is ErrorKind.NOT_FOUND
    assert breaker.state().consecutive_failures == 0
    # two more failures make 4 since the first, but only 2 since the 404: still closed,
    # so the third attempt is sent
    assert http.get_json("/quote") == []
    assert sent == [503, 503, 404, 503, 503, 200]
    assert breaker.state().state == "closed"


def test_outcomes_that_are_not_answers_do_not_count(state_url: str) -> None:
    breaker = make_breaker(state_url, FakeClock(START))
    breaker.record("unavailable")
    for outcome in ("circuit_open", "quota_exhausted", "rights_denied", "not_configured"):
        breaker.record(outcome)
    assert breaker.state().consecutive_failures == 1


def test_breaker_states_lists_every_provider(state_url: str) -> None:
    clock = FakeClock(START)
    store = StateStore(state_url)
    fmp = make_breaker(state_url, clock)
    polygon = CircuitBreaker(store, "polygon", threshold=1, timeout_seconds=30, clock=clock)
    fmp.record("unavailable")
    polygon.record("unavailable")
    states = breaker_states(store, clock=clock)
    assert states["fmp"].state == "closed" and states["fmp"].consecutive_failures == 1
    assert states["polygon"].state == "open"
    clock.advance(30)
    assert breaker_states(store, clock=clock)["polygon"].state == "half_open"


def test_threshold_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(StateStore(f"sqlite:///{tmp_path}/s.db"), "fmp", threshold=0,
                       timeout_seconds=1)
