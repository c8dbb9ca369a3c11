"""Fault injection: make the next requests to a route fail, stall, or lose their socket.

A fault matches a regex (``re.search``) against the request's full path, e.g.
``/fmp/stable/quote`` or just ``^/polygon/``, and applies to the next ``count`` matching
requests (``None``: until cleared). Chaos tests drive it in-process or over HTTP.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

try:  # in-process (WSGI transport) mode: surface as httpx's own "server disconnected"
    from httpx import RemoteProtocolError as _DisconnectBase
except ImportError:  # pragma: no cover - httpx is a project dependency
    _DisconnectBase = ConnectionResetError  # type: ignore[assignment,misc]


class ConnectionResetFault(_DisconnectBase):  # type: ignore[misc,valid-type]
    """Raised by the app for a ``reset_connection`` fault. Over HTTP the server catches it
    and closes the socket without a response; through ``httpx.WSGITransport`` it reaches
    the client as a transport error, which is what a dropped connection looks like."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"Server disconnected without sending a response (sandbox fault on {path})"
        )


@dataclass
class Fault:
    """One injected fault. ``remaining`` counts down; ``None`` never runs out."""

    id: int
    route_regex: str
    status: int | None = None
    delay_seconds: float = 0.0
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    remaining: int | None = None
    reset_connection: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.route_regex)

    @property
    def replaces_response(self) -> bool:
        return self.status is not None or self.body is not None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route_regex": self.route_regex,
            "status": self.status,
            "delay_seconds": self.delay_seconds,
            "body": self.body,
            "headers": self.headers,
            "count": self.remaining,
            "reset_connection": self.reset_connection,
        }


class FaultSet:
    """The active faults, first added first matched (thread-safe)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        route_regex: str,
        *,
        status: int | None = None,
        delay_seconds: float = 0,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        count: int | None = None,
        reset_connection: bool = False,
    ) -> Fault:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for no limit)")
        if delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        with self._lock:
            fault = Fault(next(self._ids), route_regex, status, float(delay_seconds), body,
                          dict(headers or {}), count, reset_connection)
            self._faults.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> Fault | None:
        """The first fault matching ``path``, counted as used."""
        with self._lock:
            for fault in self._faults:
                if fault.pattern.search(path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
            return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]
