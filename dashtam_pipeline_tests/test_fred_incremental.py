"""Incremental FRED pulls and concurrent series over the loopback sandbox.

The sandbox is served on a real socket with its own movable clock, so "a month later"
brings FRED's next releases and revisions without sleeping. Pulls go through
``ingest_dataset`` (validation, lake upsert, then ``after_landed`` records the sync) with
the client built here, as ``build_client`` will build it once it passes ``sync``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.fred_sync import FredSync, SyncMark, normalize_last_updated
from dashtam_pipeline.ingest import IngestionOutcome, ingest_dataset
from dashtam_pipeline.providers.fred.client import FredClient
from dashtam_pipeline.registry import Dataset, ProviderSlug, get_dataset_spec, providers_serving
from dashtam_pipeline.resilience.hooks import resilience_hooks
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.common import CHICAGO
from dashtam_pipeline.sandbox.fred_data import MISSING, SERIES
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline_tests.client_helpers import NO_WAIT
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.loopback import configured_sandbox

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: FRED's "today" (Chicago) differs from UTC's at
#: a year end; vintages far from the recorded history
pytestmark = pytest.mark.dates(at=("year_end", "years_ahead"))

SPEC = get_dataset_spec(Dataset.FRED_OBSERVATIONS)
SERIES_PATH = "fred /fred/series"
OBSERVATIONS_PATH = "fred /fred/series/observations"
PAIR = ("GDP", "UNRATE")

Row = tuple[str, dt.date, dt.date, dt.date, float | None]


class MovableClock(FakeClock):
    """The sandbox's "now", moved by tests, and the day it is in St. Louis."""

    def fred_today(self) -> dt.date:
        return self.now.astimezone(CHICAGO).date()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(dt.datetime(2024, 6, 14, 18, 0, tzinfo=dt.UTC))


@pytest.fixture
def server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch, SandboxApp(clock=clock)) as running:
        yield running


def make_client(*, sync: bool = True, max_workers: int | None = None) -> FredClient:
    """The client as production builds it (resilience hooks: breaker, rate limiter, audit,
    all in the state store), plus the sync store."""
    settings = load_settings()
    return FredClient(
        settings.provider(ProviderSlug.FRED),
        retry=NO_WAIT,
        hooks=resilience_hooks(settings, ProviderSlug.FRED),
        sync=FredSync.from_settings(settings) if sync else None,
        max_workers=max_workers,
    )


def pull(series_ids: tuple[str, ...]) -> IngestionOutcome:
    """One ingestion of ``macro.fred_observations`` as the asset runs it."""
    settings = load_settings()
    return ingest_dataset(
        SPEC, providers_serving(Dataset.FRED_OBSERVATIONS), FetchRequest(series_ids=series_ids),
        settings, Lake(settings.lake_dir), client_factory=lambda _slug, _s: make_client(),
    )


def lake_rows() -> set[Row]:
    frame = Lake(load_settings().lake_dir).read_frame(SPEC.table)
    return {
        (s, d, start, end, None if pd.isna(v) else round(float(v), 6))
        for s, d, start, end, v in frame[
            ["series_id", "date", "realtime_start", "realtime_end", "value"]
        ].itertuples(index=False)
    }


def sandbox_rows(app: SandboxApp, series_ids: tuple[str, ...], today: dt.date) -> set[Row]:
    """Every vintage the sandbox publishes on ``today`` (its unclipped history)."""
    return {
        (sid, v.date, v.start, v.end, None if v.value == MISSING else round(float(v.value), 6))
        for sid in series_ids
        for v in app.world.fred.vintages(SERIES[sid], today)
    }


def counts(server: SandboxServer) -> dict[str, int]:
    return {k: v for k, v in server.app.request_counts().items() if k.startswith("fred ")}


def test_first_pull_fills_every_vintage_and_records_the_sync(
    server: SandboxServer, clock: MovableClock
) -> None:
    outcome = pull(PAIR)

    expected = sandbox_rows(server.app, PAIR, clock.fred_today())
    assert lake_rows() == expected
    assert any(end != dt.date(9999, 12, 31) for *_, end, _ in expected)  # revisions exist
    assert counts(server) == {SERIES_PATH: 2, OBSERVATIONS_PATH: 2}
    assert any("GDP: first pull" in note for note in outcome.notes)
    marks = FredSync.from_settings(load_settings()).marks()
    assert set(marks) == set(PAIR)
    assert marks["GDP"].realtime_start_synced == clock.fred_today()
    assert marks["GDP"].last_updated is not None


def test_unchanged_series_cost_one_series_request_each_and_change_nothing(
    server: SandboxServer,
) -> None:
    pull(PAIR)
    before = lake_rows()
    table_dir = Lake(load_settings().lake_dir).table_dir(SPEC)
    files_before = {p.name: p.stat().st_mtime_ns for p in table_dir.glob("*.parquet")}
    server.app.reset()

    outcome = pull(PAIR)

    assert counts(server) == {SERIES_PATH: 2}
    assert lake_rows() == before
    assert {p.name: p.stat().st_mtime_ns for p in table_dir.glob("*.parquet")} == files_before
    assert outcome.write is not None and outcome.write.rows_written == 0
    unchanged = [n for n in outcome.notes if "unchanged since the last pull" in n]
    assert len(unchanged) == 2


def test_changed_series_is_pulled_again_and_its_revision_closes_the_old_vintage(
    server: SandboxServer, clock: MovableClock
) -> None:
    pull(PAIR)
    first_day = clock.fred_today()
    before = lake_rows()
    sync = FredSync.from_settings(load_settings())
    stamp_before = sync.get("GDP")
    server.app.reset()

    clock.now += dt.timedelta(days=45)  # FRED has published releases and revisions since
    outcome = pull(PAIR)

    assert counts(server) == {SERIES_PATH: 2, OBSERVATIONS_PATH: 2}
    after = lake_rows()
    # exactly FRED's history now: no clipped duplicate keys, nothing stored lost
    assert after == sandbox_rows(server.app, PAIR, clock.fred_today())
    keys_before = {row[:3] for row in before}
    assert keys_before <= {row[:3] for row in after}
    closed = {
        row[:3] for row in before if row[3] == dt.date(9999, 12, 31)
    } - {row[:3] for row in after if row[3] == dt.date(9999, 12, 31)}
    assert closed, "a month of FRED releases revises some current vintage"
    for series_id, date, start in closed:
        history = sorted(r for r in after if r[0] == series_id and r[1] == date)
        old = next(r for r in history if r[2] == start)
        newer = [r for r in history if r[2] > start]
        assert newer and old[3] == newer[0][2] - dt.timedelta(days=1)
        assert newer[0][2] > first_day and newer[-1][3] == dt.date(9999, 12, 31)
    assert any("updated" in n and "pulled every vintage again" in n for n in outcome.notes)
    stamp_after = sync.get("GDP")
    assert stamp_before is not None and stamp_after is not None
    assert stamp_after.last_updated != stamp_before.last_updated
    assert stamp_after.realtime_start_synced == clock.fred_today()


def test_a_window_since_the_last_sync_would_invent_keys(
    server: SandboxServer, clock: MovableClock
) -> None:
    """Why a changed series is pulled whole: FRED clips rows to the requested real-time
    window, so the vintage current at the last sync comes back starting on the window's
    first day, a (date, realtime_start) key that FRED's history does not have."""
    last_sync = clock.fred_today()
    clock.now += dt.timedelta(days=45)
    client = make_client(sync=False)
    try:
        window = client.fetch_observations("GDP", realtime_start=last_sync).frame
    finally:
        client.close()
    history = {row[1:3] for row in sandbox_rows(server.app, ("GDP",), clock.fred_today())}
    window_keys = set(zip(window["date"], window["realtime_start"], strict=True))
    invented = window_keys - history
    assert invented and {start for _, start in invented} == {last_sync}


VINTAGE_DATES_PATH = "fred /fred/series/vintagedates"


def test_a_history_of_more_than_2000_vintage_dates_is_pulled_in_windows_and_stitched(
    server: SandboxServer, clock: MovableClock
) -> None:
    """DGS10 gets a vintage every business day: by late 2026 its history spans more than
    2,000 vintage dates, which FRED refuses in one request. The pull splits the real-time
    period and joins the rows FRED clipped at the windows' edges, so the lake holds
    exactly FRED's unclipped history."""
    clock.now = dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)
    expected = sandbox_rows(server.app, ("DGS10",), clock.fred_today())
    vintage_dates = {row[2] for row in expected}
    assert 2_000 < len(vintage_dates) <= 4_000

    outcome = pull(("DGS10",))

    assert lake_rows() == expected
    # /series says daily since 2018: two windows of 2,000 weekdays, sized from the
    # metadata alone (no vintage-date list, no refused request): the minimum
    assert counts(server) == {SERIES_PATH: 1, OBSERVATIONS_PATH: 2}
    assert any("pulled in 2 real-time windows" in note for note in outcome.notes)
    assert not [a for a in outcome.calls.records if a.status_code == 400]

    # without metadata to go by, FRED's refusal is what splits the request
    server.app.reset()
    client = make_client(sync=False)
    try:
        history = client.fetch_observations("DGS10")
        refused = [a for a in client.http.stats.records if a.status_code == 400]
    finally:
        client.close()
    assert counts(server) == {OBSERVATIONS_PATH: 3, VINTAGE_DATES_PATH: 1}
    assert len(refused) == 1 and "maximum number of vintage dates" in (refused[0].error or "")
    stored = Lake(load_settings().lake_dir).read_frame(SPEC.table)
    pd.testing.assert_frame_equal(
        history.frame.sort_values(["date", "realtime_start"]).reset_index(drop=True),
        stored[history.frame.columns].sort_values(["date", "realtime_start"])
        .reset_index(drop=True),
        check_dtype=False,
    )


def test_a_backfill_of_an_observation_range_pulls_its_vintages_and_records_no_sync(
    server: SandboxServer, clock: MovableClock
) -> None:
    start, end = dt.date(2010, 1, 1), dt.date(2012, 12, 31)
    settings = load_settings()
    outcome = ingest_dataset(
        SPEC, providers_serving(Dataset.FRED_OBSERVATIONS),
        FetchRequest(series_ids=PAIR, start=start, end=end), settings,
        Lake(settings.lake_dir), client_factory=lambda _slug, _s: make_client(),
    )

    everything = sandbox_rows(server.app, PAIR, clock.fred_today())
    assert lake_rows() == {row for row in everything if start <= row[1] <= end}
    assert FredSync.from_settings(settings).marks() == {}  # not a full pull
    assert any("observation dates 2010-01-01..2012-12-31" in n for n in outcome.notes)

    pull(PAIR)  # the nightly whole-history pull afterwards adds the rest, loses nothing
    assert lake_rows() == everything


def test_series_are_fetched_concurrently(
    server: SandboxServer, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted, not timed: the most requests the sandbox had in flight at once (a timing
    ratio fails on a loaded machine; overlap does not)."""
    every = tuple(SERIES)
    assert len(every) == 8
    client = make_client(sync=False)
    try:
        warm = client.fetch_fred_observations(FetchRequest(series_ids=every))  # sandbox caches
        server.app.add_fault(r"^/fred/", delay_seconds=0.2)
        with in_flight(server, monkeypatch) as concurrent:
            result = client.fetch_fred_observations(FetchRequest(series_ids=every))
    finally:
        client.close()
    sequential_client = make_client(sync=False, max_workers=1)
    try:
        with in_flight(server, monkeypatch) as sequential:
            sequential_client.fetch_fred_observations(FetchRequest(series_ids=every))
    finally:
        sequential_client.close()

    assert sequential.most == 1  # one worker: one request at a time
    assert concurrent.most >= 4, f"at most {concurrent.most} FRED requests were in flight at once"
    pd.testing.assert_frame_equal(result.frame, warm.frame)  # same rows, same order
    assert list(pd.unique(result.frame["series_id"])) == list(every)
    assert counts(server)[OBSERVATIONS_PATH] == 3 * 8


class InFlight:
    """How many requests the served sandbox was handling at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()


@contextmanager
def in_flight(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[InFlight]:
    seen = InFlight()
    app_type = type(server.app)
    handle = app_type.__call__

    def counted(self: object, environ: dict, start_response: object) -> object:
        with seen.lock:
            seen.now += 1
            seen.most = max(seen.most, seen.now)
        try:
            return list(handle(self, environ, start_response))  # the body, delays included
        finally:
            with seen.lock:
                seen.now -= 1

    with monkeypatch.context() as patch:
        patch.setattr(app_type, "__call__", counted)
        yield seen


def test_last_updated_is_compared_in_utc() -> None:
    assert normalize_last_updated("2024-12-19 07:55:01-06") == "2024-12-19T13:55:01+00:00"
    assert normalize_last_updated("2024-12-19 08:55:01-05") == "2024-12-19T13:55:01+00:00"
    assert normalize_last_updated(None) is None


def test_a_series_without_last_updated_always_counts_as_changed() -> None:
    day, now = dt.date(2024, 6, 14), dt.datetime(2024, 6, 14, tzinfo=dt.UTC)
    stamp = "2024-06-14T12:55:01+00:00"
    assert SyncMark("GDP", stamp, day, now).unchanged(stamp)
    assert not SyncMark("GDP", stamp, day, now).unchanged("2024-06-15T12:55:01+00:00")
    assert not SyncMark("GDP", None, day, now).unchanged(None)
