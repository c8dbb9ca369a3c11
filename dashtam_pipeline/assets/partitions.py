"""Partitions of the ingestion assets, one definition per ``registry.Partitioning``.

Daily assets use calendar days in America/New_York: the nightly run materializes the
previous day, weekends simply hold no bars. FRED observations are partitioned by series
(from ``DASHTAM_FRED_SERIES``, so adding a series needs no code) so one series can be
re-pulled alone; a backfill covers many series in one run (``BackfillPolicy.single_run``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
)

from dashtam_pipeline.registry import Partitioning
from dashtam_pipeline.settings import Settings

MARKET_TZ = ZoneInfo("America/New_York")
DAILY_START = "2024-01-01"

daily_partitions = DailyPartitionsDefinition(
    start_date=DAILY_START, timezone="America/New_York", end_offset=0
)


def fred_series_partitions(settings: Settings) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(dict.fromkeys(settings.dashtam_fred_series)))


def partitions_for(
    partitioning: Partitioning, settings: Settings
) -> PartitionsDefinition | None:
    if partitioning is Partitioning.TRADING_DAY:
        return daily_partitions
    if partitioning is Partitioning.FRED_SERIES:
        return fred_series_partitions(settings)
    return None


def backfill_policy_for(partitioning: Partitioning) -> BackfillPolicy | None:
    """Many partitions per run: a month of days, or every series at once."""
    if partitioning is Partitioning.TRADING_DAY:
        return BackfillPolicy.multi_run(max_partitions_per_run=31)
    if partitioning is Partitioning.FRED_SERIES:
        return BackfillPolicy.single_run()
    return None


def market_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date on the exchange's clock."""
    return (now or dt.datetime.now(tz=MARKET_TZ)).astimezone(MARKET_TZ).date()


def previous_trading_day(today: dt.date) -> dt.date:
    """The last weekday before ``today`` (exchange holidays are not modelled)."""
    day = today - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day
