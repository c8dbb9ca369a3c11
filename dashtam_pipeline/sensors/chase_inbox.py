"""The Chase inbox sensor: each CSV dropped in ``CHASE_IMPORT_DIR`` becomes a partition of
``brokerage/chase_file_transactions`` and one import run.

Chase has no API: a person downloads an export and drops it in the inbox, at any hour.
Waiting for the nightly run would leave the warehouse a day behind, and re-reading the
whole inbox on every run re-imports every old file; one partition per file gives each
export its own run, its own row in the UI and its own retry.

What a tick does (``scan_inbox``):

* only regular files are looked at (``providers.chase_file.client.list_inbox``): a symlink, FIFO,
  device, socket or folder is never opened; it is named in the log (once, when it first
  appears) and in the skip reason, and left where it is;
* a file modified in the last ``SETTLE_SECONDS``, or whose size changed since the last
  tick, is still being written: it waits for the next tick;
* a file whose last line is cut off (no line ending, not its layout's shape: a copy
  caught half-way, mtime preserved) waits too, up to ``PARTIAL_GRACE_SECONDS`` after its
  last change; after that it is imported and the cut line is quarantined with its reason,
  so a stalled copy is reported instead of waiting forever;
* a settled file gets the key ``<name>@<sha256 prefix>`` (``assets.partitions``; a name
  with ``...``, control characters or ``%`` is percent-encoded in the key); a new
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
no settling delay: the person who runs it has finished dropping files; it warns about the
entries that are not regular files as a tick does (``report_refused``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterLogManager,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    get_dagster_logger,
    sensor,
)

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import (
    can_be_partition_key,
    digest_of,
    file_partition_key,
    inbox_partitions,
)
from dashtam_pipeline.providers.chase_file.client import (
    RefusedEntry,
    UnreadableExport,
    list_inbox,
    parse_chase_csv,
    read_export,
    relative_name,
)
from dashtam_pipeline.registry import Partitioning, ProviderSlug
from dashtam_pipeline.resources import (
    ClockResource,
    StateStoreResource,
    StorageResource,
    settings_from,
)
from dashtam_pipeline.settings import load_settings

SENSOR_NAME = "chase_inbox_sensor"
MINIMUM_INTERVAL_SECONDS = 30
#: A file modified more recently than this is assumed to be still being written.
SETTLE_SECONDS = 5.0
#: How long a file whose last line is cut off may still be waited on after its last change
#: (a slow or stalled copy); after that it is imported and the cut line quarantined.
PARTIAL_GRACE_SECONDS = 120.0
#: ``Sighting.size`` of an entry that is not a regular file (a real size is never negative).
REFUSED_SIZE = -1
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
    """A file as one tick saw it; ``key`` is empty while it is still being written. An
    entry that is not a regular file has size ``REFUSED_SIZE`` and its kind as ``key``, so
    the next tick knows it was reported already."""

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
    #: files waiting because their last line is cut off (a subset of ``waiting``)
    cut_off: list[str] = field(default_factory=list)
    #: names whose key Dagster would refuse (cannot happen: keys are encoded; kept loud)
    unusable: list[str] = field(default_factory=list)
    #: entries that are not regular files: never opened
    refused: list[RefusedEntry] = field(default_factory=list)
    #: the refused entries this tick sees for the first time (logged once)
    newly_refused: list[RefusedEntry] = field(default_factory=list)
    sightings: dict[str, Sighting] = field(default_factory=dict)


def scan_inbox(
    inbox: Path,
    registered: Sequence[str],
    previous: Mapping[str, Sighting],
    *,
    now: float,
    settle_seconds: float,
    partial_grace_seconds: float = 0.0,
) -> InboxScan:
    """Compare the inbox with the ``registered`` partition keys (see the module doc).
    ``partial_grace_seconds`` (0: never) is how long a file with a cut-off last line
    waits after its last change."""
    known = set(registered)
    key_by_digest = {digest_of(key): key for key in registered}
    scan = InboxScan()
    listing = list_inbox(inbox)
    for entry in listing.refused:
        scan.refused.append(entry)
        seen = previous.get(entry.name)
        if seen is None or seen.size != REFUSED_SIZE or seen.key != entry.kind:
            scan.newly_refused.append(entry)
        scan.sightings[entry.name] = Sighting(REFUSED_SIZE, 0, entry.kind)
    for path in listing.files:
        name = relative_name(inbox, path)  # ``<USER_ID>/<file>`` in a user's folder
        try:
            stat = path.lstat()
        except FileNotFoundError:  # moved away between the listing and now
            continue
        seen = previous.get(name)
        sighting = Sighting(stat.st_size, stat.st_mtime_ns)
        age = now - stat.st_mtime_ns / 1e9
        recent = settle_seconds > 0 and age < settle_seconds
        if recent or (seen is not None and seen.size != sighting.size):
            scan.waiting.append(name)
            scan.sightings[name] = sighting
            continue
        unchanged = seen is not None and (seen.size, seen.mtime_ns) == (
            sighting.size, sighting.mtime_ns)
        if unchanged and seen.key and digest_of(seen.key) in key_by_digest:
            key = seen.key  # settled and already handled: no need to hash it again
        else:
            try:
                data = read_export(path)
            except FileNotFoundError:
                continue
            except UnreadableExport as exc:
                if exc.kind is not None:  # swapped for a link/FIFO since the listing
                    entry = RefusedEntry(name, exc.kind)
                    scan.refused.append(entry)
                    scan.newly_refused.append(entry)
                    scan.sightings[name] = Sighting(REFUSED_SIZE, 0, exc.kind)
                    continue
                # too large to read: its import refuses and quarantines it; the key's
                # digest is of its size and mtime (its bytes are never read whole)
                data = f"too large: {stat.st_size} bytes, mtime {stat.st_mtime_ns}".encode()
            else:
                if age < partial_grace_seconds and _cut_off(data, name):
                    scan.waiting.append(name)
                    scan.cut_off.append(name)
                    scan.sightings[name] = sighting
                    continue
            key = file_partition_key(name, data)
        if not can_be_partition_key(key):
            scan.unusable.append(name)
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


def _cut_off(data: bytes, name: str) -> bool:
    """Whether the file's last line is cut off mid-write (see ``ParsedFile.cut_line``)."""
    return parse_chase_csv(data, name).cut_line is not None


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


def register_inbox(
    instance: DagsterInstance, inbox: Path, log: logging.Logger | DagsterLogManager | None = None
) -> list[str]:
    """Add a partition for every settled, not yet imported file in ``inbox`` now; returns
    the new keys. For ``dashtam materialize``/``demo``, which then run the partitions.

    The entries that are not regular files get a warning each on ``log`` (default: the
    Dagster logger, which the command prints), as the sensor's tick gives them: a command
    that imports the inbox must not leave a refused entry unmentioned just because no
    sensor is running."""
    scan = scan_inbox(inbox, instance.get_dynamic_partitions(PARTITIONS.name), {},
                      now=time.time(), settle_seconds=0)
    report_refused(log or get_dagster_logger(), scan.refused)
    if scan.new_keys:
        instance.add_dynamic_partitions(PARTITIONS.name, scan.new_keys)
    return scan.new_keys


def register_configured_inbox(instance: DagsterInstance) -> list[str]:
    """``register_inbox`` for the inbox the settings name (``CHASE_IMPORT_DIR``)."""
    return register_inbox(instance, load_settings().chase_inbox)


def report_refused(log: logging.Logger | DagsterLogManager,
                   entries: Sequence[RefusedEntry]) -> None:
    """One warning per inbox entry that is not a regular file, naming it and why it is not
    read: what both the sensor's tick and ``register_inbox`` (``dashtam materialize``) say."""
    for entry in entries:
        log.warning(entry.message)


def _tick_log(context: SensorEvaluationContext, scan: InboxScan) -> None:
    report_refused(context.log, scan.newly_refused)
    for name, key in scan.duplicates.items():
        context.log.info(f"{name!r}: same bytes as partition {key!r}, already imported; "
                         "skipped")
    for name in scan.waiting:
        what = ("its last line is cut off; waiting for the rest" if name in scan.cut_off
                else "still being written")
        context.log.info(f"{name!r}: {what}; next tick")
    for name in scan.unusable:
        context.log.warning(f"{name!r}: Dagster refuses its partition key; rename it to "
                            "import it")


def _skip_reason(scan: InboxScan) -> str:
    """Why a tick requested nothing, naming what was not imported and why."""
    text = (f"no new file ({len(scan.waiting)} still being written, "
            f"{len(scan.duplicates)} already imported under another name)")
    if scan.refused:
        names = ", ".join(repr(e.name) for e in scan.refused[:5])
        more = f" and {len(scan.refused) - 5} more" if len(scan.refused) > 5 else ""
        text += (f"; not regular files, never read, left in place: {names}{more}")
    if scan.unusable:
        text += f"; cannot be partition keys: {', '.join(map(repr, scan.unusable))}"
    return text


def build_chase_inbox_sensor() -> SensorDefinition:
    """The sensor; the ``clock`` resource (``resources.ClockResource``) says when a file
    has settled, and tests replace it."""

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
    def chase_inbox_sensor(
        context: SensorEvaluationContext, clock: ClockResource, storage: StorageResource,
        state: StateStoreResource,
    ) -> SensorResult:
        scan = scan_inbox(
            settings_from(storage, state).chase_inbox,
            context.instance.get_dynamic_partitions(PARTITIONS.name),
            read_cursor(context.cursor),
            now=clock.now().timestamp(),
            settle_seconds=SETTLE_SECONDS,
            partial_grace_seconds=PARTIAL_GRACE_SECONDS,
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
            skip_reason=None if scan.new_keys else SkipReason(_skip_reason(scan)),
        )

    return chase_inbox_sensor


chase_inbox_sensor = build_chase_inbox_sensor()
