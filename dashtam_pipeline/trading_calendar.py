"""The exchange's calendar: which days are US equity trading days, on New York's clock.

Market data exists for trading days only: weekends and NYSE holidays (Thanksgiving, Good
Friday, ...) have no session, so no new quote, bar or close. The holidays come from the
``holidays`` package's NYSE calendar (maintained, rule-based, so any year works, decades
ahead included); this module is the one place the pipeline and the sandbox ask.

Every function takes the date or instant it reasons about: nothing here reads the clock
except ``market_today()`` without an argument.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

MARKET_TZ = ZoneInfo("America/New_York")


@lru_cache(maxsize=64)
def _nyse_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("NYSE", years=year))


def is_trading_day(day: dt.date) -> bool:
    """A weekday on which the NYSE is open (half days count: they have a close)."""
    return day.weekday() < 5 and day not in _nyse_holidays(day.year)


def weekday_closures(first_year: int, last_year: int) -> list[dt.date]:
    """Weekdays of ``first_year``..``last_year`` with no session (holidays and special
    closures), in order: what a weekday calendar must leave out to be a trading calendar."""
    return sorted(
        day
        for year in range(first_year, last_year + 1)
        for day in _nyse_holidays(year)
        if day.weekday() < 5
    )


def why_no_session(day: dt.date) -> str | None:
    """``None`` for a trading day, else the reason in words ("Saturday", "Thanksgiving
    Day"), for messages such as "no session on 2026-11-26 (Thanksgiving Day)"."""
    if day.weekday() >= 5:
        return day.strftime("%A")
    name = holidays.financial_holidays("NYSE", years=day.year).get(day)
    return str(name) if name else None


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def trading_day_on_or_before(day: dt.date) -> dt.date:
    """``day`` itself when it is a trading day, else the one before it."""
    return day if is_trading_day(day) else previous_trading_day(day)


def trading_day_on_or_after(day: dt.date) -> dt.date:
    """``day`` itself when it is a trading day, else the next one."""
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def market_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date on the exchange's clock (``now`` must be aware; default: the system
    clock)."""
    return (now or dt.datetime.now(tz=MARKET_TZ)).astimezone(MARKET_TZ).date()


def last_completed_session(now: dt.datetime) -> dt.date:
    """The most recent trading day strictly before today in New York: its close is final
    (the nightly run at 02:00 takes that session)."""
    return previous_trading_day(market_today(now))
