"""Partitions of the ingestion assets, one definition per ``registry.Partitioning``.

Daily assets use calendar days in America/New_York: the nightly run materializes the
previous day, weekends simply hold no bars. FRED observations are partitioned by series
(from ``DASHTAM_FRED_SERIES``, so adding a series needs no code) so one series can be
re-pulled alone; a backfill covers up to ``FRED_SERIES_PER_RUN`` series per run.

File imports are partitioned by inbox file (``inbox_partitions``): a dynamic partition per
file, added by the provider's inbox sensor or by ``dashtam materialize``. A key is the
file's name and the first hex digits of the SHA-256 of its bytes (``file_partition_key``):
the name makes the partition readable in the UI and tells the import which file to read;
the digest makes a re-written file under the same name a new partition, and lets the
sensor recognise the same bytes dropped again under another name and not import them twice.
"""

from __future__ import annotations

import hashlib

from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
)
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

from dashtam_pipeline.registry import Partitioning
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.trading_calendar import (  # noqa: F401  (re-exported)
    MARKET_TZ,
    market_today,
    previous_trading_day,
)

#: Run tags bounding the observation dates of a FRED backfill (YYYY-MM-DD, either may be
#: left out): set by ``dashtam materialize --from/--to`` with dates, or in the UI's
#: backfill dialog. Without them a FRED run covers each series' whole history.
OBSERVATION_START_TAG = "dashtam/observation_start"
OBSERVATION_END_TAG = "dashtam/observation_end"
DAILY_START = "2024-01-01"
#: Series per FRED backfill run: enough that the per-run cost (~1 s) is amortized and
#: series are fetched concurrently, few enough that a backfill of hundreds of series shows
#: progress run by run (UI and CLI), bounds a run's memory, and one bad run is cheap to redo.
FRED_SERIES_PER_RUN = 25

daily_partitions = DailyPartitionsDefinition(
    start_date=DAILY_START, timezone="America/New_York", end_offset=0
)


def fred_series_partitions(settings: Settings) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(dict.fromkeys(settings.dashtam_fred_series)))


#: Separates a file's name from its content digest in an inbox partition key.
KEY_SEPARATOR = "@"
#: Hex digits of the content SHA-256 kept in a key: enough to tell files apart, short
#: enough to read.
DIGEST_LENGTH = 12


def inbox_partitions(owner: str) -> DynamicPartitionsDefinition:
    """The per-file partitions of a file-import provider's inbox (``chase_file_inbox``)."""
    return DynamicPartitionsDefinition(name=f"{owner}_inbox")


def content_digest(data: bytes) -> str:
    """The part of a file's partition key that identifies its bytes."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


def file_partition_key(file_name: str, data: bytes) -> str:
    """``Chase1234_Activity_20240105.CSV@3f2a9c1b7d4e``: which file, and which bytes."""
    return f"{file_name}{KEY_SEPARATOR}{content_digest(data)}"


def file_name_of(partition_key: str) -> str:
    """The inbox file an inbox partition imports (names may contain the separator)."""
    return partition_key.rsplit(KEY_SEPARATOR, 1)[0]


def digest_of(partition_key: str) -> str:
    """The content digest of an inbox partition key."""
    return partition_key.rsplit(KEY_SEPARATOR, 1)[-1]


def can_be_partition_key(file_name: str) -> bool:
    """Dagster refuses keys holding ``...`` or control characters; such a file must be
    renamed before it can be imported."""
    return not any(bad in file_name for bad in INVALID_PARTITION_SUBSTRINGS)


def partitions_for(
    partitioning: Partitioning, settings: Settings, *, owner: str | None = None
) -> PartitionsDefinition | None:
    """The partitions of an asset; ``owner`` (the provider slug) names per-file ones."""
    if partitioning is Partitioning.TRADING_DAY:
        return daily_partitions
    if partitioning is Partitioning.FRED_SERIES:
        return fred_series_partitions(settings)
    if partitioning is Partitioning.INBOX_FILE:
        if owner is None:
            raise ValueError("inbox-file partitions belong to one provider: pass owner")
        return inbox_partitions(owner)
    return None


def backfill_policy_for(partitioning: Partitioning) -> BackfillPolicy | None:
    """Many partitions per run: a month of days, 25 series, or every inbox file at once —
    importing files is local and cheap, one run per file would be mostly overhead. (The
    nightly FRED run is one run over every series: unchanged series cost one request.)"""
    if partitioning is Partitioning.TRADING_DAY:
        return BackfillPolicy.multi_run(max_partitions_per_run=31)
    if partitioning is Partitioning.FRED_SERIES:
        return BackfillPolicy.multi_run(max_partitions_per_run=FRED_SERIES_PER_RUN)
    if partitioning is Partitioning.INBOX_FILE:
        return BackfillPolicy.single_run()
    return None


