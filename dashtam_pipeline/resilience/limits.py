"""Per-minute rate limits and daily quotas per provider, held across processes.

Providers count requests per API key, not per process: four Dagster steps each keeping
"5 per minute" in memory would send 20. So every attempt takes its slot in the state store,
inside one transaction that also checks the limits:

* per minute: a sliding log (``rate_limit_log``, one row per request started). A request
  may start when fewer than N requests started in the last ``window_seconds``; otherwise
  the caller sleeps until the oldest of those leaves the window and tries again. A sliding
  log, unlike fixed windows, also holds at window boundaries: at most N requests start in
  ANY window of that length, which is what strict providers enforce.
* per day (UTC day): a counter (``rate_limits``). A request that would exceed it is
  refused before it is sent with ``QUOTA_EXHAUSTED``; waiting would mean hours, and the
  dead-letter queue replays the work after the reset.

Slots are taken by ``before_attempt``, immediately before the request is sent, so only
attempts actually sent count (the hook order in ``hooks.py`` keeps the breaker's refusals
from taking a slot). ``None`` limits mean unlimited; requests are still counted for
``usage()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import CallRecord
from dashtam_pipeline.resilience.breaker import Clock, utc_now
from dashtam_pipeline.state.store import StateStore

if TYPE_CHECKING:
    from dashtam_pipeline.state.store import _Tx

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rate_limits (
        provider TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        day_count INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rate_limit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        started_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS rate_limit_log_by_provider "
    "ON rate_limit_log (provider, started_at)",
]

#: A request leaves the window a microsecond early, so that sleeping exactly the computed
#: wait is always enough despite floating-point rounding of epoch seconds.
_EPSILON = 1e-6


def _next_utc_midnight(now: datetime) -> datetime:
    day = now.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


class RateLimiter:
    """One provider's per-minute limit and daily quota over a ``StateStore``; also a
    ``CallHook`` (bound to its provider)."""

    def __init__(
        self,
        store: StateStore,
        provider: str,
        *,
        per_minute: int | None,
        per_day: int | None,
        tier: str | None,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        window_seconds: float = 60.0,
    ) -> None:
        for name, limit in (("per-minute limit", per_minute), ("daily quota", per_day)):
            if limit is not None and limit < 1:
                raise ValueError(f"{provider}: the {name} must be at least 1 (or unset)")
        if window_seconds <= 0:
            raise ValueError(f"{provider}: the rate-limit window must be positive")
        self.store = store
        self.provider = provider
        self.per_minute = per_minute
        self.per_day = per_day
        self.tier = tier
        self.clock = clock
        self.sleep = sleep
        self.window_seconds = window_seconds
        store.ensure_schema("rate_limits", SCHEMA)

    # -- public ------------------------------------------------------------------------
    def acquire(self, endpoint: str | None = None) -> None:
        """Take a slot for one request about to be sent: wait for room in the window,
        or raise ``QUOTA_EXHAUSTED`` (not retryable) when today's quota is used up."""
        while True:
            now = self.clock()
            with self.store.transaction() as tx:
                day_count = self._locked_day_count(tx, now)
                if self.per_day is not None and day_count >= self.per_day:
                    raise self._quota_error(now, endpoint)
                started = self._window(tx, now)
                wait = 0.0
                if self.per_minute is not None and len(started) >= self.per_minute:
                    oldest_blocking = started[len(started) - self.per_minute]
                    wait = oldest_blocking + self.window_seconds - now.timestamp()
                if wait <= 0:
                    tx.execute(
                        "INSERT INTO rate_limit_log (provider, started_at) VALUES (?, ?)",
                        (self.provider, now.timestamp()),
                    )
                    tx.execute(
                        "UPDATE rate_limits SET day_count = ?, updated_at = ? WHERE provider = ?",
                        (day_count + 1, now.isoformat(), self.provider),
                    )
                    return
            self.sleep(wait)  # outside the transaction: others may go on meanwhile

    def usage(self) -> dict[str, Any]:
        """Requests started in the current window and today, beside the limits."""
        now = self.clock()
        with self.store.transaction() as tx:
            day_count = self._locked_day_count(tx, now)
            in_window = len(self._window(tx, now))
        return {
            "provider": self.provider,
            "tier": self.tier,
            "requests_this_minute": in_window,
            "requests_per_minute": self.per_minute,
            "window_seconds": self.window_seconds,
            "requests_today": day_count,
            "requests_per_day": self.per_day,
            "quota_resets_at": _next_utc_midnight(now).isoformat(),
        }

    # -- CallHook ----------------------------------------------------------------------
    def before_attempt(self, provider: str, endpoint: str) -> None:
        self.acquire(endpoint)

    def after_attempt(self, record: CallRecord) -> None:
        return None  # the slot was taken when the attempt started

    # -- internals ---------------------------------------------------------------------
    def _locked_day_count(self, tx: _Tx, now: datetime) -> int:
        """Lock this provider's row (serializing every limiter of the provider) and
        return today's count, resetting it when the UTC day has changed."""
        today = now.astimezone(UTC).date().isoformat()
        tx.execute(
            "INSERT INTO rate_limits (provider, day, day_count, updated_at) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (provider) DO NOTHING",
            (self.provider, today, now.isoformat()),
        )
        row = tx.query_one(
            "SELECT day, day_count FROM rate_limits WHERE provider = ? FOR UPDATE",
            (self.provider,),
        )
        assert row is not None  # inserted just above
        if row[0] == today:
            return int(row[1])
        tx.execute(
            "UPDATE rate_limits SET day = ?, day_count = 0, updated_at = ? WHERE provider = ?",
            (today, now.isoformat(), self.provider),
        )
        return 0

    def _window(self, tx: _Tx, now: datetime) -> list[float]:
        """Start times (epoch seconds, oldest first) of the requests still in the window;
        older entries are deleted so the log stays small."""
        cutoff = now.timestamp() - self.window_seconds + _EPSILON
        tx.execute(
            "DELETE FROM rate_limit_log WHERE provider = ? AND started_at <= ?",
            (self.provider, cutoff),
        )
        rows = tx.query(
            "SELECT started_at FROM rate_limit_log WHERE provider = ? ORDER BY started_at",
            (self.provider,),
        )
        return [float(r[0]) for r in rows]

    def _quota_error(self, now: datetime, endpoint: str | None) -> ProviderError:
        resets = _next_utc_midnight(now).replace(tzinfo=None).isoformat(timespec="seconds")
        return ProviderError(
            self.provider,
            ErrorKind.QUOTA_EXHAUSTED,
            f"{self.provider} daily quota of {self.per_day} requests (tier "
            f"{self.tier or 'unspecified'}) is used up; it resets at {resets} UTC",
            endpoint=endpoint,
            retryable=False,
        )
