"""Jobs and schedules (``jobs.py``): one job per domain, and the 02:00 nightly schedules
(one per partitioning of the ingestion assets)."""

from dagster import Definitions, definitions

from dashtam_pipeline.defs import settings_in_force
from dashtam_pipeline.jobs import build_nightly_schedules, domain_jobs


@definitions
def schedules() -> Definitions:
    """The FRED schedule asks for the configured series: built at each load."""
    return Definitions(
        jobs=domain_jobs(),
        schedules=build_nightly_schedules(settings_in_force().dashtam_fred_series),
    )
