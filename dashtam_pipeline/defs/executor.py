"""The executor every job runs its steps on (``executor.py``): ``DASHTAM_EXECUTOR`` picks
Dagster's multiprocess executor or dagster-celery's (``executors.job_executor``)."""

from dagster import Definitions, definitions

from dashtam_pipeline.defs import settings_in_force
from dashtam_pipeline.executors import job_executor


@definitions
def executor() -> Definitions:
    return Definitions(executor=job_executor(settings_in_force()))
