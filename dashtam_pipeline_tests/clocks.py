"""The fake clock tests inject wherever the pipeline or the sandbox asks for the time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashtam_pipeline.resources import (
    CLOCK_RESOURCE_KEY,
    STATE_RESOURCE_KEY,
    STORAGE_RESOURCE_KEY,
    ClockResource,
    build_resources,
)


class FakeClock:
    """A clock that stands still until a test moves it (``advance(5)`` or
    ``advance(minutes=31)``). Starts at ``now`` (default: the real time, to the second)."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> None:
        self.now += dt.timedelta(seconds=seconds, **delta)

    def resource(self) -> ClockResource:
        """This clock as the ``clock`` resource of the sensors and jobs."""
        return ClockResource.following(self)

    def resources(self) -> dict[str, Any]:
        """This clock and the environment's storage and state store, for
        ``build_definitions(resources=...)`` and ``build_sensor_context(resources=...)``."""
        return {CLOCK_RESOURCE_KEY: self.resource(), **sensor_resources()}


def sensor_resources() -> dict[str, Any]:
    """The ``storage`` and ``state`` resources every sensor takes, as the environment
    configures them (a test's temporary data directory)."""
    built = build_resources()
    return {key: built[key] for key in (STORAGE_RESOURCE_KEY, STATE_RESOURCE_KEY)}
