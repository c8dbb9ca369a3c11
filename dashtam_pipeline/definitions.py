"""The Dagster code location: everything the UI, the daemon and the CLI load.

Kept tiny on purpose: assets come from the registry (``assets/factory.py``), marts from
``assets/marts.py``, resources from ``resources.py``, jobs/schedules from ``jobs.py``,
sensors (inbox, run-failure recovery, DLQ replay, credentials) from ``sensors/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dagster import Definitions

from dashtam_pipeline.assets.factory import build_ingestion_assets
from dashtam_pipeline.assets.marts import build_mart_assets
from dashtam_pipeline.assets.sources import provider_source_specs
from dashtam_pipeline.executors import job_executor
from dashtam_pipeline.jobs import build_nightly_schedules, domain_jobs, marts_automation
from dashtam_pipeline.resources import build_resources
from dashtam_pipeline.sensors.chase_inbox import chase_inbox_sensor
from dashtam_pipeline.sensors.credentials import build_credential_jobs, build_credential_sensors
from dashtam_pipeline.sensors.run_failure import build_recovery_sensors
from dashtam_pipeline.settings import Settings, load_settings


def build_definitions(
    settings: Settings | None = None, *, clock: Callable[[], dt.datetime] | None = None
) -> Definitions:
    """Everything the code location holds. ``clock`` replaces the wall clock of the
    sensors that decide on time (credential expiry, refresh job, DLQ replay): tests move
    time with it."""
    settings = settings or load_settings()
    timed = {"clock": clock} if clock is not None else {}
    return Definitions(
        assets=[*provider_source_specs(), *build_ingestion_assets(settings), *build_mart_assets()],
        resources=build_resources(),
        executor=job_executor(settings),  # DASHTAM_EXECUTOR: multiprocess or celery
        jobs=[*domain_jobs(), *build_credential_jobs(**timed)],
        schedules=build_nightly_schedules(settings.dashtam_fred_series),
        sensors=[
            marts_automation,
            chase_inbox_sensor,
            *build_recovery_sensors(**timed),
            *build_credential_sensors(**timed),
        ],
    )


def load_definitions() -> Definitions:
    """The definitions for the settings in force now (what ``dashtam materialize`` runs:
    every run and step process builds them afresh from its environment)."""
    return build_definitions()


defs = build_definitions()
