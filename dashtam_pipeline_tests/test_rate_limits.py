"""Per-minute limits and daily quotas on both state-store backends, with a fake clock
whose ``sleep`` moves time instead of waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import ProviderHTTP, RetryPolicy
from dashtam_pipeline.resilience.breaker import CircuitBreaker
from dashtam_pipeline.resilience.hooks import resilience_hooks
from dashtam_pipeline.resilience.limits import RateLimiter
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore

START = datetime(2025, 3, 3, 23, 58, 30, tzinfo=UTC)


class FakeTime:
    """A clock and a sleep that advances it, recording each sleep."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def make_limiter(
    state_url: str, time: FakeTime, *, per_minute: int | None = None,
    per_day: int | None = None,
) -> RateLimiter:
    return RateLimiter(StateStore(state_url), "fmp", per_minute=per_minute, per_day=per_day,
                       tier="free", clock=time, sleep=time.sleep)


def test_waits_instead_of_exceeding_the_per_minute_limit(state_url: str) -> None:
    time = FakeTime()
    process_a = make_limiter(state_url, time, per_minute=3)
    process_b = make_limiter(state_url, time, per_minute=3)
    started: list[datetime] = []
    for i in range(7):
        (process_a if i % 2 else process_b).acquire()
        started.append(time.now)
        time.now += timedelta(seconds=1)  # each request takes a second
    # 3 go at once; each later one waits for the oldest of the last 3 to leave the window
    assert len(time.sleeps) == 2
    for i, moment in enumerate(started):
        in_window = [s for s in started if moment <= s < moment + timedelta(seconds=60)]
        assert len(in_window) <= 3, f"request {i}: {len(in_window)} in one minute"
    assert started[3] == START + timedelta(seconds=60)
    assert started[6] == START + timedelta(seconds=120)


def test_usage_reports_counts_and_limits(state_url: str) -> None:
    time = FakeTime()
    limiter = make_limiter(state_url, time, per_minute=10, per_day=100)
    limiter.acquire()
    limiter.acquire()
    time.now += timedelta(seconds=61)
    limiter.acquire()
    assert limiter.usage() == {
        "provider": "fmp",
        "tier": "free",
        "requests_this_minute": 1,
        "requests_per_minute": 10,
        "window_seconds": 60.0,
        "requests_today": 3,
        "requests_per_day": 100,
        "quota_resets_at": "2025-03-04T00:00:00+00:00",
    }


def test_daily_quota_refuses_before_sending(state_url: str) -> None:
    time = FakeTime()
    limiter = make_limiter(state_url, time, per_day=2)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=[])

    http = ProviderHTTP(
        load_settings(fmp_api_key="k-123456").provider("fmp"),
        label="fmp",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(initial_wait=0.0),
        hooks=[limiter],
        sleep=time.sleep,
    )
    http.get_json("/quote")
    http.get_json("/quote")
    with pytest.raises(ProviderError) as info:
        http.get_json("/quote")
    error = info.value
    assert len(requests) == 2  # the refused attempt sent nothing
    assert time.sleeps == []  # and was not retried
    assert error.kind is ErrorKind.QUOTA_EXHAUSTED and not error.retryable
    assert error.message == (
        "fmp daily quota of 2 requests (tier free) is used up; "
        "it resets at 2025-03-04T00:00:00 UTC"
    )
    # a new UTC day brings a new quota
    time.now = datetime(2025, 3, 4, 0, 0, tzinfo=UTC)
    http.get_json("/quote")
    assert len(requests) == 3


def test_quota_is_shared_by_every_limiter_of_a_provider(state_url: str) -> None:
    time = FakeTime()
    make_limiter(state_url, time, per_day=1).acquire()
    with pytest.raises(ProviderError, match="quota_exhausted"):
        make_limiter(state_url, time, per_day=1).acquire()
    other = RateLimiter(StateStore(state_url), "polygon", per_minute=None, per_day=1,
                        tier="free", clock=time, sleep=time.sleep)
    other.acquire()  # another provider has its own quota


def test_unlimited_still_counts(state_url: str) -> None:
    time = FakeTime()
    limiter = make_limiter(state_url, time)
    for _ in range(20):
        limiter.acquire()
    assert time.sleeps == []
    assert limiter.usage()["requests_today"] == 20


def test_breaker_refusal_takes_no_quota(state_url: str) -> None:
    """The hook order: an open breaker refuses before the limiter takes a slot."""
    settings = load_settings(fmp_api_key="k-123456", dashtam_state_url=state_url,
                             dashtam_sandbox=False, fmp_requests_per_day=5,
                             fmp_circuit_breaker_threshold=1)
    hooks = resilience_hooks(settings, "fmp")
    assert [type(h).__name__ for h in hooks] == ["CircuitBreaker", "RateLimiter", "CallAudit"]
    breaker, limiter = hooks[0], hooks[1]
    assert isinstance(breaker, CircuitBreaker) and isinstance(limiter, RateLimiter)
    assert (limiter.per_day, limiter.tier) == (5, "free")
    breaker.record("unavailable")
    for _ in range(3):
        with pytest.raises(ProviderError, match="circuit_open"):
            for hook in hooks:
                hook.before_attempt("fmp", "/quote")
    assert limiter.usage()["requests_today"] == 0


def test_sandbox_mode_has_no_rate_limiter(state_url: str) -> None:
    """The built-in sandbox has no limits and must not spend a real key's quota."""
    settings = load_settings(dashtam_state_url=state_url, dashtam_sandbox=True)
    hooks = resilience_hooks(settings, "polygon")
    assert [type(h).__name__ for h in hooks] == ["CircuitBreaker", "CallAudit"]


def test_limits_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per-minute"):
        RateLimiter(StateStore(f"sqlite:///{tmp_path}/s.db"), "fmp", per_minute=0,
                    per_day=None, tier=None)
