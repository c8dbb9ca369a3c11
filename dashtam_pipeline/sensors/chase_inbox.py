"""The Chase inbox sensor: each CSV dropped in ``CHASE_IMPORT_DIR`` becomes a partition of
``brokerage/chase_file_transactions`` and one import run.

Chase has no API: a person downloads an export and drops it in the inbox, at any hour.
Waiting for the nightly run would leave the warehouse a day behind, and re-reading the
whole inbox on every run re-imports every old file; one partition per file gives each
export its own run, its own row in the UI and its own retry.

What a tick does (``scan_inbox``):

* a file modified in the last ``SETTLE_SECONDS``, or whose size changed since the last
  tick, is still being written: it waits for the next tick;
* a settled file gets the key ``<name>@<sha256 prefix>`` (``assets.partitions``); a new
  key is added to the ``chase_file_inbox`` partitions with one run requested for it, whose
  run key is the partition key, so Dagster never launches a file's import twice;
* a file whose bytes are already a partition (the same export dropped again under another
  name) gets neither: its rows are in already. Rows could not duplicate anyway
  (transaction ids are derived from what a row says), but a second partition and run for
  identical content would only be noise.

The cursor remembers each file's size, mtime and key, so settled files are not hashed
again every 30 seconds and a growing file is noticed. The partitions in the instance, not
the cursor, are the record of what was imported: a lost cursor only costs re-hashing.
``dashtam materialize`` registers the inbox with the same scan (``register_inbox``), with
no settling delay: the person who runs it has finished dropping files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import (
    can_be_partition_key,
    digest_of,
    file_partition_key,
    inbox_partitions,
)
from dashtam_pipeline.clients.chase_file import inbox_files
from dashtam_pipeline.registry import Partitioning, ProviderSlug
from dashtam_pipeline.settings import load_settings

SENSOR_NAME = "chase_inbox_sensor"
MINIMUM_INTERVAL_SECONDS = 30
#: A file modified more recently than this is assumed to be still being written.
SETTLE_SECONDS = 5.0
PARTITIONS = inbox_partitions(ProviderSlug.CHASE_FILE.value)


def chase_asset_key() -> AssetKey:
    """The asset the inbox feeds: the Chase provider's inbox-file partitioned asset."""
    (key,) = [
        spec.key
        for spec in ingestion_asset_specs()
        if spec.providers[0].slug is ProviderSlug.CHASE_FILE
        and spec.partitioning is Partitioning.INBOX_FILE
    ]
    return key


@dataclass(frozen=True)
class Sighting:
    """A file as one tick saw it; ``key`` is empty while it is still being written."""

    size: int
    mtime_ns: int
    key: str = ""


@dataclass
class InboxScan:
    """What the inbox holds compared with the partitions already registered."""

    new_keys: list[str] = field(default_factory=list)
    #: file name → key of the registered partition holding the same bytes
    duplicates: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    #: names Dagster cannot use in a partition key (``...``, control characters)
    unusable: list[str] = field(default_factory=list)
    sightings: dict[str, Sighting] = field(default_factory=dict)


def scan_inbox(
    inbox: Path,
    registered: Sequence[str],
    previous: Mapping[str, Sighting],
    *,
    now: float,
    settle_seconds: float,
) -> InboxScan:
    """Compare the inbox with the ``registered`` partition keys (see the module doc)."""
    known = set(registered)
    key_by_digest = {digest_of(key): key for key in registered}
    scan = InboxScan()
    for path in inbox_files(inbox):
        name = path.name
        try:
            stat = path.stat()
        except FileNotFoundError:  # moved away between the listing and now
            continue
        seen = previous.get(name)
        sighting = Sighting(stat.st_size, stat.st_mtime_ns)
        recent = settle_seconds > 0 and stat.st_mtime_ns / 1e9 > now - settle_seconds
        if recent or (seen is not None and seen.size != sighting.size):
            scan.waiting.append(name)
            scan.sightings[name] = sighting
            continue
        if not can_be_partition_key(name):
            scan.unusable.append(name)
            continue
        unchanged = seen is not None and (seen.size, seen.mtime_ns) == (
            sighting.size, sighting.mtime_ns)
        if unchanged and seen.key and digest_of(seen.key) in key_by_digest:
            key = seen.key  # settled and already handled: no need to hash it again
        else:
            try:
                key = file_partition_key(name, path.read_bytes())
            except FileNotFoundError:
                continue
        scan.sightings[name] = Sighting(sighting.size, sighting.mtime_ns, key)
        if key in known:
            continue
        same_bytes = key_by_digest.get(digest_of(key))
        if same_bytes is not None:
            scan.duplicates[name] = same_bytes
            continue
        scan.new_keys.append(key)
        known.add(key)
        key_by_digest[digest_of(key)] = key
    return scan


def read_cursor(cursor: str | None) -> dict[str, Sighting]:
    """The sightings of the previous tick (none for a first tick or an unreadable cursor)."""
    try:
        raw = json.loads(cursor or "{}")
        return {name: Sighting(int(size), int(mtime), str(key))
                for name, (size, mtime, key) in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def write_cursor(sightings: Mapping[str, Sighting]) -> str:
    return json.dumps(
        {name: [s.size, s.mtime_ns, s.key] for name, s in sorted(sightings.items())},
        separators=(",", ":"),
    )


def register_inbox(instance: DagsterInstance, inbox: Path) -> list[str]:
    """Add a partition for every settled, not yet imported file in ``inbox`` now; returns
    the new keys. For ``dashtam materialize``/``demo``, which then run the partitions."""
    scan = scan_inbox(inbox, instance.get_dynamic_partitions(PARTITIONS.name), {},
                      now=time.time(), settle_seconds=0)
    if scan.new_keys:
        instance.add_dynamic_partitions(PARTITIONS.name, scan.new_keys)
    return scan.new_keys


def register_configured_inbox(instance: DagsterInstance) -> list[str]:
    """``register_inbox`` for the inbox the settings name (``CHASE_IMPORT_DIR``)."""
    return register_inbox(instance, load_settings().chase_inbox)


def _tick_log(context: SensorEvaluationContext, scan: InboxScan) -> None:
    for name, key in scan.duplicates.items():
        context.log.info(f"{name}: same bytes as partition {key}, already imported; skipped")
    for name in scan.waiting:
        context.log.info(f"{name}: still being written; next tick")
    for name in scan.unusable:
        context.log.warning(f"{name}: rename it (no '...' or control characters) to import it")


def build_chase_inbox_sensor(clock: Callable[[], float] = time.time) -> SensorDefinition:
    """The sensor; ``clock`` (seconds since the epoch) is injectable for tests."""

    @sensor(
        name=SENSOR_NAME,
        target=[chase_asset_key()],
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Turns each new CSV in CHASE_IMPORT_DIR into a chase_file_inbox partition and "
            "one import run; files still being written wait, the same bytes twice import once."
        ),
    )
    def chase_inbox_sensor(context: SensorEvaluationContext) -> SensorResult:
        scan = scan_inbox(
            load_settings().chase_inbox,
            context.instance.get_dynamic_partitions(PARTITIONS.name),
            read_cursor(context.cursor),
            now=clock(),
            settle_seconds=SETTLE_SECONDS,
        )
        _tick_log(context, scan)
        return SensorResult(
            run_requests=[
                RunRequest(run_key=key, partition_key=key,
                           tags={"dashtam/launched_by": SENSOR_NAME})
                for key in scan.new_keys
            ],
            dynamic_partitions_requests=(
                [PARTITIONS.build_add_request(scan.new_keys)] if scan.new_keys else []
            ),
            cursor=write_cursor(scan.sightings),
            skip_reason=None if scan.new_keys else SkipReason(
                f"no new file ({len(scan.waiting)} still being written, "
                f"{len(scan.duplicates)} already imported under another name)"
            ),
        )

    return chase_inbox_sensor


chase_inbox_sensor = build_chase_inbox_sensor()
