"""``dashtam demo`` on whatever day it is run: a weekend or an exchange holiday has no new
session, so the demo says which session it takes and why, lands that session's quotes and
bars, and exits 0. ``make test`` runs this at each frozen instant of ``at_date`` (a
weekend, Thanksgiving, the day after it, a year end, a DST jump, a date years ahead)."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from dashtam_pipeline.demo import market_day_note
from dashtam_pipeline.trading_calendar import last_completed_session
from dashtam_pipeline_tests.test_cli import dashtam, env, no_traceback, query_row  # noqa: F401
from dashtam_pipeline_tests.ui_helpers import UI_ENV

pytestmark = [
    pytest.mark.e2e,
    # at the instants where the session it lands is not today's, and where New York's
    # date is not UTC's (a full demo costs minutes at each)
    pytest.mark.dates(at=("weekend", "holiday", "year_end")),
    # at today's date test_cli's demo-twice test covers the demo; this one is for the
    # frozen instants of ``at_date``, which set DASHTAM_TEST_AT
    pytest.mark.skipif(not os.environ.get("DASHTAM_TEST_AT"),
                       reason="runs at the frozen instants of `make test-dates`"),
]


def test_the_demo_lands_the_last_completed_session_on_any_date(env: dict[str, str]) -> None:  # noqa: F811
    # the UI tests' few series and symbols: the dates are the point here, not the volume
    env = {**env, **UI_ENV}
    before = dt.datetime.now(dt.UTC)
    result = dashtam("demo", env=env, timeout=900)
    after = dt.datetime.now(dt.UTC)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    no_traceback(result)
    assert "DEBUG" not in result.stdout + result.stderr
    # the note names the session (and, on a day without one, why): the one of the
    # moment the demo started, unless New York's midnight passed while it ran
    notes = {f"demo: {market_day_note(moment)}" for moment in (before, after)}
    assert notes & set(result.stdout.splitlines()), (notes, result.stdout[:2000])

    sessions = {last_completed_session(moment).isoformat() for moment in (before, after)}
    row = query_row(
        "select (select count(*) from market.quotes) q, (select count(*) from market.daily_bars) b,"
        " (select max(quote_date)::varchar from market.quotes) quoted,"
        " (select max(date)::varchar from market.daily_bars) barred", env)
    assert row["q"] > 0 and row["b"] > 0, row
    assert row["quoted"] in sessions and row["barred"] in sessions, (row, sessions)
