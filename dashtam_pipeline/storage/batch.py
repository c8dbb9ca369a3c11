"""A write batch over the lake: many small upserts of one run become one per table.

A brokerage run syncs up to ``CONNECTIONS_PER_RUN`` connections, each landing a few rows
in each table. Upserting each connection's rows on its own rewrites the same Parquet
buckets a hundred times under the table's lock (and serialises connections fetched
concurrently on that lock); ``LakeBatch`` takes every connection's validated rows and
quarantined records, and ``flush`` writes them with one upsert per table. The rows of
different connections never share a key (``connection_id`` is part of every brokerage
key), so concatenating them changes nothing a reader sees, except that the run's rows
land together: all of them or, if the flush fails, none.

Reads go to the lake underneath (a batch holds writes only). Safe to fill from several
threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from dashtam_pipeline.registry import DatasetSpec
from dashtam_pipeline.storage.lake import Lake, WriteResult
from dashtam_pipeline.validation import QuarantineRecord


@dataclass
class _Pending:
    spec: DatasetSpec
    model: type[pa.DataFrameModel] | None
    frames: list[pd.DataFrame] = field(default_factory=list)


class LakeBatch:
    """Upserts and quarantine records held for one ``flush`` (see the module doc)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._pending: dict[str, _Pending] = {}
        self._quarantine: list[QuarantineRecord] = []
        self._lock = threading.Lock()

    def upsert(
        self, spec: DatasetSpec, frame: pd.DataFrame, model: type[pa.DataFrameModel] | None = None
    ) -> WriteResult:
        """Hold ``frame``'s rows; the result says how many rows were handed over (the
        inserted/replaced split is only known at ``flush``)."""
        with self._lock:
            pending = self._pending.setdefault(spec.table, _Pending(spec, model))
            if len(frame):
                pending.frames.append(frame)
        return WriteResult(table=spec.table, rows_written=len(frame))

    def quarantine(self, records: Iterable[QuarantineRecord]) -> int:
        held = list(records)
        with self._lock:
            self._quarantine.extend(held)
        return len(held)

    def flush(self) -> dict[str, WriteResult]:
        """Write everything held: quarantined records first (a reader never sees rows
        landed whose rejected neighbours are missing), then one upsert per table.
        Returns each table's write."""
        with self._lock:
            pending, self._pending = self._pending, {}
            quarantined, self._quarantine = self._quarantine, []
        if quarantined:
            self.lake.quarantine(quarantined)
        results = {}
        for table, held in pending.items():
            frames = [f for f in held.frames if len(f)]
            if not frames:
                results[table] = WriteResult(table=table)
                continue
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            results[table] = self.lake.upsert(held.spec, frame, held.model)
        return results

    def __getattr__(self, name: str) -> object:
        # reads (``read_frame``, ``files``, ...) are the lake's own
        return getattr(self.lake, name)
