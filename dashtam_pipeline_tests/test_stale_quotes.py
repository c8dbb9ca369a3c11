"""Graceful degradation: when every quote provider is down, the last good values are
served for the day with ``is_stale = true`` and the asset's ``not_stale`` check warns;
when a provider is back, re-running the day replaces the stale rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashtam_pipeline.runner import MaterializeReport
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline_tests.loopback import configured_sandbox, materialize, query

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: the last session differs where there is none
#: today
pytestmark = [pytest.mark.integration, pytest.mark.dates(at=("weekend", "holiday"))]

#: The sandbox's "now": Wednesday 2026-11-18, so its quotes are Tuesday's close.
NOW = dt.datetime(2026, 11, 18, 15, 0, tzinfo=dt.UTC)


@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch, app=SandboxApp(clock=lambda: NOW)) as running:
        monkeypatch.setenv("DASHTAM_SYMBOLS", "AAPL,MSFT")
        yield running


def materialize_quotes(partition: str) -> MaterializeReport:
    return materialize("key:market/quotes", partition=partition)


def quotes() -> list[tuple]:
    return query(
        "select symbol, quote_date, price, provider, is_stale from market.quotes "
        "order by quote_date, symbol"
    )


def test_outage_serves_last_good_values_marked_stale(server: SandboxServer) -> None:
    assert materialize_quotes("2026-11-17").ok
    good = quotes()
    assert [(r[0], r[1], r[4]) for r in good] == [
        ("AAPL", dt.date(2026, 11, 17), False), ("MSFT", dt.date(2026, 11, 17), False)]

    server.app.add_fault(r"^/(fmp|polygon)/", status=503)
    report = materialize_quotes("2026-11-18")
    assert report.ok, report.assets["market/quotes"]
    assert report.assets["market/quotes"].detail == "served by stale"
    assert "market/quotes:not_stale" in report.warned_checks
    stale = [r for r in quotes() if r[1] == dt.date(2026, 11, 18)]
    assert [(r[0], r[4]) for r in stale] == [("AAPL", True), ("MSFT", True)]
    assert [r[2] for r in stale] == [r[2] for r in good]  # the last good prices
    assert {r[3] for r in stale} == {"fmp"}  # who served the value originally
    assert [r for r in quotes() if r[1] == dt.date(2026, 11, 17)] == good  # untouched


def test_outage_with_no_history_fails_by_name(server: SandboxServer) -> None:
    server.app.add_fault(r"^/(fmp|polygon)/", status=503)
    report = materialize_quotes("2026-11-18")
    assert not report.ok
    assert "no provider could serve market.quotes" in report.assets["market/quotes"].detail


def test_outage_on_a_day_that_already_has_good_rows_keeps_them_and_warns(
    server: SandboxServer,
) -> None:
    """Re-running a good day while every quote provider is down once failed the run and
    served nothing (every symbol had its good row, so there was nothing stale to serve):
    now the day's good rows are kept untouched, never marked stale, and the run succeeds
    with the ``not_stale`` check warning that the providers failed."""
    assert materialize_quotes("2026-11-17").ok
    good = quotes()
    assert [r[4] for r in good] == [False, False]

    server.app.add_fault(r"^/(fmp|polygon)/", status=503)
    report = materialize_quotes("2026-11-17")
    outcome = report.assets["market/quotes"]
    assert report.ok, outcome
    assert outcome.detail == "served by kept"
    assert "market/quotes:not_stale" in report.warned_checks
    assert quotes() == good  # no rewrite, nothing marked stale

    # a new day in the same outage still gets its stale rows; the kept day is untouched
    assert materialize_quotes("2026-11-18").ok
    assert [(r[0], r[4]) for r in quotes() if r[1] == dt.date(2026, 11, 18)] == [
        ("AAPL", True), ("MSFT", True)]
    assert [r for r in quotes() if r[1] == dt.date(2026, 11, 17)] == good
