"""Partitions of the ingestion assets, one definition per ``registry.Partitioning``.

Daily assets are partitioned by trading day (``trading_day_partitions``): one partition
per NYSE session from ``DASHTAM_HISTORY_START``, weekends and exchange holidays left out,
so an asset that holds every session shows 100% filled. The nightly run materializes the
previous session. FRED observations are partitioned by series
(from ``DASHTAM_FRED_SERIES``, so adding a series needs no code) so one series can be
re-pulled alone; a backfill covers up to ``DASHTAM_FRED_SERIES_PER_RUN`` series per run.

File imports are partitioned by inbox file (``inbox_partitions``): a dynamic partition per
file, added by the provider's inbox sensor or by ``dashtam materialize``. A key is the
file's name and the first hex digits of the SHA-256 of its bytes (``file_partition_key``):
the name makes the partition readable in the UI and tells the import which file to read;
the digest makes a re-written file under the same name a new partition, and lets the
sensor recognise the same bytes dropped again under another name and not import them twice.

A file name may hold anything a file system allows (control characters, ``...``, bytes that
are not UTF-8), and Dagster refuses some of that in a key (``REFUSED_IN_PARTITION_KEYS``):
``...`` is its key-range separator, control characters break logs and the UI. So the name
part of a key is percent-encoded where needed (``encode_file_name``): ``%``, every control,
format or separator character, and the middle dot of any ``...``. The encoding is
reversible (``file_name_of``), so the import still finds the file, and a plain name (all
real Chase exports) is its own encoding, so keys registered before it are unchanged.

Brokerage API assets are partitioned by connection (``connection_partitions``): a dynamic
partition per connection, keyed by its id (stable: an alias may be renamed), added and
removed by ``connection_partitions_sensor`` as connections are made and disconnected. A
connection is the unit of brokerage work (its own credentials, run, retry and row in the
UI), and ``CONNECTIONS_PER_RUN`` of them share a run so thousands of connections are tens
of runs, not thousands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from dagster import (
    BackfillPolicy,
    DynamicPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from dashtam_pipeline.registry import Partitioning
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.trading_calendar import (  # noqa: F401  (re-exported)
    MARKET_TZ,
    market_today,
    previous_trading_day,
    weekday_closures,
)

#: Run tags bounding the observation dates of a FRED backfill (YYYY-MM-DD, either may be
#: left out): set by ``dashtam materialize --from/--to`` with dates, or in the UI's
#: backfill dialog. Without them a FRED run covers each series' whole history.
OBSERVATION_START_TAG = "dashtam/observation_start"
OBSERVATION_END_TAG = "dashtam/observation_end"

#: Connections per brokerage run (nightly, backfill, catch-up): a run costs Dagster a few
#: seconds of its own (process, event log), a connection a few requests, so batching makes
#: 1,000 connections ten runs; one failed connection re-runs alone from its dead letter.
CONNECTIONS_PER_RUN = 100
#: The name of a connection partitions definition ends with this (``schwab_connections``).
CONNECTIONS_SUFFIX = "_connections"

#: Years of exchange closures listed ahead of today: the partitions are rebuilt whenever
#: the code location loads, so this only has to outlast one deployment.
CLOSURE_YEARS_AHEAD = 5


def trading_day_partitions(settings: Settings) -> TimeWindowPartitionsDefinition:
    """One partition per NYSE session from ``DASHTAM_HISTORY_START``, keyed ``YYYY-MM-DD``.

    A weekday calendar (windows start at midnight New York, Monday to Friday) without the
    weekdays the exchange is closed (``trading_calendar.weekday_closures``, Dagster's
    ``exclusions``). A Friday's window runs to Monday, so the partition of a session
    exists from the session's own midnight on (``end_offset=1``): the nightly run at 02:00
    on Saturday can take Friday's close instead of waiting for Monday. The partition of
    the session under way today exists too, and stays missing until the next nightly run.
    """
    return _trading_day_partitions(
        settings.dashtam_history_start, market_today().year + CLOSURE_YEARS_AHEAD
    )


@lru_cache(maxsize=8)
def _trading_day_partitions(start: dt.date, last_year: int) -> TimeWindowPartitionsDefinition:
    """Built once per history start: every daily asset of a load shares one definition."""
    closures = weekday_closures(start.year, last_year)
    return TimeWindowPartitionsDefinition(
        start=start.isoformat(),
        fmt="%Y-%m-%d",
        cron_schedule="0 0 * * 1-5",
        timezone="America/New_York",
        end_offset=1,
        exclusions=[dt.datetime.combine(day, dt.time()) for day in closures if day >= start],
    )


def fred_series_partitions(settings: Settings) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(dict.fromkeys(settings.dashtam_fred_series)))


#: What Dagster refuses inside a partition key (a ``StaticPartitionsDefinition`` raises on
#: them; dynamic keys are not checked when added, but ``...`` is the key-range separator of
#: ``dagster/asset_partition_range_*`` and of our own run summaries, so such a key breaks
#: later). Our own statement of Dagster's rule, checked against Dagster's behaviour by
#: ``test_attack_inbox.py``; ``encode_file_name`` removes all of it (and more).
REFUSED_IN_PARTITION_KEYS: tuple[str, ...] = (
    "...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0",
)
#: Separates a file's name from its content digest in an inbox partition key.
KEY_SEPARATOR = "@"
#: Hex digits of the content SHA-256 kept in a key: enough to tell files apart, short
#: enough to read.
DIGEST_LENGTH = 12


def inbox_partitions(owner: str) -> DynamicPartitionsDefinition:
    """The per-file partitions of a file-import provider's inbox (``chase_file_inbox``)."""
    return DynamicPartitionsDefinition(name=f"{owner}_inbox")


def connection_partitions(owner: str) -> DynamicPartitionsDefinition:
    """The per-connection partitions of a brokerage API provider (``schwab_connections``)."""
    return DynamicPartitionsDefinition(name=f"{owner}{CONNECTIONS_SUFFIX}")


def is_connection_partitions(partitions_def: PartitionsDefinition | None) -> bool:
    """Whether ``partitions_def`` holds one partition per connection (keyed by its id)."""
    return isinstance(partitions_def, DynamicPartitionsDefinition) and bool(
        partitions_def.name and partitions_def.name.endswith(CONNECTIONS_SUFFIX))


def content_digest(data: bytes) -> str:
    """The part of a file's partition key that identifies its bytes."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


def file_partition_key(file_name: str, data: bytes) -> str:
    """``Chase1234_Activity_20240105.CSV@3f2a9c1b7d4e``: which file, and which bytes. The
    name is ``encode_file_name``'d, so any name the file system allows makes a valid key.
    A file in a user's inbox folder is named ``<USER_ID>/<file>`` and its digest covers
    the folder too: the same export dropped by two users is two users' import, not a
    duplicate of the other's."""
    folder, sep, _ = file_name.rpartition("/")
    digest = content_digest(folder.encode() + b"/" + data if sep else data)
    return f"{encode_file_name(file_name)}{KEY_SEPARATOR}{digest}"


def file_name_of(partition_key: str) -> str:
    """The inbox file an inbox partition imports (names may contain the separator): the
    exact name, decoded (``encode_file_name`` in reverse)."""
    encoded = partition_key.rsplit(KEY_SEPARATOR, 1)[0]
    if "%" not in encoded:
        return encoded
    return os.fsdecode(unquote_to_bytes(encoded))


def _needs_escape(char: str) -> bool:
    """``%`` (the escape itself), and every character of Unicode's "other" (control,
    format, surrogate: a non-UTF-8 byte of a name) or line/paragraph separator categories:
    invisible or line-breaking in a log, a UI cell or a terminal."""
    return char == "%" or unicodedata.category(char)[0] == "C" or unicodedata.category(
        char) in ("Zl", "Zp")


def encode_file_name(file_name: str) -> str:
    """A file name as the name part of a partition key: unchanged when it is plain, else
    with ``%``, control/format/separator characters (as their file-system bytes, ``%XX``)
    and the middle dot of every ``...`` percent-encoded. ``file_name_of`` reverses it."""
    out: list[str] = []
    for char in file_name:
        if _needs_escape(char):
            out.extend(f"%{byte:02X}" for byte in os.fsencode(char))
        elif char == "." and len(out) >= 2 and out[-1] == "." and out[-2] == ".":
            out[-1] = "%2E"  # "..." -> ".%2E.": no run of three dots survives
            out.append(char)
        else:
            out.append(char)
    return "".join(out)


def digest_of(partition_key: str) -> str:
    """The content digest of an inbox partition key."""
    return partition_key.rsplit(KEY_SEPARATOR, 1)[-1]


def can_be_partition_key(key: str) -> bool:
    """Whether Dagster accepts ``key`` as a partition key (``REFUSED_IN_PARTITION_KEYS``).
    Every ``file_partition_key`` passes: file names are encoded first."""
    return not any(bad in key for bad in REFUSED_IN_PARTITION_KEYS)


def partitions_for(
    partitioning: Partitioning, settings: Settings, *, owner: str | None = None
) -> PartitionsDefinition | None:
    """The partitions of an asset; ``owner`` (the provider slug) names dynamic ones."""
    if partitioning is Partitioning.TRADING_DAY:
        return trading_day_partitions(settings)
    if partitioning is Partitioning.FRED_SERIES:
        return fred_series_partitions(settings)
    if partitioning is Partitioning.INBOX_FILE:
        if owner is None:
            raise ValueError("inbox-file partitions belong to one provider: pass owner")
        return inbox_partitions(owner)
    if partitioning is Partitioning.CONNECTION:
        if owner is None:
            raise ValueError("connection partitions belong to one provider: pass owner")
        return connection_partitions(owner)
    return None


def backfill_policy_for(
    partitioning: Partitioning, settings: Settings
) -> BackfillPolicy | None:
    """Many partitions per run: a month of days, ``DASHTAM_FRED_SERIES_PER_RUN`` series (25),
    or every inbox file at once — importing files is local and cheap, one run per file
    would be mostly overhead. (The
    nightly FRED run is one run over every series: unchanged series cost one request.)
    Connections go ``CONNECTIONS_PER_RUN`` to a run."""
    if partitioning is Partitioning.TRADING_DAY:
        return BackfillPolicy.multi_run(max_partitions_per_run=31)
    if partitioning is Partitioning.FRED_SERIES:
        return BackfillPolicy.multi_run(
            max_partitions_per_run=settings.dashtam_fred_series_per_run)
    if partitioning is Partitioning.INBOX_FILE:
        return BackfillPolicy.single_run()
    if partitioning is Partitioning.CONNECTION:
        return BackfillPolicy.multi_run(max_partitions_per_run=CONNECTIONS_PER_RUN)
    return None


