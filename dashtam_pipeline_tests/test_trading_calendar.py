"""The exchange calendar: weekends and NYSE holidays have no session, whatever the year."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dashtam_pipeline.demo import market_day_note
from dashtam_pipeline.sandbox.common import last_completed_session
from dashtam_pipeline.trading_calendar import (
    is_trading_day,
    market_today,
    previous_trading_day,
    trading_day_on_or_before,
    why_no_session,
)

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

UTC = dt.UTC


@pytest.mark.parametrize(
    ("day", "trading", "reason"),
    [
        (dt.date(2026, 12, 4), True, None),  # a Friday
        (dt.date(2026, 12, 5), False, "Saturday"),
        (dt.date(2026, 11, 26), False, "Thanksgiving Day"),
        (dt.date(2026, 11, 27), True, None),  # the half day after Thanksgiving trades
        (dt.date(2027, 1, 1), False, "New Year's Day"),
        (dt.date(2026, 4, 3), False, "Good Friday"),
        (dt.date(2025, 1, 9), False, "Jimmy Carter"),
        (dt.date(2031, 7, 4), False, "Independence Day"),  # years ahead: rules, not a list
    ],
)
def test_sessions_and_why_there_is_none(day: dt.date, trading: bool, reason: str | None) -> None:
    assert is_trading_day(day) is trading
    closed = why_no_session(day)
    assert (closed is None) is trading
    if reason is not None:
        assert closed is not None and reason in closed


def test_previous_trading_day_steps_over_weekends_and_holidays() -> None:
    assert previous_trading_day(dt.date(2026, 11, 27)) == dt.date(2026, 11, 25)  # Thanksgiving
    assert previous_trading_day(dt.date(2026, 12, 7)) == dt.date(2026, 12, 4)  # a Monday
    assert previous_trading_day(dt.date(2027, 1, 4)) == dt.date(2026, 12, 31)  # New Year
    assert trading_day_on_or_before(dt.date(2026, 12, 6)) == dt.date(2026, 12, 4)
    assert trading_day_on_or_before(dt.date(2026, 12, 4)) == dt.date(2026, 12, 4)


def test_the_market_day_follows_new_york_not_utc() -> None:
    # 22:30 on 31 December in New York is already 1 January in UTC
    moment = dt.datetime(2027, 1, 1, 3, 30, tzinfo=UTC)
    assert market_today(moment) == dt.date(2026, 12, 31)
    assert last_completed_session(moment) == dt.date(2026, 12, 30)
    # just after New York's spring-forward (02:00 EST -> 03:00 EDT on 14 March 2027)
    assert market_today(dt.datetime(2027, 3, 14, 7, 30, tzinfo=UTC)) == dt.date(2027, 3, 14)


def test_the_demo_says_when_today_has_no_session() -> None:
    saturday = dt.datetime(2026, 12, 5, 15, tzinfo=UTC)
    assert market_day_note(saturday) == (
        "no trading session today (2026-12-05, Saturday); market data for the last "
        "completed session, Friday 2026-12-04"
    )
    thanksgiving = dt.datetime(2026, 11, 26, 19, tzinfo=UTC)
    assert "Thanksgiving Day" in market_day_note(thanksgiving)
    assert market_day_note(dt.datetime(2026, 12, 2, 15, tzinfo=UTC)) == (
        "market data for the last completed session, Tuesday 2026-12-01"
    )


def test_daily_partitions_are_trading_days_from_the_history_start(data_dir: Path) -> None:
    from dashtam_pipeline.assets.partitions import trading_day_partitions
    from dashtam_pipeline.settings import load_settings

    partitions = trading_day_partitions(load_settings(dashtam_history_start="2026-11-20"))
    # 02:00 New York on Saturday 2026-11-28: Thanksgiving (Thursday) and the weekend are
    # not partitions, Friday's session (its window runs to Monday) already is
    saturday_night = dt.datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    assert partitions.get_partition_keys(current_time=saturday_night) == [
        "2026-11-20", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27",
    ]
    years = dt.datetime(2031, 1, 2, 12, 0, tzinfo=UTC)
    keys = partitions.get_partition_keys(current_time=years)
    assert all(is_trading_day(dt.date.fromisoformat(key)) for key in keys)
    assert "2030-12-25" not in keys and "2030-12-24" in keys


def test_the_nightly_run_asks_for_a_partition_that_exists(data_dir: Path) -> None:
    from dashtam_pipeline.assets.partitions import trading_day_partitions
    from dashtam_pipeline.jobs import nightly_run_request
    from dashtam_pipeline.registry import Partitioning
    from dashtam_pipeline.settings import load_settings

    partitions = trading_day_partitions(load_settings())
    start = dt.datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 02:00 New York, every night
    for night in (start + dt.timedelta(days=n) for n in range(14)):
        request = nightly_run_request(Partitioning.TRADING_DAY, night, ())
        assert request is not None
        assert request.partition_key in partitions.get_partition_keys(current_time=night), night
