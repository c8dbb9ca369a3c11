"""Sensors that react to the world outside the schedules (files dropped in an inbox).

``INBOX_REGISTRARS`` maps a per-file partitions definition to the function that registers
its inbox's files as partitions, so ``dashtam materialize`` registers what is waiting
before it runs, exactly as the sensor would on its next tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dagster import DagsterInstance

from dashtam_pipeline.sensors import chase_inbox

INBOX_REGISTRARS: Mapping[str, Callable[[DagsterInstance], list[str]]] = {
    chase_inbox.PARTITIONS.name: chase_inbox.register_configured_inbox,
}
