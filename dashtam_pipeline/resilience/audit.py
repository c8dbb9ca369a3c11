"""The call audit: one row in ``call_audit`` per HTTP attempt, from every process.

Licensed data needs an answer to "what did we ask which provider, when, under which rights
profile, and what happened" that outlives a run's logs, and operators need per-provider
failure rates and latencies across runs. Each attempt ``ProviderHTTP`` reports becomes a
row: provider, method, endpoint (the path only), status, latency, attempt number, rights
profile, outcome, error, Dagster run id and time.

``http.py`` already redacts what it reports; the audit scrubs endpoint and error again
before storing (secret-looking query parameters, plus any secret values it was given),
because a stored secret cannot be taken back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from dashtam_pipeline.http import CallRecord, redact
from dashtam_pipeline.resilience.breaker import Clock, utc_now
from dashtam_pipeline.state.store import StateStore

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS call_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        method TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        status_code INTEGER,
        latency_ms REAL NOT NULL,
        attempt INTEGER NOT NULL,
        rights_profile TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        run_id TEXT,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS call_audit_by_provider ON call_audit (provider, at)",
]

_COLUMNS = (
    "provider", "method", "endpoint", "status_code", "latency_ms", "attempt",
    "rights_profile", "outcome", "error", "run_id", "at",
)


def _iso(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so that text order is time order in both databases."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class CallAudit:
    """A ``CallHook`` that stores every attempt. ``run_id`` defaults to the
    ``DAGSTER_RUN_ID`` environment variable when set (read per attempt)."""

    def __init__(
        self,
        store: StateStore,
        *,
        rights_profile: str,
        run_id: str | None = None,
        secrets: Iterable[str] = (),
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.rights_profile = rights_profile
        self.run_id = run_id
        self.clock = clock
        self._secrets = [s for s in secrets if s]
        store.ensure_schema("call_audit", SCHEMA)

    def before_attempt(self, provider: str, endpoint: str) -> None:
        return None  # nothing to audit until the attempt has an outcome

    def after_attempt(self, record: CallRecord) -> None:
        run_id = self.run_id or os.environ.get("DAGSTER_RUN_ID") or None
        error = None if record.error is None else redact(record.error, self._secrets)
        self.store.execute(
            f"INSERT INTO call_audit ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
            (
                record.provider, record.method, redact(record.endpoint, self._secrets),
                record.status_code, float(record.latency_ms), record.attempt,
                self.rights_profile, record.outcome, error, run_id, _iso(self.clock()),
            ),
        )


def recent_calls(
    store: StateStore, provider: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest audited attempts, newest first (optionally of one provider)."""
    store.ensure_schema("call_audit", SCHEMA)
    where, params = ("WHERE provider = ? ", [provider]) if provider else ("", [])
    rows = store.query(
        f"SELECT {', '.join(_COLUMNS)} FROM call_audit {where}ORDER BY at DESC, id DESC "
        "LIMIT ?",
        (*params, int(limit)),
    )
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, computed like ``CallStats.summary`` so the run metadata
    and the audit summary agree."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return round(sorted_values[index], 1)


def call_summary(store: StateStore, provider: str, since: datetime) -> dict[str, Any]:
    """Attempts to ``provider`` at or after ``since``: how many, how many failed or were
    retries, and the p50/p95 latency."""
    store.ensure_schema("call_audit", SCHEMA)
    rows = store.query(
        "SELECT outcome, attempt, latency_ms FROM call_audit WHERE provider = ? AND at >= ?",
        (provider, _iso(since)),
    )
    latencies = sorted(float(r[2]) for r in rows)
    return {
        "provider": provider,
        "since": _iso(since),
        "calls": len(rows),
        "failures": sum(1 for r in rows if r[0] != "ok"),
        "retries": sum(1 for r in rows if int(r[1]) > 1),
        "latency_p50_ms": _percentile(latencies, 0.5),
        "latency_p95_ms": _percentile(latencies, 0.95),
    }
