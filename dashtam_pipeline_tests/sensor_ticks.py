"""The shape of a sensor tick's result as the tests read it.

``SensorDefinition.evaluate_tick`` returns Dagster's ``SensorExecutionData``, whose class is
only importable from ``dagster._core``; the tests name its public fields structurally
instead, so no private import is needed (``test_public_api.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from dagster import RunRequest


class SensorTick(Protocol):
    @property
    def run_requests(self) -> Sequence[RunRequest] | None: ...

    @property
    def skip_message(self) -> str | None: ...

    @property
    def cursor(self) -> str | None: ...

    @property
    def dynamic_partitions_requests(self) -> Sequence[Any] | None: ...
