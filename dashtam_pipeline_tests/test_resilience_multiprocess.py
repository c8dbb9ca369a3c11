"""The breaker, the per-minute limit and the daily quota hold across OS processes.

Several spawned processes, each with its own FMP client built with ``resilience_hooks``,
call the sandbox served over real loopback HTTP; the server's own request log is the
judge of what was actually sent. Spawned processes each take a couple of seconds to
import the pipeline, so only the breaker test runs on both backends; the limiter takes the
same kind of row lock, and its PostgreSQL behaviour is unit-tested in test_rate_limits.py.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.http import RetryPolicy
from dashtam_pipeline.resilience.hooks import resilience_hooks
from dashtam_pipeline.resilience.limits import RateLimiter
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.server import SandboxServer, serve
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import state_store

SPAWN = multiprocessing.get_context("spawn")
THRESHOLD = 3


class TimedSandbox(SandboxApp):
    """The sandbox app, also noting when each FMP request arrived (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.fmp_arrivals: list[float] = []
        self._arrivals_lock = threading.Lock()

    def handle(self, request: Any) -> Any:
        if request.slug == "fmp":
            with self._arrivals_lock:
                self.fmp_arrivals.append(time.monotonic())
        return super().handle(request)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with serve(app=TimedSandbox()) as server:
        yield server


def _settings_kwargs(server: SandboxServer, state_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "fmp_api_key": "k-123456",
        "fmp_base_url": server.base_url("fmp"),
        "dashtam_state_url": state_url,
        "dashtam_sandbox": False,
        "fmp_circuit_breaker_threshold": THRESHOLD,
        **extra,
    }


def _quote_worker(
    settings_kwargs: dict[str, Any],
    calls: int,
    window_seconds: float | None,
    start: Any,
    results: Any,
) -> None:
    """One process: ``calls`` quote calls through an FMP client with the resilience hooks;
    puts the outcome of each call (``ok`` or the error kind) on ``results``."""
    from dashtam_pipeline.providers.fmp.client import FMPClient

    settings = load_settings(**settings_kwargs)
    hooks = resilience_hooks(settings, "fmp")
    if window_seconds is not None:  # a short window, so the test does not take minutes
        config = settings.provider("fmp")
        hooks[1] = RateLimiter(state_store(settings), "fmp", per_minute=config.requests_per_minute,
                               per_day=config.requests_per_day, tier=config.tier,
                               window_seconds=window_seconds)
    client = FMPClient(settings.provider("fmp"), hooks=hooks, retry=RetryPolicy(initial_wait=0.0))
    outcomes = []
    start.wait(60)  # every process starts calling at the same moment
    for _ in range(calls):
        try:
            client.fetch_quotes(FetchRequest(symbols=("AAPL",)))
            outcomes.append("ok")
        except ProviderError as error:
            outcomes.append(error.kind.value)
    client.close()
    results.put(outcomes)


def run_processes(
    settings_kwargs: dict[str, Any], *, processes: int, calls: int,
    window_seconds: float | None = None,
) -> list[list[str]]:
    start = SPAWN.Barrier(processes)
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_quote_worker,
                      args=(settings_kwargs, calls, window_seconds, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    return outcomes


def test_dead_provider_is_left_alone_by_every_process(
    sandbox: SandboxServer, state_url: str
) -> None:
    sandbox.app.add_fault("^/fmp/", status=503)
    processes = 4
    outcomes = run_processes(_settings_kwargs(sandbox, state_url), processes=processes, calls=3)
    sent = sandbox.app.request_counts().get("fmp", 0)
    # The breaker opens at the THRESHOLD-th failure. Attempts already in flight at that
    # moment were allowed while it was still closed and still reach the server; each
    # process has at most one attempt in flight, so at most one extra per process.
    assert THRESHOLD <= sent <= THRESHOLD + processes
    every = Counter(kind for per_process in outcomes for kind in per_process)
    assert set(every) <= {"unavailable", "circuit_open"}
    assert all(per_process[-1] == "circuit_open" for per_process in outcomes)
    assert every["circuit_open"] >= processes * 3 - sent


SQLITE_ONLY = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_per_minute_limit_holds_across_processes(sandbox: SandboxServer, state_url: str) -> None:
    limit, window = 5, 1.0
    outcomes = run_processes(
        _settings_kwargs(sandbox, state_url, fmp_requests_per_minute=limit),
        processes=3, calls=4, window_seconds=window,
    )
    assert all(kind == "ok" for per_process in outcomes for kind in per_process)
    arrivals = sorted(sandbox.app.fmp_arrivals)  # type: ignore[attr-defined]
    assert len(arrivals) == 12
    # The limiter spaces request STARTS; arrival at the server adds a little jitter, so
    # judge windows slightly shorter than the limiter's.
    judged = window * 0.8
    for first in arrivals:
        in_window = [t for t in arrivals if first <= t < first + judged]
        assert len(in_window) <= limit
    # 12 requests at 5 per window need three windows: the last starts 2 windows in.
    assert arrivals[-1] - arrivals[0] >= 2 * judged


@SQLITE_ONLY
def test_daily_quota_holds_across_processes(sandbox: SandboxServer, state_url: str) -> None:
    outcomes = run_processes(
        _settings_kwargs(sandbox, state_url, fmp_requests_per_day=10), processes=3, calls=6,
    )
    every = Counter(kind for per_process in outcomes for kind in per_process)
    assert sandbox.app.request_counts().get("fmp", 0) == 10
    assert every == {"ok": 10, "quota_exhausted": 8}
