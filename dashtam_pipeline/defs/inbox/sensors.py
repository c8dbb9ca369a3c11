"""The Chase inbox (``sensors/chase_inbox.py``): each CSV export dropped in
``CHASE_IMPORT_DIR`` becomes a partition and a run."""

from dagster import Definitions, definitions

from dashtam_pipeline.sensors.chase_inbox import chase_inbox_sensor


@definitions
def inbox() -> Definitions:
    return Definitions(sensors=[chase_inbox_sensor])
