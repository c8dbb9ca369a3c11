"""What every sandbox module shares: the request/response types, JSON helpers, stable
seeds and the exchange calendar.

Determinism is the point of the sandbox: the same request answers the same body in any
process. Seeds therefore come from ``zlib.crc32`` of readable parts (Python's ``hash()``
is salted per process), and dates come from the app's clock, never from ``date.today()``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from dashtam_pipeline.trading_calendar import previous_trading_day

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
UTC = dt.UTC

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    """The real time, as an aware UTC datetime (the default clock)."""
    return dt.datetime.now(UTC)


# --- seeds ------------------------------------------------------------------------------
def stable_seed(*parts: object) -> int:
    """A process-independent 32-bit seed from readable parts (never Python's ``hash()``)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode("utf-8"))


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A numpy generator for one (seed, topic) pair: independent streams per topic."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stable_seed(*parts)])


def stable_hex(*parts: object, length: int = 32) -> str:
    """A deterministic hex string (request ids, hashes) from readable parts."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:length]


def stable_uuid(*parts: object) -> str:
    """A deterministic UUID string from readable parts."""
    return str(uuid.UUID(hex=stable_hex(*parts, length=32), version=4))


# --- calendar ---------------------------------------------------------------------------
def is_weekday(day: dt.date) -> bool:
    return day.weekday() < 5


def previous_weekday(day: dt.date) -> dt.date:
    """The last weekday strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while not is_weekday(day):
        day -= dt.timedelta(days=1)
    return day


def next_weekday_on_or_after(day: dt.date) -> dt.date:
    while not is_weekday(day):
        day += dt.timedelta(days=1)
    return day


def ny_today(now: dt.datetime) -> dt.date:
    """The exchange's calendar date (America/New_York) at ``now``."""
    return now.astimezone(NEW_YORK).date()


def last_completed_session(now: dt.datetime) -> dt.date:
    """The most recent trading day (weekdays less NYSE holidays) strictly before today in
    New York: its close is final."""
    return previous_trading_day(ny_today(now))


def ny_time(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """A wall-clock time in New York on ``day``, as an aware datetime."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NEW_YORK)


def epoch_seconds(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def epoch_ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


def month_end(year: int, month: int) -> dt.date:
    return add_months(dt.date(year, month, 1), 1) - dt.timedelta(days=1)


def parse_date(text: str | None) -> dt.date | None:
    """``YYYY-MM-DD`` (or the date part of an ISO datetime); ``None`` when absent."""
    if not text:
        return None
    return dt.date.fromisoformat(text.strip()[:10])


def parse_instant(text: str | None, *, end_of_day: bool = False) -> dt.datetime | None:
    """An ISO date or datetime as aware UTC; a bare date means its UTC midnight (or its
    last microsecond with ``end_of_day``), a naive datetime is taken as UTC."""
    if not text:
        return None
    text = text.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        moment = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + dt.timedelta(days=1, microseconds=-1) if end_of_day else moment
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_z(moment: dt.datetime, *, millis: bool = False) -> str:
    """UTC ISO-8601 with a ``Z`` suffix, as NewsAPI and Alpaca write it."""
    moment = moment.astimezone(UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- HTTP -------------------------------------------------------------------------------
@dataclass
class Request:
    """One HTTP request as the handlers see it (already split by provider slug)."""

    method: str
    path: str  # the full path, e.g. /fmp/stable/quote
    slug: str
    subpath: str  # the path after the slug, e.g. /stable/quote
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root_url: str  # scheme://host[:port] the client used, for absolute next_url links
    form: dict[str, str] = field(default_factory=dict)
    query_string: str = ""

    def param(self, name: str, default: str | None = None) -> str | None:
        value = self.query.get(name)
        return value if value not in (None, "") else default

    def int_param(self, name: str, default: int) -> int:
        value = self.param(name)
        return int(value) if value is not None else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    """A status, headers and a body of bytes."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(
    payload: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(payload, default=_jsonable, ensure_ascii=False).encode("utf-8")
    return Response(
        status, body, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])]
    )


class HTTPFailure(Exception):
    """Raised by a handler to answer an error response in its provider's shape."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def fail(payload: Any, status: int) -> HTTPFailure:
    return HTTPFailure(json_response(payload, status))


def money(value: float, places: int = 2) -> float:
    """A float rounded for a body (numpy scalars become plain floats)."""
    return float(round(float(value), places))
