"""Connections (``sensors/connection_partitions.py``): each brokerage connection in the
repository is a partition of its provider's assets, and a new one gets a first sync."""

from dagster import Definitions, definitions

from dashtam_pipeline.sensors.connection_partitions import build_connection_partitions_sensor


@definitions
def connection_partitions() -> Definitions:
    return Definitions(sensors=[build_connection_partitions_sensor()])
