"""Chaos over real loopback HTTP: the served sandbox misbehaves (503 bursts, 429 with
Retry-After, answers slower than the client timeout, dropped connections, malformed JSON,
errors sent with HTTP 200, a provider down for a whole run) while the pipeline runs as in
production. Each test checks what a user sees: whether the run succeeded and from which
provider the rows came, how many requests the provider really received (retries and the
circuit breaker), the dead-letter entries, that the other providers' tables landed, that a
replay fills a gap exactly once, and that no key leaked to disk or to the output."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey

from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.resilience.dlq import PENDING, REPLAYED, DeadLetter, DeadLetterQueue
from dashtam_pipeline.resilience.replay import replay
from dashtam_pipeline.runner import MaterializeReport
from dashtam_pipeline.sandbox.common import last_completed_session, previous_weekday, system_clock
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore
from dashtam_pipeline_tests.loopback import (
    KEYS,
    configured_sandbox,
    connect_schwab_like_a_user,
    materialize,
    query,
)

pytestmark = pytest.mark.integration

MARKET = "key:market/quotes or key:market/daily_bars"
#: The contract's default: three consecutive failed attempts open a provider's breaker.
THRESHOLD = 3
#: Breaker timeout for tests that wait for the half-open probe before replaying.
PROBE_AFTER_SECONDS = 1.0

QUOTE_ROUTE = r"^/fmp/stable/quote$"
FRED_OBSERVATIONS_ROUTE = r"^/fred/fred/series/observations$"
FMP_LIMIT_REACH = json.dumps({
    "Error Message": "Limit Reach . Please upgrade your plan or visit our documentation "
    "for more details at https://site.financialmodelingprep.com/"
})
NEWSAPI_RATE_LIMITED = json.dumps({
    "status": "error",
    "code": "rateLimited",
    "message": "You have been rate limited. Back off for a while before trying again.",
})

DUPLICATE_OBSERVATIONS = (
    "select count(*) from (select series_id, date, realtime_start, count(*) c "
    "from macro.fred_observations group by all having c > 1)"
)
DUPLICATE_SERIES = (
    "select count(*) from (select series_id, count(*) c from macro.fred_series "
    "group by all having c > 1)"
)
DUPLICATE_ARTICLES = (
    "select count(*) from (select article_id, symbol, count(*) c from news.articles "
    "group by all having c > 1)"
)


@pytest.fixture
def day() -> str:
    """The sandbox's latest completed session at the test's own clock: the day its quotes,
    bars and news are for (whatever the date the suite runs on)."""
    return last_completed_session(system_clock()).isoformat()


@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        yield running
        running.app.clear_faults()  # wake any delayed handler before the server stops


# -- helpers -------------------------------------------------------------------------------
def assert_no_secret_leaked(data_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No provider key in any file under DASHTAM_DATA_DIR (lake, warehouse, the Dagster
    instance's sqlite files, the state db) nor in anything the test printed."""
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, "nothing was written under DASHTAM_DATA_DIR"
    stored = {p: p.read_bytes() for p in files}
    printed = "".join(capfd.readouterr())
    for name, value in KEYS.items():
        leaks = [str(p.relative_to(data_dir)) for p, data in stored.items()
                 if value.encode() in data]
        assert not leaks, f"{name} stored in clear in {leaks}"
        assert value not in printed, f"{name} printed"


def statuses(report: MaterializeReport) -> dict[str, str]:
    return {key: entry.status for key, entry in report.assets.items()}


def dead_letters(status: str | None = None) -> list[DeadLetter]:
    return DeadLetterQueue.from_settings(load_settings()).list(status=status)


def state(sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    return StateStore(load_settings().state_url).query(sql, params)


def audited_outcomes(provider: str) -> list[str]:
    """Every attempt the audit trail recorded for ``provider``, in order."""
    return [r[0] for r in state(
        "SELECT outcome FROM call_audit WHERE provider = ? ORDER BY id", (provider,))]


def breaker(provider: str) -> tuple[str, int]:
    (row,) = state(
        "SELECT state, consecutive_failures FROM circuit_breakers WHERE provider = ?",
        (provider,),
    )
    return str(row[0]), int(row[1])


def fallback_outcomes(asset: str) -> list[dict[str, str]]:
    """The fallback chain recorded on the asset's latest materialization."""
    with get_instance(load_settings()) as instance:
        event = instance.get_latest_materialization_event(AssetKey.from_user_string(asset))
    assert event is not None and event.asset_materialization is not None
    return [
        {"provider": a["provider"], "outcome": a["outcome"]}
        for a in event.asset_materialization.metadata["fallback"].value
    ]


def providers_of(table: str) -> list[str]:
    return sorted(r[0] for r in query(f"select distinct provider from {table}"))


def wait_for_probe() -> None:
    """Let the breaker's (lowered) timeout pass, so its half-open probe may go out."""
    time.sleep(PROBE_AFTER_SECONDS + 0.2)


def assert_polygon_served_market_after_fmp_breaker(
    server: SandboxServer, report: MaterializeReport, fmp_failure: str, day: str
) -> None:
    """FMP's breaker opened after its first call's retries; Polygon served both assets."""
    assert report.ok, {k: (a.status, a.detail) for k, a in report.assets.items()}
    assert report.assets["market/quotes"].detail == "served by polygon"
    assert report.assets["market/daily_bars"].detail == "served by polygon"
    assert providers_of("market.quotes") == ["polygon"]
    assert providers_of("market.daily_bars") == ["polygon"]
    assert sorted(query(f"select symbol from market.daily_bars where date = DATE '{day}'")) == [
        ("AAPL",), ("BRK.B",)]
    assert sorted(query("select symbol from market.quotes")) == [("AAPL",), ("BRK.B",)]
    # FMP saw exactly the first call's attempts; after them its breaker refused the rest
    # (the other asset's FMP call included) without sending anything
    assert server.app.request_counts()["fmp"] == THRESHOLD
    assert audited_outcomes("fmp") == [fmp_failure] * THRESHOLD
    assert breaker("fmp")[0] == "open"
    first, second = sorted(
        (fallback_outcomes("market/quotes"), fallback_outcomes("market/daily_bars")),
        key=lambda chain: chain[0]["outcome"] == "circuit_open",
    )
    assert first == [{"provider": "fmp", "outcome": fmp_failure},
                     {"provider": "polygon", "outcome": "served"}]
    assert second == [{"provider": "fmp", "outcome": "circuit_open"},
                      {"provider": "polygon", "outcome": "served"}]
    assert dead_letters() == []  # the fallback served: nothing to replay


# -- the scenarios -------------------------------------------------------------------------
# quotes and bars of the session the clock says: differs where there is none today
@pytest.mark.dates(at=("weekend", "holiday"))
def test_a_burst_of_503s_is_absorbed_by_retries(
    server: SandboxServer, day: str, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    earlier = previous_weekday(dt.date.fromisoformat(day)).isoformat()
    assert materialize("key:market/quotes", partition=earlier).ok
    clean = server.app.request_counts()["fmp /stable/quote"]
    server.app.reset()

    server.app.add_fault(QUOTE_ROUTE, status=503, count=2)
    report = materialize("key:market/quotes", partition=day)

    assert report.ok, report.assets["market/quotes"]
    assert report.assets["market/quotes"].detail == "served by fmp"
    assert providers_of("market.quotes") == ["fmp"]
    assert sorted(query(
        f"select symbol from market.quotes where quote_date = DATE '{day}'")) == [
        ("AAPL",), ("BRK.B",)]
    counts = server.app.request_counts()
    assert counts["fmp /stable/quote"] == clean + 2  # exactly the two retried attempts
    assert counts.get("polygon", 0) == 0  # no fallback needed
    assert audited_outcomes("fmp").count("unavailable") == 2
    assert breaker("fmp") == ("closed", 0)  # the success closed the failure run
    assert dead_letters() == []
    assert_no_secret_leaked(data_dir, capfd)


def test_429_retry_after_is_honoured(
    server: SandboxServer, day: str, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # 2 s, not 1: the default first backoff is 1 s ± 25 %, so only a longer Retry-After
    # tells "honoured" apart from "ignored"
    retry_after = 2.0
    server.app.add_fault(
        QUOTE_ROUTE, status=429, headers={"Retry-After": f"{retry_after:g}"}, count=1
    )
    started = time.monotonic()
    report = materialize("key:market/quotes", partition=day)
    elapsed = time.monotonic() - started

    assert report.ok, report.assets["market/quotes"]
    assert providers_of("market.quotes") == ["fmp"]
    assert sorted(query("select symbol from market.quotes")) == [("AAPL",), ("BRK.B",)]
    assert server.app.request_counts().get("polygon", 0) == 0
    rows = state(
        "SELECT outcome, status_code, at FROM call_audit WHERE provider = 'fmp' ORDER BY id"
    )
    assert [(r[0], r[1]) for r in rows[:2]] == [("rate_limited", 429), ("ok", 200)]
    waited = (dt.datetime.fromisoformat(rows[1][2]) - dt.datetime.fromisoformat(rows[0][2]))
    assert waited.total_seconds() >= retry_after  # the retry waited as the server asked
    assert elapsed >= retry_after
    assert dead_letters() == []
    assert_no_secret_leaked(data_dir, capfd)


def test_answers_slower_than_the_timeout_open_the_breaker_and_polygon_serves(
    server: SandboxServer,
    day: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FMP_TIMEOUT_SECONDS", "0.5")
    server.app.add_fault(r"^/fmp/", delay_seconds=2)
    report = materialize(MARKET, partition=day)
    assert_polygon_served_market_after_fmp_breaker(server, report, "unavailable", day)
    assert_no_secret_leaked(data_dir, capfd)


# quotes and bars of the session the clock says: differs where there is none today
@pytest.mark.dates(at=("weekend", "holiday"))
def test_dropped_connections_open_the_breaker_and_polygon_serves(
    server: SandboxServer, day: str, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    server.app.add_fault(r"^/fmp/", reset_connection=True)
    report = materialize(MARKET, partition=day)
    assert_polygon_served_market_after_fmp_breaker(server, report, "unavailable", day)
    assert_no_secret_leaked(data_dir, capfd)


def test_malformed_json_fails_that_series_by_name_and_replay_fills_it(
    server: SandboxServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FRED_CIRCUIT_BREAKER_TIMEOUT", str(PROBE_AFTER_SECONDS))
    observations = "key:macro/fred_observations"
    # UNRATE lands first: GDP's three garbled answers open FRED's breaker (malformed counts
    # as a failure), which would refuse any FRED call until its timeout. One run over both
    # series would fail both partitions (a FRED fetch is all-or-nothing; each partition
    # gets its dead letter), so the per-partition runs are what isolate the bad series.
    assert materialize(observations, partition="UNRATE").ok
    unrate = query("select count(*) from macro.fred_observations where series_id = 'UNRATE'")
    assert unrate[0][0] > 0

    server.app.add_fault(FRED_OBSERVATIONS_ROUTE, status=200, body="{not json")
    before = server.app.request_counts()["fred /fred/series/observations"]
    report = materialize(observations, partition="GDP")

    assert not report.ok
    failed = report.assets["macro/fred_observations"]
    assert failed.status == "failed"
    assert "no provider could serve macro.fred_observations" in failed.detail
    assert "malformed" in failed.detail and "not JSON" in failed.detail
    # retried (a garbled body may be a hiccup), then given up: FRED has no fallback
    assert server.app.request_counts()["fred /fred/series/observations"] - before == THRESHOLD
    (letter,) = dead_letters()
    assert (letter.asset_key, letter.partition_key, letter.provider, letter.error_kind) == (
        "macro/fred_observations", "GDP", "fred", "malformed")
    assert letter.status == PENDING
    assert query("select count(*) from macro.fred_observations where series_id = 'GDP'") == [
        (0,)]
    # the failed series did not touch the one that landed
    assert query(
        "select count(*) from macro.fred_observations where series_id = 'UNRATE'") == unrate

    server.app.clear_faults()
    wait_for_probe()
    replayed = replay(load_settings(), in_process=True)
    assert replayed.ok, [o.detail for o in replayed.outcomes]
    assert [(o.entry.id, o.entry.status) for o in replayed.outcomes] == [(letter.id, REPLAYED)]
    assert query(
        "select count(*) from macro.fred_observations where series_id = 'GDP'")[0][0] > 0
    assert query(
        "select count(*) from macro.fred_observations where series_id = 'UNRATE'") == unrate
    assert query(DUPLICATE_OBSERVATIONS) == [(0,)]
    assert_no_secret_leaked(data_dir, capfd)


def test_errors_sent_with_http_200_are_classified_like_their_http_twins(
    server: SandboxServer,
    day: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NEWS_CIRCUIT_BREAKER_TIMEOUT", str(PROBE_AFTER_SECONDS))
    server.app.add_fault(r"^/fmp/", status=200, body=FMP_LIMIT_REACH)
    server.app.add_fault(r"^/newsapi/", status=200, body=NEWSAPI_RATE_LIMITED)
    report = materialize(f"{MARKET} or key:news/articles", partition=day)

    # FMP's "Limit Reach" is a rate limit: retried, then its breaker opened and Polygon
    # served quotes and bars
    assert statuses(report) == {
        "market/quotes": "materialized", "market/daily_bars": "materialized",
        "news/articles": "failed"}
    assert providers_of("market.quotes") == ["polygon"]
    assert providers_of("market.daily_bars") == ["polygon"]
    counts = server.app.request_counts()
    assert counts["fmp"] == THRESHOLD
    assert audited_outcomes("fmp") == ["rate_limited"] * THRESHOLD
    # NewsAPI's rateLimited is a rate limit too: retried, and with no other news
    # provider the asset fails by name and waits in the dead-letter queue
    news = report.assets["news/articles"]
    assert "no provider could serve news.articles" in news.detail
    assert "rate_limited" in news.detail
    assert counts["newsapi"] == THRESHOLD
    assert audited_outcomes("newsapi") == ["rate_limited"] * THRESHOLD
    (letter,) = dead_letters()
    assert (letter.asset_key, letter.partition_key, letter.provider, letter.error_kind) == (
        "news/articles", day, "newsapi", "rate_limited")

    server.app.clear_faults()
    wait_for_probe()
    replayed = replay(load_settings(), in_process=True)
    assert replayed.ok, [o.detail for o in replayed.outcomes]
    assert [(o.entry.id, o.entry.status) for o in replayed.outcomes] == [(letter.id, REPLAYED)]
    queries = sorted(r[0] for r in query("select distinct query from news.articles"))
    assert queries == ["AAPL", "inflation"]
    assert query(DUPLICATE_ARTICLES) == [(0,)]
    assert_no_secret_leaked(data_dir, capfd)


def test_fred_down_for_the_whole_run_the_rest_lands_and_replay_fills_the_gap(
    server: SandboxServer,
    day: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FRED_CIRCUIT_BREAKER_TIMEOUT", str(PROBE_AFTER_SECONDS))
    connect_schwab_like_a_user()
    server.app.add_fault(r"^/fred/", status=503)

    macro = materialize("group:macro")
    rest = materialize(f"{MARKET} or group:news", partition=day)
    brokerage = materialize("group:brokerage")  # every connection (and inbox file)

    # FRED's assets (one step: one /series request serves both) fail by name ...
    assert statuses(macro) == {"macro/fred_series": "failed", "macro/fred_observations": "failed"}
    for key in ("fred_series", "fred_observations"):
        assert "no provider could serve macro.fred_observations" in macro.assets[
            f"macro/{key}"
        ].detail
    # ... while every other provider's tables land
    for report in (rest, brokerage):
        assert report.ok, {k: (a.status, a.detail) for k, a in report.assets.items()}
    assert providers_of("market.quotes") == ["fmp"]
    assert providers_of("market.daily_bars") == ["fmp"]
    assert query("select count(*) > 0 from news.articles") == [(True,)]
    for table in ("brokerage.accounts", "brokerage.positions", "brokerage.transactions"):
        assert providers_of(table) == ["alpaca", "schwab"], table
    # FRED's breaker opened after the first failed attempts and refused the rest: the
    # series are fetched concurrently, so attempts already in flight when it opened may
    # still arrive (at most one per other series fetched at once)
    series_in_flight = 2
    assert THRESHOLD <= server.app.request_counts()["fred"] <= THRESHOLD + series_in_flight - 1
    pending = dead_letters(status=PENDING)
    assert sorted((e.asset_key, e.partition_key) for e in pending) == [
        ("macro/fred_observations", "GDP"), ("macro/fred_observations", "UNRATE"),
        ("macro/fred_series", "GDP"), ("macro/fred_series", "UNRATE")]
    assert {e.provider for e in pending} == {"fred"}
    assert {e.error_kind for e in pending} <= {"unavailable", "circuit_open"}
    assert dead_letters() == pending  # nothing else failed

    # FRED is back; once the breaker's timeout has passed its probe goes out and the
    # replay fills every failed partition, exactly once
    server.app.clear_faults()
    wait_for_probe()
    replayed = replay(load_settings(), in_process=True)
    assert replayed.ok, [o.detail for o in replayed.outcomes]
    assert sorted(o.entry.id for o in replayed.outcomes) == sorted(e.id for e in pending)
    assert {o.entry.status for o in replayed.outcomes} == {REPLAYED}
    assert dead_letters(status=PENDING) == []
    assert sorted(query("select series_id from macro.fred_series")) == [("GDP",), ("UNRATE",)]
    assert sorted(query("select distinct series_id from macro.fred_observations")) == [
        ("GDP",), ("UNRATE",)]
    assert query(DUPLICATE_SERIES) == [(0,)]
    assert query(DUPLICATE_OBSERVATIONS) == [(0,)]
    assert breaker("fred") == ("closed", 0)
    assert replay(load_settings(), in_process=True).outcomes == []  # nothing left
    assert_no_secret_leaked(data_dir, capfd)
