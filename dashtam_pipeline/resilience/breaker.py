"""A circuit breaker per provider, shared by every process through the state store.

Dagster runs each step in its own process, so a breaker held in memory would let every
step rediscover on its own that a provider is down, each spending its retries on it. The
breaker's state is one row of ``circuit_breakers`` instead, read and changed inside one
store transaction, so "count this failure and open" and "grant the single half-open probe"
are atomic across processes.

States: CLOSED (requests go through) → OPEN after ``threshold`` consecutive failed attempts
(retries included; refused without a request) → HALF_OPEN once ``timeout_seconds`` have
passed, when exactly one probe is let through → CLOSED if the probe succeeds, OPEN again
(new ``opened_at``) if it fails. A granted probe is marked in the store so other processes
are refused while it is in flight; a probe that never reports back (its process was
killed) expires after ``timeout_seconds``, so the breaker cannot stay stuck half-open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import CallRecord
from dashtam_pipeline.state.store import StateStore

if TYPE_CHECKING:
    from dashtam_pipeline.state.store import _Tx

Clock = Callable[[], datetime]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: Outcomes that count towards opening: the provider is down, broken or throttling us.
FAILURE_OUTCOMES = frozenset(
    {ErrorKind.UNAVAILABLE.value, ErrorKind.MALFORMED.value, ErrorKind.RATE_LIMITED.value}
)
#: Outcomes that prove the provider is up and answering, so the failure run is over. An
#: answer about our request (unknown symbol, bad key, plan limits) is still an answer.
SUCCESS_OUTCOMES = frozenset(
    {
        "ok",
        ErrorKind.NOT_FOUND.value,
        ErrorKind.BAD_REQUEST.value,
        ErrorKind.AUTH.value,
        ErrorKind.NOT_ENTITLED.value,
    }
)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS circuit_breakers (
        provider TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        opened_at TEXT,
        probe_started_at TEXT,
        next_probe_at TEXT,
        updated_at TEXT NOT NULL
    )""",
]

_COLUMNS = "state, consecutive_failures, opened_at, probe_started_at, next_probe_at"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _human(moment: datetime | None) -> str:
    return "?" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BreakerState:
    """A breaker as the clock sees it now: ``state`` is ``closed``, ``open`` or
    ``half_open`` (the timeout has passed, or a probe is in flight)."""

    state: str
    consecutive_failures: int
    opened_at: datetime | None
    next_probe_at: datetime | None


@dataclass(frozen=True)
class _Row:
    """The stored row; ``state`` is what was written (``open`` stays ``open`` in the row
    after its timeout; the half-open view is derived from the clock)."""

    state: str
    consecutive_failures: int
    opened_at: datetime | None
    probe_started_at: datetime | None
    next_probe_at: datetime | None

    @classmethod
    def from_db(cls, row: tuple) -> _Row:
        state, failures, opened, probe, next_probe = row
        return cls(str(state), int(failures), _parse(opened), _parse(probe), _parse(next_probe))

    def view(self, now: datetime) -> BreakerState:
        state = self.state
        if state == OPEN and self.next_probe_at is not None and now >= self.next_probe_at:
            state = HALF_OPEN
        return BreakerState(state, self.consecutive_failures, self.opened_at, self.next_probe_at)


_CLOSED_ROW = _Row(CLOSED, 0, None, None, None)


class CircuitBreaker:
    """One provider's breaker over a ``StateStore``; also a ``CallHook`` for
    ``ProviderHTTP`` (it is bound to its provider, so the hook's provider name is not
    consulted)."""

    def __init__(
        self,
        store: StateStore,
        provider: str,
        *,
        threshold: int,
        timeout_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"{provider}: circuit breaker threshold must be at least 1")
        if timeout_seconds < 0:
            raise ValueError(f"{provider}: circuit breaker timeout must not be negative")
        self.store = store
        self.provider = provider
        self.threshold = threshold
        self.timeout = timedelta(seconds=timeout_seconds)
        self.clock = clock
        store.ensure_schema("circuit_breakers", SCHEMA)

    # -- public ------------------------------------------------------------------------
    def state(self) -> BreakerState:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM circuit_breakers WHERE provider = ?", (self.provider,)
        )
        row = _Row.from_db(rows[0]) if rows else _CLOSED_ROW
        return row.view(self.clock())

    def before_request(self, endpoint: str | None = None) -> None:
        """Return if a request may be sent now; raise ``CIRCUIT_OPEN`` (not retryable) if
        the breaker is open, or half-open with another process's probe in flight."""
        now = self.clock()
        with self.store.transaction() as tx:
            row = self._locked_row(tx)
            if row.state == CLOSED:
                return
            due = row.next_probe_at is not None and now >= row.next_probe_at
            if not due:
                raise self._refusal(row, endpoint)
            # The timeout has passed (or the previous probe expired): this request is the
            # one probe; other processes are refused until it reports or expires.
            self._write(tx, row.consecutive_failures, HALF_OPEN, row.opened_at,
                        probe_started_at=now, next_probe_at=now + self.timeout, now=now)

    def record(self, outcome: str) -> None:
        """Count one attempt's outcome (``"ok"`` or an ``ErrorKind`` value)."""
        if outcome in SUCCESS_OUTCOMES:
            self._record_success()
        elif outcome in FAILURE_OUTCOMES:
            self._record_failure()

    # -- CallHook ----------------------------------------------------------------------
    def before_attempt(self, provider: str, endpoint: str) -> None:
        self.before_request(endpoint)

    def after_attempt(self, record: CallRecord) -> None:
        self.record(record.outcome)

    # -- internals ---------------------------------------------------------------------
    def _record_success(self) -> None:
        now = self.clock()
        with self.store.transaction() as tx:
            row = self._locked_row(tx)
            if row == _CLOSED_ROW:
                return  # the common case writes nothing
            self._write(tx, 0, CLOSED, None, probe_started_at=None, next_probe_at=None, now=now)

    def _record_failure(self) -> None:
        now = self.clock()
        with self.store.transaction() as tx:
            row = self._locked_row(tx)
            failures = row.consecutive_failures + 1
            if row.state == HALF_OPEN or (row.state == CLOSED and failures >= self.threshold):
                # the probe failed, or the threshold is reached: open with a new opened_at
                self._write(tx, failures, OPEN, now, probe_started_at=None,
                            next_probe_at=now + self.timeout, now=now)
            else:
                # still closed below the threshold, or already open (an attempt that was
                # in flight when the breaker opened): count it, keep the timing
                self._write(tx, failures, row.state, row.opened_at,
                            probe_started_at=row.probe_started_at,
                            next_probe_at=row.next_probe_at, now=now)

    def _locked_row(self, tx: _Tx) -> _Row:
        tx.execute(
            "INSERT INTO circuit_breakers (provider, state, consecutive_failures, updated_at) "
            "VALUES (?, ?, 0, ?) ON CONFLICT (provider) DO NOTHING",
            (self.provider, CLOSED, _iso(self.clock())),
        )
        row = tx.query_one(
            f"SELECT {_COLUMNS} FROM circuit_breakers WHERE provider = ? FOR UPDATE",
            (self.provider,),
        )
        assert row is not None  # inserted just above
        return _Row.from_db(row)

    def _write(
        self,
        tx: _Tx,
        failures: int,
        state: str,
        opened_at: datetime | None,
        *,
        probe_started_at: datetime | None,
        next_probe_at: datetime | None,
        now: datetime,
    ) -> None:
        tx.execute(
            "UPDATE circuit_breakers SET state = ?, consecutive_failures = ?, opened_at = ?, "
            "probe_started_at = ?, next_probe_at = ?, updated_at = ? WHERE provider = ?",
            (state, failures, _iso(opened_at), _iso(probe_started_at), _iso(next_probe_at),
             _iso(now), self.provider),
        )

    def _refusal(self, row: _Row, endpoint: str | None) -> ProviderError:
        waiting = " (a probe is in flight)" if row.state == HALF_OPEN else ""
        return ProviderError(
            self.provider,
            ErrorKind.CIRCUIT_OPEN,
            f"circuit open after {row.consecutive_failures} consecutive failures since "
            f"{_human(row.opened_at)}; next probe at {_human(row.next_probe_at)}{waiting}",
            endpoint=endpoint,
            retryable=False,
        )


def breaker_states(store: StateStore, *, clock: Clock = utc_now) -> dict[str, BreakerState]:
    """Every provider's breaker as the clock sees it now, for ``dashtam providers`` and
    materialization metadata. A provider without a row has never failed: it is closed."""
    store.ensure_schema("circuit_breakers", SCHEMA)
    now = clock()
    rows = store.query(f"SELECT provider, {_COLUMNS} FROM circuit_breakers ORDER BY provider")
    return {str(r[0]): _Row.from_db(r[1:]).view(now) for r in rows}
