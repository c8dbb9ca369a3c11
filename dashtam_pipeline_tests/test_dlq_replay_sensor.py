"""The DLQ replay sensor's decisions, with dead letters written directly to the queue and
an injected clock: nothing while a provider's breaker is open or its daily quota is spent,
one probe run when the breaker's timeout has passed, every partition once it is closed;
transient failures only; a replay that ended without landing is counted; an entry whose
partition no longer exists fails its replay instead of breaking the tick.

(Real failed runs and replays through the sandbox: ``test_run_failure_sensor.py``.)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRun, DagsterRunStatus, RunRequest, build_sensor_context

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.resilience.breaker import CircuitBreaker
from dashtam_pipeline.resilience.dlq import PENDING, DeadLetter, DeadLetterQueue
from dashtam_pipeline.resilience.limits import RateLimiter
from dashtam_pipeline.sensors.dlq_replay import (
    ENTRIES_TAG,
    LAUNCHED_BY_TAG,
    PROVIDER_TAG,
    REPLAY_COUNT_TAG,
    REPLAY_KEY_TAG,
    SENSOR_NAME,
    build_dlq_replay_sensor,
)
from dashtam_pipeline.sensors.health import (
    HEALTHY,
    PROBE_DUE,
    UNAVAILABLE,
    provider_health_now,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import state_store
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.sensor_ticks import SensorTick

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: quotas reset at midnight, at a year end and on
#: the night New York's clocks jump
pytestmark = pytest.mark.dates(at=("year_end", "dst_spring"))

T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
TIMEOUT = 60.0



@pytest.fixture
def clock(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    monkeypatch.setenv("DASHTAM_SANDBOX", "false")
    monkeypatch.setenv("DASHTAM_FRED_SERIES", "GDP,UNRATE")
    yield FakeClock(T0)


class Sensor:
    """The DLQ replay sensor evaluated like the daemon does, cursor kept between ticks."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.definition = build_dlq_replay_sensor()
        self.repository = build_definitions(load_settings()).get_repository_def()
        self.cursor: str | None = None

    def tick(self) -> SensorTick:
        with get_instance(load_settings()) as instance:
            context = build_sensor_context(
                instance=instance,
                cursor=self.cursor,
                repository_def=self.repository,
                resources=self.clock.resources(),
            )
            result = self.definition.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def queue() -> DeadLetterQueue:
    return DeadLetterQueue.from_settings(load_settings())


def dead_letter(
    asset_key: str, provider: str, partition: str | None, kind: ErrorKind
) -> DeadLetter:
    error = ProviderError(provider, kind, f"{provider} failed", status_code=503)
    table = asset_key.replace("/", ".")
    return queue().record_failure(asset_key, table, provider, partition, {}, error)


def open_breaker(provider: str, clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(
        state_store(load_settings()), provider, threshold=1, timeout_seconds=TIMEOUT, clock=clock
    )
    breaker.record(ErrorKind.UNAVAILABLE.value)
    return breaker


def assets_and_partition(request: RunRequest) -> tuple[list[str], str | None]:
    return [k.to_user_string() for k in request.asset_selection or []], request.partition_key


def test_health_follows_the_breaker_and_the_quota_on_the_injected_clock(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    assert provider_health_now(settings, "polygon", clock=clock).status == HEALTHY

    breaker = open_breaker("polygon", clock)
    health = provider_health_now(settings, "polygon", clock=clock)
    assert (health.status, health.can_replay) == (UNAVAILABLE, False)
    assert health.retry_at == T0 + dt.timedelta(seconds=TIMEOUT)
    clock.now = T0 + dt.timedelta(seconds=TIMEOUT)
    assert provider_health_now(settings, "polygon", clock=clock).status == PROBE_DUE
    breaker.before_request()  # the probe is granted, and it succeeds
    breaker.record("ok")
    assert provider_health_now(settings, "polygon", clock=clock).status == HEALTHY

    monkeypatch.setenv("FMP_REQUESTS_PER_DAY", "2")
    settings = load_settings()
    limiter = RateLimiter(
        state_store(settings), "fmp", per_minute=None, per_day=2, tier=None, clock=clock
    )
    limiter.acquire()
    assert provider_health_now(settings, "fmp", clock=clock).status == HEALTHY
    limiter.acquire()
    spent = provider_health_now(settings, "fmp", clock=clock)
    midnight = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    assert (spent.status, spent.retry_at) == (UNAVAILABLE, midnight)
    assert "daily quota is used up" in spent.reason
    clock.now = midnight
    assert provider_health_now(settings, "fmp", clock=clock).status == HEALTHY

    unknown = provider_health_now(settings, "nobody", clock=clock)
    assert unknown.status == UNAVAILABLE and "Unknown provider" in unknown.reason


def test_nothing_until_the_quota_resets_then_one_run_for_the_entry(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMP_REQUESTS_PER_DAY", "1")
    entry = dead_letter("market/fundamentals", "fmp", None, ErrorKind.QUOTA_EXHAUSTED)
    RateLimiter(
        state_store(load_settings()), "fmp", per_minute=None, per_day=1, tier=None, clock=clock
    ).acquire()
    sensor = Sensor(clock)

    tick = sensor.tick()
    assert not tick.run_requests
    assert tick.skip_message is not None
    assert "fmp daily quota is used up until 2026-11-24T00:00:00+00:00" in tick.skip_message

    clock.now = dt.datetime(2026, 11, 24, 0, 0, 1, tzinfo=dt.UTC)
    (request,) = sensor.tick().run_requests or []
    assert assets_and_partition(request) == (["market/fundamentals"], None)
    assert request.tags[ENTRIES_TAG] == str(entry.id)
    assert request.tags[REPLAY_COUNT_TAG] == "1"
    assert request.tags[PROVIDER_TAG] == "fmp"
    assert request.tags[LAUNCHED_BY_TAG] == SENSOR_NAME
    assert request.tags[REPLAY_KEY_TAG] == request.run_key == f"dlq-replay|{entry.id}@-#0"
    assert not sensor.tick().run_requests  # in flight: not requested twice


def test_one_probe_run_while_half_open_then_every_partition_once_closed(
    clock: FakeClock,
) -> None:
    friday = dead_letter("market/daily_bars", "polygon", "2026-11-20", ErrorKind.UNAVAILABLE)
    quotes = dead_letter("market/quotes", "polygon", "2026-11-20", ErrorKind.CIRCUIT_OPEN)
    thursday = dead_letter("market/daily_bars", "polygon", "2026-11-19", ErrorKind.RATE_LIMITED)
    dead_letter("market/daily_bars", "polygon", "2026-11-18", ErrorKind.AUTH)  # permanent
    breaker = open_breaker("polygon", clock)
    sensor = Sensor(clock)

    tick = sensor.tick()
    assert not tick.run_requests
    assert tick.skip_message is not None and "3 entries of polygon wait" in tick.skip_message

    # the timeout has passed: the breaker will let one probe through, so one run
    clock.now = T0 + dt.timedelta(seconds=TIMEOUT)
    (probe,) = sensor.tick().run_requests or []
    assert assets_and_partition(probe) == (
        ["market/daily_bars", "market/quotes"],
        "2026-11-20",
    )
    assert probe.tags[ENTRIES_TAG] == f"{friday.id},{quotes.id}"
    tick = sensor.tick()  # the probe is in flight: no second probe
    assert not tick.run_requests
    assert tick.skip_message is not None and "in flight as the breaker's probe" in (
        tick.skip_message
    )

    # the probe landed (the factory resolves its entries) and closed the breaker
    queue().resolve("market/daily_bars", ["2026-11-20"], "probe-run")
    queue().resolve("market/quotes", ["2026-11-20"], "probe-run")
    breaker.record("ok")
    (rest,) = sensor.tick().run_requests or []
    assert assets_and_partition(rest) == (["market/daily_bars"], "2026-11-19")
    assert rest.tags[ENTRIES_TAG] == str(thursday.id)
    assert not sensor.tick().run_requests
    # the permanent entry was never requested, and is still there for a person
    assert [e.error_kind for e in queue().list(status=PENDING)] == ["rate_limited", "auth"]


def test_a_replay_run_that_ended_without_landing_counts_as_a_failed_replay(
    clock: FakeClock,
) -> None:
    entry = dead_letter("market/daily_bars", "polygon", "2026-11-20", ErrorKind.UNAVAILABLE)
    sensor = Sensor(clock)
    (first,) = sensor.tick().run_requests or []
    # the replay ran and succeeded, but the asset was skipped: the entry is still pending
    with get_instance(load_settings()) as instance:
        run = instance.add_run(
            DagsterRun(
                job_name="__ASSET_JOB",
                run_id=str(uuid.uuid4()),
                tags=dict(first.tags),
                status=DagsterRunStatus.SUCCESS,
            )
        )

    (second,) = sensor.tick().run_requests or []
    (counted,) = queue().get([entry.id])
    assert (counted.status, counted.replay_count) == (PENDING, 1)
    assert counted.last_replay_error == (
        f"replay run {run.run_id} ended success without landing market/daily_bars [2026-11-20]"
    )
    assert second.run_key != first.run_key and second.tags[REPLAY_COUNT_TAG] == "2"


def test_an_entry_whose_partition_no_longer_exists_fails_its_replay_not_the_tick(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHTAM_DLQ_MAX_REPLAYS", "1")
    gone = dead_letter("macro/fred_observations", "fred", "CPIAUCSL", ErrorKind.UNAVAILABLE)
    kept = dead_letter("macro/fred_observations", "fred", "GDP", ErrorKind.UNAVAILABLE)

    (request,) = Sensor(clock).tick().run_requests or []
    assert assets_and_partition(request) == (["macro/fred_observations"], "GDP")
    assert request.tags[ENTRIES_TAG] == str(kept.id)
    (abandoned,) = queue().get([gone.id])
    assert abandoned.status == "abandoned"
    assert abandoned.abandoned_reason == (
        "not landed after 1 replay: CPIAUCSL is no longer a partition of asset "
        "macro/fred_observations"
    )
