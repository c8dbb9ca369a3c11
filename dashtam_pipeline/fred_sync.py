"""Bookkeeping for incremental FRED pulls: what each series looked like at its last sync.

A nightly run over many FRED series must not re-download decades of vintages that did
not change. FRED's ``/series`` answer carries ``last_updated`` (when any value or vintage
of the series last changed); comparing it with the value recorded at the last successful
pull tells, for one cheap request, whether the series' observations need fetching at all.

The record lives in the state store (table ``fred_sync``), not in memory or the lake,
because every Dagster step runs in its own process and the decision must survive them.
A mark is written only after the pulled rows landed (``FredClient.after_landed``): a
pull whose rows never reached the lake must be repeated, never marked as done.

The nightly check asks FRED's ``/series/updates`` which series changed since the last
check instead of asking every series (``FredClient``). Its since-time is kept here too:
each mark's ``realtime_start_synced`` is FRED's own day of the last check that settled
the series (a pull, a ``/series`` check, or an updates check that did not list it), so
the next check starts at 00:00 Central of the oldest such day among the configured
series. FRED's day, not our clock, so a skewed clock cannot skip an update; a day's
overlap only re-lists series whose ``last_updated`` then proves them unchanged.

``/series/updates`` entries carry no ``notes``, so the notes of each series' last
``/series`` answer are kept (table ``fred_series_notes``) for the metadata rows of a
series whose change was learnt from the updates list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.store import StateStore, state_store

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS fred_sync (
        series_id TEXT PRIMARY KEY,
        last_updated TEXT,
        realtime_start_synced TEXT NOT NULL,
        synced_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fred_series_notes (
        series_id TEXT PRIMARY KEY,
        notes TEXT
    )""",
]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def normalize_last_updated(value: str | None) -> str | None:
    """FRED's ``2024-12-19 07:55:01-06`` as a UTC ISO timestamp, so that a change of
    FRED's offset notation (or of daylight saving) is not mistaken for an update."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return value.strip()  # unknown notation: compared verbatim
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class SyncMark:
    """One series at its last successful pull.

    ``last_updated`` is FRED's (normalized) timestamp read *before* the observations were
    requested, so a revision published during the pull makes the next check see a newer
    value; ``realtime_start_synced`` is FRED's own day at that check (the ``realtime_start``
    an incremental window would start from); ``synced_at`` is our clock.
    """

    series_id: str
    last_updated: str | None
    realtime_start_synced: dt.date
    synced_at: dt.datetime
    #: the ``notes`` of the ``/series`` answer, when this sync read one (kept apart)
    notes: str | None = None

    def unchanged(self, last_updated: str | None) -> bool:
        """True when FRED reports the same ``last_updated`` as at this sync. Without a
        timestamp on either side nothing can be proved, so the series counts as changed."""
        return self.last_updated is not None and self.last_updated == last_updated


class FredSync:
    """The ``fred_sync`` table of a state store (safe from many threads: the store keeps
    one connection per thread)."""

    def __init__(self, store: StateStore, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        store.ensure_schema("fred_sync", SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> FredSync:
        return cls(state_store(settings))

    def get(self, series_id: str) -> SyncMark | None:
        """The series' last sync, or None when it was never pulled (a full pull is due)."""
        row = self.store.query(
            "SELECT series_id, last_updated, realtime_start_synced, synced_at "
            "FROM fred_sync WHERE series_id = ?",
            (series_id,),
        )
        return _mark(row[0]) if row else None

    def marks(self, series_ids: Sequence[str] | None = None) -> dict[str, SyncMark]:
        """Every recorded series (or those of ``series_ids``), by id."""
        rows = self.store.query(
            "SELECT series_id, last_updated, realtime_start_synced, synced_at FROM fred_sync"
        )
        wanted = None if series_ids is None else set(series_ids)
        return {r[0]: _mark(r) for r in rows if wanted is None or r[0] in wanted}

    def mark(
        self, series_id: str, last_updated: str | None, realtime_start_synced: dt.date,
        notes: str | None = None,
    ) -> SyncMark:
        """A mark stamped now (not yet recorded)."""
        return SyncMark(series_id, last_updated, realtime_start_synced, self.clock(), notes)

    def notes(self, series_ids: Sequence[str]) -> dict[str, str | None]:
        """The recorded ``/series`` notes of ``series_ids`` (absent: never recorded)."""
        wanted = set(series_ids)
        rows = self.store.query("SELECT series_id, notes FROM fred_series_notes")
        return {str(r[0]): None if r[1] is None else str(r[1]) for r in rows if r[0] in wanted}

    def record(self, marks: Iterable[SyncMark]) -> int:
        """Insert or replace marks in one transaction; returns how many."""
        marks = list(marks)
        with self.store.transaction() as tx:
            for m in marks:
                tx.execute(
                    "INSERT INTO fred_sync (series_id, last_updated, realtime_start_synced, "
                    "synced_at) VALUES (?, ?, ?, ?) ON CONFLICT (series_id) DO UPDATE SET "
                    "last_updated = excluded.last_updated, "
                    "realtime_start_synced = excluded.realtime_start_synced, "
                    "synced_at = excluded.synced_at",
                    (m.series_id, m.last_updated, m.realtime_start_synced.isoformat(),
                     m.synced_at.isoformat()),
                )
                if m.notes is not None:
                    tx.execute(
                        "INSERT INTO fred_series_notes (series_id, notes) VALUES (?, ?) "
                        "ON CONFLICT (series_id) DO UPDATE SET notes = excluded.notes",
                        (m.series_id, m.notes),
                    )
        return len(marks)

    def forget(self, series_id: str) -> None:
        """Drop a series' mark, so its next pull is a full one (e.g. after a lake repair)."""
        self.store.execute("DELETE FROM fred_sync WHERE series_id = ?", (series_id,))


def _mark(row: tuple[object, ...]) -> SyncMark:
    series_id, last_updated, realtime_start, synced_at = row
    return SyncMark(
        str(series_id),
        None if last_updated is None else str(last_updated),
        dt.date.fromisoformat(str(realtime_start)),
        dt.datetime.fromisoformat(str(synced_at)),
    )
