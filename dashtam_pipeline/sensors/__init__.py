"""Sensors that react to the world outside the schedules (files dropped in an inbox,
connections made and dropped by the Dashtam app).

``PARTITION_REGISTRARS`` maps a dynamic partitions definition to the function that brings
it in step with the world (an inbox's files, a provider's connections), so ``dashtam
materialize`` registers what is there before it runs, exactly as the sensor would on its
next tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dagster import DagsterInstance

from dashtam_pipeline.sensors import chase_inbox
from dashtam_pipeline.sensors import connection_partitions as connection_sensor


def _registrars() -> dict[str, Callable[[DagsterInstance], object]]:
    registrars: dict[str, Callable[[DagsterInstance], object]] = {
        chase_inbox.PARTITIONS.name: chase_inbox.register_configured_inbox,
    }
    for name in connection_sensor.connection_partitions_names():
        registrars[name] = connection_sensor.register_connections
    return registrars


PARTITION_REGISTRARS: Mapping[str, Callable[[DagsterInstance], object]] = _registrars()
