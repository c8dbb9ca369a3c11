"""The nightly FRED check by what changed (``/series/updates``) and the request budget.

Pins, against the loopback sandbox: the sandbox's ``/series/updates`` as FRED documents
it (paging, time span, filter, the two-week reach), the client's use of it (one page for
a thousand configured series, only the named series re-pulled, no ``/series`` for them),
the since-time bookkeeping in ``fred_sync``, the fallbacks to per-series ``/series``, and
the per-series request budget against what the client actually sends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.fred_sync import FredSync
from dashtam_pipeline.ingest import IngestionOutcome, ingest_dataset
from dashtam_pipeline.providers.fred import client as fred_module
from dashtam_pipeline.providers.fred.client import (
    FredClient,
    join_overlapping_windows,
    plan_windows,
    request_budget,
)
from dashtam_pipeline.registry import Dataset, ProviderSlug, get_dataset_spec, providers_serving
from dashtam_pipeline.resilience.hooks import resilience_hooks
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.common import CHICAGO
from dashtam_pipeline.sandbox.fred_data import MISSING, benchmark_series_ids, series_spec
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import state_store
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline_tests.client_helpers import NO_WAIT
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.loopback import configured_sandbox

#: the frozen instants (``at_date``) it runs at: FRED's "today" (Chicago) differs from UTC's at
#: a year end; its two-week window far from the sandbox's recorded history
pytestmark = pytest.mark.dates(at=("year_end", "years_ahead"))

SPEC = get_dataset_spec(Dataset.FRED_OBSERVATIONS)
UPDATES = "fred /fred/series/updates"
SERIES = "fred /fred/series"
OBSERVATIONS = "fred /fred/series/observations"
#: 12 ids: every frequency (3 daily, 2 weekly, 6 monthly... see benchmark_series_ids)
IDS = tuple(benchmark_series_ids(12))
START = dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch, SandboxApp(clock=clock)) as running:
        yield running


def make_client(clock: FakeClock) -> FredClient:
    """The production client, its sync store on the same clock as the sandbox (FRED's
    clock and ours agree, as they do within minutes in production)."""
    settings = load_settings()
    return FredClient(
        settings.provider(ProviderSlug.FRED), retry=NO_WAIT,
        hooks=resilience_hooks(settings, ProviderSlug.FRED),
        sync=FredSync(state_store(settings), clock=clock),
    )


def pull(clock: FakeClock, ids: tuple[str, ...] = IDS) -> IngestionOutcome:
    settings = load_settings()
    return ingest_dataset(
        SPEC, providers_serving(Dataset.FRED_OBSERVATIONS), FetchRequest(series_ids=ids),
        settings, Lake(settings.lake_dir), client_factory=lambda _slug, _s: make_client(clock),
        companions=[get_dataset_spec(Dataset.FRED_SERIES)],
    )


def counts(server: SandboxServer) -> dict[str, int]:
    return {k: v for k, v in server.app.request_counts().items() if k.startswith("fred ")}


def lake_rows() -> set[tuple[object, ...]]:
    frame = Lake(load_settings().lake_dir).read_frame(SPEC.table)
    return {
        (s, d, a, b, None if pd.isna(v) else round(float(v), 6))
        for s, d, a, b, v in frame[
            ["series_id", "date", "realtime_start", "realtime_end", "value"]
        ].itertuples(index=False)
    }


def sandbox_rows(app: SandboxApp, ids: tuple[str, ...], today: dt.date) -> set[tuple[object, ...]]:
    out = set()
    for sid in ids:
        spec = series_spec(sid)
        assert spec is not None
        for v in app.world.fred.vintages(spec, today):
            out.add((sid, v.date, v.start, v.end,
                     None if v.value == MISSING else round(float(v.value), 6)))
    return out


def fred_today(clock: FakeClock) -> dt.date:
    return clock.now.astimezone(CHICAGO).date()


def get_updates(server: SandboxServer, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/fred/fred/series/updates",
                     params={"api_key": "k", "file_type": "json", **params})


# -- the sandbox endpoint ------------------------------------------------------------------
def test_sandbox_updates_page_newest_first_within_the_time_span(
    server: SandboxServer, clock: FakeClock
) -> None:
    for sid in IDS:  # the catalogue lists clones once they exist
        server.app.world.fred.vintages(series_spec(sid), fred_today(clock))  # type: ignore[arg-type]
    revised = clock.now + dt.timedelta(hours=1)
    for sid in IDS[:5]:
        server.app.world.fred.revise(sid, revised)
    clock.advance(hours=2)
    span = {"start_time": f"{revised.astimezone(CHICAGO):%Y%m%d%H%M}",
            "end_time": f"{clock.now.astimezone(CHICAGO):%Y%m%d%H%M}"}

    first = get_updates(server, limit="2", **span).json()
    second = get_updates(server, limit="2", offset="2", **span).json()
    third = get_updates(server, limit="2", offset="4", **span).json()

    assert first["count"] == 5 and first["order_by"] == "last_updated"
    assert first["sort_order"] == "desc" and first["filter_variable"] == "geography"
    listed = [item["id"] for page in (first, second, third) for item in page["seriess"]]
    assert sorted(listed) == sorted(IDS[:5])
    assert all("notes" not in item for item in first["seriess"])
    assert {"id", "frequency", "observation_start", "last_updated", "title"} <= set(
        first["seriess"][0])
    # realtime_start/end do not change which series are listed
    again = get_updates(server, limit="2", realtime_start="2026-11-01",
                        realtime_end="2026-11-20", **span).json()
    assert [i["id"] for i in again["seriess"]] == [i["id"] for i in first["seriess"]]
    # national series only: the regional filter lists none
    assert get_updates(server, filter_value="regional", **span).json()["count"] == 0
    # FRED's parameter rules
    assert get_updates(server, start_time="2026-11-20").status_code == 400
    assert get_updates(server, start_time=span["start_time"]).status_code == 400
    assert get_updates(server, limit="1001").status_code == 400


def test_sandbox_updates_reach_back_about_two_weeks_only(
    server: SandboxServer, clock: FakeClock
) -> None:
    clock.advance(days=15)
    body = get_updates(server, start_time="202601010000", end_time="209901010000").json()
    listed = {item["id"] for item in body["seriess"]}
    assert "DGS10" in listed  # daily: updated today
    oldest = clock.now - dt.timedelta(days=14)
    for item in body["seriess"]:
        assert dt.datetime.strptime(item["last_updated"] + "00", "%Y-%m-%d %H:%M:%S%z") >= oldest
    # a series last updated earlier is not listed, whatever start_time says
    assert listed < set(server.app.world.fred.known_ids())


# -- the client's nightly check ----------------------------------------------------------------
def test_nightly_pulls_only_what_updates_names_with_one_page(
    server: SandboxServer, clock: FakeClock
) -> None:
    pull(clock)
    marks_before = FredSync(state_store(load_settings())).marks()
    server.app.reset()
    clock.advance(hours=2)  # same FRED day: no scheduled release in between
    changed = (IDS[0], IDS[1], IDS[3])  # quarterly, daily, monthly
    for sid in changed:
        server.app.world.fred.revise(sid, clock.now)
    clock.advance(minutes=30)

    outcome = pull(clock)

    # 1 updates page + GDP 1 + DGS10 2 windows + CPIAUCSL 1; no /series at all
    assert counts(server) == {UPDATES: 1, OBSERVATIONS: 4}
    assert lake_rows() == sandbox_rows(server.app, IDS, fred_today(clock))
    assert any("3 of 12 configured series changed" in n for n in outcome.notes)
    metadata = outcome.companions[Dataset.FRED_SERIES]
    frame = Lake(load_settings().lake_dir).read_frame(
        get_dataset_spec(Dataset.FRED_SERIES).table)
    gdp = frame.set_index("series_id").loc["GDP"]
    assert isinstance(gdp["notes"], str) and "BEA Account Code" in gdp["notes"]  # kept
    assert metadata.write is not None
    marks = FredSync(state_store(load_settings())).marks()
    for sid in IDS:  # the since-time moved to FRED's day of this check
        assert marks[sid].realtime_start_synced == fred_today(clock)
    for sid in changed:
        assert marks[sid].last_updated != marks_before[sid].last_updated
    for sid in set(IDS) - set(changed):
        assert marks[sid].last_updated == marks_before[sid].last_updated

    server.app.reset()
    pull(clock)  # nothing changed since: one page, nothing else
    assert counts(server) == {UPDATES: 1}


def test_updates_are_paged_with_limit_and_offset(
    server: SandboxServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull(clock)
    server.app.reset()
    for sid in IDS[3:9]:  # six monthly/weekly series
        server.app.world.fred.revise(sid, clock.now + dt.timedelta(minutes=5))
    clock.advance(hours=1)
    monkeypatch.setattr(fred_module, "UPDATES_PAGE", 2)
    client = make_client(clock)
    try:
        check = client.check_updates(IDS)
    finally:
        client.close()
    assert check is not None and check.covered == set(IDS)
    assert set(check.changed) == set(IDS[3:9])
    # since 00:00 Central of the last check's day: the six, plus what was updated that
    # day before the last check (re-listed, proved unchanged by their last_updated)
    listed = get_updates(server, start_time=f"{fred_today(clock):%Y%m%d}0000",
                         end_time="209901010000").json()["count"]
    assert listed > 6
    assert counts(server) == {UPDATES: -(-listed // 2) + 1}


def test_few_pages_left_over_few_series_fall_back_to_per_series(
    server: SandboxServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = IDS[:4]
    pull(clock, ids)
    server.app.reset()
    for sid in IDS:  # twelve updated, four of them configured
        server.app.world.fred.revise(sid, clock.now + dt.timedelta(minutes=5))
    clock.advance(hours=1)
    monkeypatch.setattr(fred_module, "UPDATES_PAGE", 2)

    pull(clock, ids)

    requests = counts(server)
    # page 1 named two series; five pages left outnumber the two not yet named
    assert requests[UPDATES] == 1
    assert requests[SERIES] == 4 - len(_first_page_named(server, clock, ids))
    assert lake_rows() == sandbox_rows(server.app, ids, fred_today(clock))


def _first_page_named(server: SandboxServer, clock: FakeClock, ids: tuple[str, ...]) -> set[str]:
    body = get_updates(server, limit="2", start_time="202611200000",
                       end_time=f"{clock.now.astimezone(CHICAGO):%Y%m%d%H%M}").json()
    return {item["id"] for item in body["seriess"]} & set(ids)


def test_a_last_check_beyond_two_weeks_checks_each_series(
    server: SandboxServer, clock: FakeClock
) -> None:
    ids = IDS[:4]
    pull(clock, ids)
    server.app.reset()
    clock.advance(days=20)

    outcome = pull(clock, ids)

    assert UPDATES not in counts(server) and counts(server)[SERIES] == 4
    assert any("beyond the ~2 weeks" in n for n in outcome.notes)
    assert lake_rows() == sandbox_rows(server.app, ids, fred_today(clock))


def test_one_configured_series_is_checked_with_series(
    server: SandboxServer, clock: FakeClock
) -> None:
    pull(clock, ("GDP",))
    server.app.reset()
    pull(clock, ("GDP",))
    assert counts(server) == {SERIES: 1}


def test_a_check_whose_rows_never_landed_does_not_move_the_since_time(
    server: SandboxServer, clock: FakeClock
) -> None:
    pull(clock)
    before = FredSync(state_store(load_settings())).marks()
    clock.advance(days=3)
    client = make_client(clock)
    try:
        client.fetch_fred_observations(FetchRequest(series_ids=IDS))  # never landed
    finally:
        client.close()
    assert FredSync(state_store(load_settings())).marks() == before


# -- the request budget ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frequency", "start", "today", "expected"),
    [
        ("Quarterly", dt.date(1947, 1, 1), dt.date(2026, 11, 20), (1, 0, 1)),
        ("Monthly", dt.date(1948, 1, 1), dt.date(2026, 11, 20), (1, 0, 1)),
        ("Weekly, Ending Saturday", dt.date(2000, 1, 1), dt.date(2026, 11, 20), (1, 0, 1)),
        # 59 years weekly: ~3,080 vintage dates in ~15,400 weekdays: ask them, 2 windows
        ("Weekly, Ending Saturday", dt.date(1967, 1, 7), dt.date(2026, 11, 20), (1, 1, 2)),
        ("Daily", dt.date(2024, 1, 2), dt.date(2026, 11, 20), (1, 0, 1)),  # < 2,000 weekdays
        ("Daily", dt.date(2018, 1, 2), dt.date(2026, 11, 20), (1, 0, 2)),
        ("Daily", dt.date(1962, 1, 2), dt.date(2026, 11, 20), (1, 0, 9)),
    ],
)
def test_request_budget_per_frequency_and_size(
    frequency: str, start: dt.date, today: dt.date, expected: tuple[int, int, int]
) -> None:
    budget = request_budget(frequency, start, today)
    assert (budget.metadata, budget.vintage_dates, budget.observations) == expected
    assert budget.total == sum(expected)
    known = request_budget(frequency, start, today, metadata_known=True)
    assert known.total == sum(expected) - 1


def test_planned_windows_hold_at_most_2000_weekdays_each() -> None:
    plan = plan_windows("Daily", dt.date(1962, 1, 2), dt.date(2026, 11, 20))
    assert not plan.ask_vintage_dates and len(plan.windows) == 9
    for (_, end), (start, _) in zip(plan.windows, plan.windows[1:], strict=False):
        assert start == end  # windows share their edge day
    assert fred_module.weekday_count(dt.date(1962, 1, 2), plan.windows[0][1]) == 2000
    inner = plan.windows[1:-1]
    assert all(fred_module.weekday_count(a, b) == 2000 for a, b in inner)


def test_overlapping_windows_join_a_vintage_across_the_edge_whatever_its_value() -> None:
    """The case that touching windows get wrong: a vintage ending the day before the
    boundary and a new one with the same value starting on it stay two rows."""
    d = dt.date
    columns = ["series_id", "date", "realtime_start", "realtime_end", "value"]
    edge = d(2025, 9, 2)
    first = pd.DataFrame([
        ("X", d(2025, 8, 29), d(2025, 9, 1), d(2025, 9, 1), 1.36),   # truly ends 09-01
        ("X", d(2025, 8, 29), edge, edge, 1.36),                     # clipped at the edge
        ("X", d(2025, 8, 1), d(2025, 8, 4), edge, 2.0),              # spans the edge
    ], columns=columns)
    second = pd.DataFrame([
        ("X", d(2025, 8, 29), edge, d(9999, 12, 31), 1.36),
        ("X", d(2025, 8, 1), edge, d(2025, 9, 9), 2.0),
        ("X", d(2025, 8, 1), d(2025, 9, 10), d(9999, 12, 31), 2.5),
    ], columns=columns)
    joined = join_overlapping_windows([first, second], [edge])
    rows = set(joined[["date", "realtime_start", "realtime_end", "value"]].itertuples(
        index=False, name=None))
    assert rows == {
        (d(2025, 8, 29), d(2025, 9, 1), d(2025, 9, 1), 1.36),
        (d(2025, 8, 29), edge, d(9999, 12, 31), 1.36),
        (d(2025, 8, 1), d(2025, 8, 4), d(2025, 9, 9), 2.0),
        (d(2025, 8, 1), d(2025, 9, 10), d(9999, 12, 31), 2.5),
    }


def test_each_frequency_is_pulled_in_exactly_its_budget_the_minimum(
    server: SandboxServer, clock: FakeClock
) -> None:
    """One series of each frequency, each pulled alone: the requests sent equal
    ``request_budget`` from its metadata, which equals the minimum (1 + ceil(vintage
    dates / 2,000)) for the sandbox's histories."""
    today = fred_today(clock)
    for sid in ("GDP", "CPIAUCSL", "ICSA", "WALCL", "DGS10"):
        server.app.reset()
        client = make_client(clock)
        try:
            client.sync = None
            client.fetch_fred_observations(FetchRequest(series_ids=(sid,)))
        finally:
            client.close()
        spec = series_spec(sid)
        assert spec is not None
        vintages = server.app.world.fred.vintages(spec, today)
        budget = request_budget(spec.frequency, vintages[0].date, today)
        minimum = 1 + -(-len({v.start for v in vintages}) // 2000)
        sent = sum(counts(server).values())
        assert sent == budget.total == minimum, (sid, sent, budget, minimum)
