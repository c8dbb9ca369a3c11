"""Failure recovery (``sensors/run_failure.py``, ``sensors/dlq_replay.py``): every failed
run classified, and pending dead letters replayed once their provider is healthy."""

from dagster import Definitions, definitions

from dashtam_pipeline.sensors.run_failure import build_recovery_sensors


@definitions
def recovery() -> Definitions:
    return Definitions(sensors=build_recovery_sensors())
