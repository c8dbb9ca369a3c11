"""The recovery sensors over real failed runs: the sandbox served on loopback, runs
executed through the instance in DAGSTER_HOME, the run-failure sensor evaluated with
``build_run_status_sensor_context`` and the DLQ replay sensor with ``build_sensor_context``
and an injected clock, and the runs they request executed as the daemon would.

Transient: replayed once after the breaker lets a probe through, landing the partition
exactly once. Permanent (a rejected key, an exception in the asset code): abandoned in the
dead-letter queue with the reason, never replayed. A failed replay is counted, and the
``DASHTAM_DLQ_MAX_REPLAYS``-th abandons the entry. A run Dagster retries itself is left
to that retry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    RepositoryDefinition,
    RunRequest,
    SensorDefinition,
    build_run_status_sensor_context,
    build_sensor_context,
)

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import REDACTED
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.resilience.breaker import OPEN, breaker_states
from dashtam_pipeline.resilience.dlq import ABANDONED, PENDING, REPLAYED, DeadLetterQueue
from dashtam_pipeline.runner import RunPlan, execute_plans
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.sensors.dlq_replay import (
    ENTRIES_TAG,
    REPLAY_COUNT_TAG,
    REPLAY_OF_TAG,
)
from dashtam_pipeline.sensors.run_failure import (
    FAILURE_CLASS_TAG,
    PERMANENT,
    TRANSIENT,
    abandon,
    build_recovery_sensors,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore, state_store
from dashtam_pipeline_tests.clocks import FakeClock, sensor_resources
from dashtam_pipeline_tests.loopback import KEYS, configured_sandbox, materialize, query
from dashtam_pipeline_tests.sensor_ticks import SensorTick

pytestmark = pytest.mark.integration

DAY = "2026-11-20"  # a Friday: the sandbox has bars for it
BARS = "key:market/daily_bars"
BARS_ON_DAY = f"select count(*) from market.daily_bars where date = DATE '{DAY}'"
BREAKER_TIMEOUT = 1.0  # seconds: short, so a replay run may really probe the provider



@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        for provider in ("FMP", "POLYGON"):
            monkeypatch.setenv(f"{provider}_CIRCUIT_BREAKER_THRESHOLD", "1")
            monkeypatch.setenv(f"{provider}_CIRCUIT_BREAKER_TIMEOUT", str(BREAKER_TIMEOUT))
        yield running


class Recovery:
    """The two sensors of ``build_recovery_sensors`` in the code location, over the
    instance in DAGSTER_HOME."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        defs = build_definitions(load_settings(), resources=clock.resources())
        self.run_failure = defs.resolve_sensor_def("run_failure_recovery_sensor")
        self.dlq_replay = defs.resolve_sensor_def("dlq_replay_sensor")
        self.repository: RepositoryDefinition = defs.get_repository_def()
        self.cursor: str | None = None

    def instance(self) -> DagsterInstance:
        return get_instance(load_settings())

    def failed(self, run_id: str) -> None:
        """Evaluate the run-failure sensor on a failed run, as the daemon does."""
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            (record,) = instance.get_records_for_run(
                run_id, of_type=DagsterEventType.RUN_FAILURE
            ).records
            event = record.event_log_entry.dagster_event
            assert event is not None
            context = build_run_status_sensor_context(
                sensor_name=self.run_failure.name,
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=run,
                repository_def=self.repository,
                resources=sensor_resources(),
            )
            assert self.run_failure(context) is None  # it acts on the queue and the run

    def tick(self) -> SensorTick:
        """One evaluation of the DLQ replay sensor, keeping its cursor like the daemon."""
        with self.instance() as instance:
            context = build_sensor_context(
                instance=instance,
                cursor=self.cursor,
                repository_def=self.repository,
                resources=self.clock.resources(),
            )
            result = self.dlq_replay.evaluate_tick(context)
        self.cursor = result.cursor
        return result

    def launch(self, request: RunRequest) -> str:
        """Run a requested replay through the instance, as the daemon would launch it."""
        assert request.asset_selection is not None
        plan = RunPlan(list(request.asset_selection), dict(request.tags), "replay")
        with self.instance() as instance:
            report = execute_plans(instance, [plan], in_process=True)
        (run_id,) = report.runs
        return run_id

    def run_tags(self, run_id: str) -> dict[str, str]:
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            return dict(run.tags)


def queue() -> DeadLetterQueue:
    return DeadLetterQueue.from_settings(load_settings())


def fail_bars(server: SandboxServer) -> str:
    """A real failed run: FMP and Polygon both answer 503 for daily bars."""
    server.app.add_fault(r"^/(fmp|polygon)/", status=503)
    report = materialize(BARS, partition=DAY)
    assert report.assets["market/daily_bars"].status == "failed"
    (run_id,) = report.runs
    return run_id


def polygon_breaker_opened_at() -> dt.datetime:
    """When Polygon's breaker last opened (it is open as of that moment, whatever the
    real clock says since)."""
    breaker = breaker_states(state_store(load_settings()))["polygon"]
    assert breaker.opened_at is not None
    opened = breaker_states(state_store(load_settings()), clock=lambda: breaker.opened_at)
    assert opened["polygon"].state == OPEN
    return breaker.opened_at


def wait_past(moment: dt.datetime) -> None:
    """Let real time pass ``moment`` (the breaker in the replay run reads the real clock)."""
    remaining = (moment - dt.datetime.now(dt.UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.05)


def only(requests: list[RunRequest] | None) -> RunRequest:
    assert requests is not None and len(requests) == 1, requests
    return requests[0]


def test_transient_failure_is_replayed_once_after_the_breaker_lets_a_probe_through(
    server: SandboxServer,
) -> None:
    failed_run = fail_bars(server)
    (entry,) = queue().list(status=PENDING)
    assert (entry.asset_key, entry.partition_key, entry.run_id) == (
        "market/daily_bars",
        DAY,
        failed_run,
    )
    opened_at = polygon_breaker_opened_at()
    recovery = Recovery(FakeClock(opened_at))

    recovery.failed(failed_run)
    assert recovery.run_tags(failed_run)[FAILURE_CLASS_TAG] == TRANSIENT
    (still,) = queue().list(status=PENDING)  # left for the replay sensor
    assert (still.id, still.replay_count) == (entry.id, 0)

    # the breaker is open: nothing is requested, and the tick says why
    tick = recovery.tick()
    assert not tick.run_requests
    assert tick.skip_message is not None and "circuit open" in tick.skip_message

    # past the breaker timeout one probe is due: exactly one replay of the failed partition
    recovery.clock.now = opened_at + dt.timedelta(seconds=BREAKER_TIMEOUT + 0.5)
    request = only(recovery.tick().run_requests)
    assert [k.to_user_string() for k in request.asset_selection or []] == ["market/daily_bars"]
    assert request.partition_key == DAY and request.tags["dagster/partition"] == DAY
    assert request.tags[ENTRIES_TAG] == str(entry.id)
    assert request.tags[REPLAY_COUNT_TAG] == "1"
    assert request.tags[REPLAY_OF_TAG] == failed_run
    assert request.run_key is not None
    assert str(entry.id) in request.run_key and failed_run in request.run_key

    # the next tick does not request it again while it is in flight
    assert not recovery.tick().run_requests

    # the providers are back: the replay lands the partition and resolves the entry
    server.app.clear_faults()
    wait_past(opened_at + dt.timedelta(seconds=BREAKER_TIMEOUT))
    replay_run = recovery.launch(request)
    (landed,) = queue().get([entry.id])
    assert (landed.status, landed.run_id) == (REPLAYED, replay_run)
    assert query(BARS_ON_DAY) == [(2,)]  # AAPL and BRK.B, once

    # nothing is left to replay, and a later tick requests nothing more
    tick = recovery.tick()
    assert not tick.run_requests
    assert tick.skip_message == "no pending dead letter to replay"


def test_a_failed_replay_is_counted_and_the_last_allowed_one_abandons_the_entry(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHTAM_DLQ_MAX_REPLAYS", "2")
    failed_run = fail_bars(server)
    (entry,) = queue().list(status=PENDING)
    clock = FakeClock(polygon_breaker_opened_at() + dt.timedelta(seconds=BREAKER_TIMEOUT + 0.5))
    recovery = Recovery(clock)
    recovery.failed(failed_run)

    first = only(recovery.tick().run_requests)
    wait_past(clock.now)
    first_run = recovery.launch(first)  # the providers still answer 503
    recovery.failed(first_run)
    (counted,) = queue().get([entry.id])
    assert (counted.status, counted.replay_count, counted.run_id) == (PENDING, 1, first_run)
    assert counted.last_replay_error is not None
    assert counted.last_replay_error.startswith(f"replay run {first_run} failed: ")

    # a new failure of the entry: a new run key, naming the replay run that failed
    clock.now = polygon_breaker_opened_at() + dt.timedelta(seconds=BREAKER_TIMEOUT + 0.5)
    second = only(recovery.tick().run_requests)
    assert second.run_key != first.run_key and first_run in (second.run_key or "")
    assert second.tags[REPLAY_COUNT_TAG] == "2"
    wait_past(clock.now)
    second_run = recovery.launch(second)
    recovery.failed(second_run)
    (abandoned,) = queue().get([entry.id])
    assert (abandoned.status, abandoned.replay_count) == (ABANDONED, 2)
    assert abandoned.abandoned_reason is not None
    assert abandoned.abandoned_reason.startswith("not landed after 2 replays: ")

    clock.now += dt.timedelta(hours=1)  # the breaker long due a probe: still nothing
    tick = recovery.tick()
    assert not tick.run_requests and tick.skip_message == "no pending dead letter to replay"


def test_a_permanent_failure_is_abandoned_with_its_reason_and_never_replayed(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sandbox answers a key of "invalid" with the provider's real invalid-key error
    monkeypatch.setenv("FMP_API_KEY", "invalid")
    monkeypatch.setenv("POLYGON_API_KEY", "invalid")
    report = materialize(BARS, partition=DAY)
    assert report.assets["market/daily_bars"].status == "failed"
    (failed_run,) = report.runs
    (entry,) = queue().list(status=PENDING)
    assert entry.error_kind == "auth"
    recovery = Recovery(FakeClock(dt.datetime.now(dt.UTC)))

    # even before the run-failure sensor has seen it, a permanent entry is never replayed
    assert not recovery.tick().run_requests

    recovery.failed(failed_run)
    assert recovery.run_tags(failed_run)[FAILURE_CLASS_TAG] == PERMANENT
    (abandoned,) = queue().get([entry.id])
    assert abandoned.status == ABANDONED and abandoned.replay_count == 0
    assert abandoned.abandoned_reason is not None
    assert abandoned.abandoned_reason.startswith(
        f"permanent failure (auth) in run {failed_run}, not replayed: "
    )
    assert "no provider could serve market.daily_bars" in abandoned.abandoned_reason

    recovery.clock.now += dt.timedelta(days=1)  # healthy providers, a day later: still nothing
    tick = recovery.tick()
    assert not tick.run_requests and tick.skip_message == "no pending dead letter to replay"

    recovery.failed(failed_run)  # a second evaluation of the same failure changes nothing
    assert queue().get([entry.id]) == [abandoned]


def test_an_exception_in_the_asset_code_goes_to_the_queue_abandoned_with_its_reason(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashtam_pipeline.assets import factory

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the lake refused the batch")

    monkeypatch.setattr(factory, "ingest_dataset", broken)
    report = materialize(BARS, partition=DAY)
    (failed_run,) = report.runs
    assert report.assets["market/daily_bars"].status == "failed"
    assert queue().list() == []  # not a provider failure: the factory recorded nothing

    Recovery(FakeClock(dt.datetime.now(dt.UTC))).failed(failed_run)
    (entry,) = queue().list()
    assert (entry.asset_key, entry.partition_key, entry.provider) == (
        "market/daily_bars",
        DAY,
        "fmp",
    )
    assert entry.status == ABANDONED and entry.error_kind is None
    assert entry.run_id == failed_run
    assert entry.abandoned_reason is not None
    assert entry.abandoned_reason.startswith(f"permanent failure (error) in run {failed_run}")
    assert "RuntimeError: the lake refused the batch" in entry.abandoned_reason
    for value in KEYS.values():
        assert value not in repr(entry)


def test_a_run_dagster_retries_itself_is_left_to_that_retry(server: SandboxServer) -> None:
    failed_run = fail_bars(server)
    (entry,) = queue().list(status=PENDING)
    with get_instance(load_settings()) as instance:
        instance.add_run_tags(failed_run, {"dagster/will_retry": "true"})
    clock = FakeClock(polygon_breaker_opened_at() + dt.timedelta(seconds=BREAKER_TIMEOUT + 0.5))
    recovery = Recovery(clock)

    recovery.failed(failed_run)
    assert FAILURE_CLASS_TAG not in recovery.run_tags(failed_run)
    tick = recovery.tick()  # the provider is due a probe, but Dagster's retry comes first
    assert not tick.run_requests
    assert tick.skip_message is not None and f"Dagster retries run {failed_run}" in (
        tick.skip_message
    )
    assert queue().get([entry.id])[0].status == PENDING


def test_the_recovery_sensors_load_in_the_code_location() -> None:
    sensors: list[SensorDefinition] = build_recovery_sensors()
    assert [s.name for s in sensors] == ["run_failure_recovery_sensor", "dlq_replay_sensor"]
    repository = build_definitions(load_settings()).get_repository_def()
    assert {s.name for s in repository.sensor_defs} >= {s.name for s in sensors}


def test_abandoning_closes_only_pending_entries_and_frees_the_partition(state_url: str) -> None:
    """``abandon`` on both state-store backends: the reason is kept (secrets redacted),
    no replay is counted, and the partition's next failure opens a new entry."""
    dlq = DeadLetterQueue(StateStore(state_url), secrets=["sekret-key"])
    error = ProviderError("fmp", ErrorKind.AUTH, "invalid key", status_code=401)
    entry = dlq.record_failure("market/fundamentals", "market.fundamentals", "fmp", None, {}, error)

    assert abandon(dlq, [entry.id, 4242], "rejected key sekret-key") == [entry.id]
    (closed,) = dlq.get([entry.id])
    assert (closed.status, closed.replay_count) == (ABANDONED, 0)
    assert closed.abandoned_reason == f"rejected key {REDACTED}"
    assert abandon(dlq, [entry.id], "again") == []  # already closed: untouched
    assert dlq.get([entry.id])[0].abandoned_reason == f"rejected key {REDACTED}"
    again = dlq.record_failure("market/fundamentals", "market.fundamentals", "fmp", None, {}, error)
    assert again.id != entry.id and again.status == PENDING


def test_a_failed_credential_refresh_is_left_to_the_credential_sensor(data_dir: Path) -> None:
    """A refresh run has no asset partition to replay: no failure class, no dead letter."""
    from dagster import DagsterRun

    from dashtam_pipeline.sensors.credentials import REFRESH_KEY_TAG
    from dashtam_pipeline.sensors.run_failure import handle_failed_run

    settings = load_settings()
    run = DagsterRun(job_name="credential_refresh_job", run_id="refresh-run-1",
                     tags={REFRESH_KEY_TAG: "refresh-conn-1"})
    graph = build_definitions(settings).resolve_asset_graph()
    with get_instance(settings) as instance:
        handling = handle_failed_run(instance, run, graph, settings)
    assert handling.failure_class is None
    assert "credential refresh" in " ".join(handling.notes)
    assert DeadLetterQueue.from_settings(settings).list() == []
