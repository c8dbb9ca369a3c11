"""The Dagster code location: everything the UI, the daemon and the CLI load.

Kept tiny on purpose: assets come from the registry (``assets/factory.py``), marts from
``assets/marts.py``, resources from ``resources.py``, jobs/schedules from ``jobs.py``,
sensors (inbox, run-failure recovery, DLQ replay) from ``sensors/``.
"""

from __future__ import annotations

from dagster import Definitions

from dashtam_pipeline.assets.factory import build_ingestion_assets
from dashtam_pipeline.assets.marts import build_mart_assets
from dashtam_pipeline.jobs import build_nightly_schedules, domain_jobs, marts_automation
from dashtam_pipeline.resources import build_resources
from dashtam_pipeline.sensors.chase_inbox import chase_inbox_sensor
from dashtam_pipeline.sensors.run_failure import build_recovery_sensors
from dashtam_pipeline.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or load_settings()
    return Definitions(
        assets=[*build_ingestion_assets(settings), *build_mart_assets()],
        resources=build_resources(),
        jobs=domain_jobs(),
        schedules=build_nightly_schedules(settings.dashtam_fred_series),
        sensors=[marts_automation, chase_inbox_sensor, *build_recovery_sensors()],
    )


def load_definitions() -> Definitions:
    """The definitions for the settings in force now (what ``dashtam materialize`` runs:
    every run and step process builds them afresh from its environment)."""
    return build_definitions()


defs = build_definitions()
