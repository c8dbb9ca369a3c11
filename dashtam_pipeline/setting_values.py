"""How a setting's value is checked and quoted back: one sentence naming the variable and
what is wrong, never a traceback. Shared by the pipeline's settings (``settings.py``) and
each provider's (``provider_settings.py``), so a bad ``FMP_TIMEOUT_SECONDS`` reads the same
as a bad ``DASHTAM_DLQ_MAX_REPLAYS``."""

from __future__ import annotations

import math
from urllib.parse import urlsplit


def shown(value: object, limit: int = 60) -> str:
    """How a refused value is quoted in a sentence: bare when it is one printable word
    (``got -1``), quoted otherwise (``got ''``, ``got 'a b'``), cut at ``limit``."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if not text or any(c.isspace() or not c.isprintable() or c in "'\"" for c in text):
        return repr(text)
    return text


def parse_number(value: object, name: str, what: str, *, integer: bool) -> float | int:
    """Parse one numeric knob (from the environment it is a string) or say why not."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    if integer:
        if number != int(number):
            raise ValueError(f"{name} must be {what}, got {shown(value)}")
        return int(number)
    return number


#: Upper bounds of the numeric settings, checked at load like ``nan`` and ``1e400``. A value
#: above them is a typo (``1e300``, a stray digit), never a plan, and it would not fail
#: until a run used it, deep inside: a 1e300 s request timeout overflows the deadline
#: arithmetic (``OverflowError: timestamp out of range``), a 1e23 s breaker timeout the
#: C int of a sleep, a 1e23 count SQLite's 64-bit integer. Each bound is far above any
#: sensible value:
#:
#: * an HTTP request that may wait longer than an hour is a hang, not a slow provider;
MAX_REQUEST_TIMEOUT_SECONDS = 3600
#: * a breaker that stays open longer than a day hides an outage past the nightly run
#:   that should report it;
MAX_BREAKER_TIMEOUT_SECONDS = 86_400
#: * a count (a breaker threshold, replays, series per run, sandbox users) of a million
#:   is already more than any run makes;
MAX_COUNT = 1_000_000
#: * a request budget (per minute or per day) of a billion is "unlimited" for every plan.
MAX_REQUEST_LIMIT = 1_000_000_000


def _at_most(number: float, maximum: float, value: object, name: str, unit: str) -> None:
    """Refuse ``number`` above ``maximum`` in one sentence naming ``name`` and the bound."""
    if number > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}{unit}, got {shown(value)}")


def whole_number_at_least_one(
    value: object, name: str, what: str, *, maximum: int = MAX_COUNT, unit: str = ""
) -> int:
    """A count setting (a breaker threshold, a request limit): a whole number from 1 to
    ``maximum`` (of ``unit``, for the sentence: ``" seconds"``), or one sentence naming
    the variable ``name``."""
    count = parse_number(value, name, what, integer=True)
    if count < 1:
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    _at_most(count, maximum, value, name, unit)
    return int(count)


def positive_seconds(
    value: object, name: str, *, maximum: float = MAX_REQUEST_TIMEOUT_SECONDS
) -> float:
    """A timeout: a finite number of seconds > 0 and at most ``maximum``."""
    what = "a number of seconds greater than 0"
    seconds = parse_number(value, name, what, integer=False)
    if seconds <= 0:
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    _at_most(seconds, maximum, value, name, " seconds")
    return float(seconds)


def http_url_problem(text: str) -> str:
    """What is wrong with a base or callback URL, or "" when it is usable."""
    if not text:
        return "it is empty"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"it cannot be parsed: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"the scheme is {parts.scheme or 'missing'}"
    if not parts.hostname:
        return "it has no host"
    if any(c.isspace() or not c.isprintable() for c in text):
        return "it contains spaces or control characters"
    if parts.query or parts.fragment:
        return "a base URL takes no ?query or #fragment"
    return ""


def http_url(value: object, name: str) -> str:
    """An http(s) URL with a host, stripped, or one sentence naming ``name``."""
    text = str(value).strip() if isinstance(value, str) else ""
    problem = http_url_problem(text) if isinstance(value, str) else "it is not text"
    if problem:
        raise ValueError(f"{name} must be an http:// or https:// URL with a host, got "
                         f"{shown(value)} ({problem})")
    return text
