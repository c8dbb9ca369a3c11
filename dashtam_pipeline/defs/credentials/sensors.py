"""Credentials (``sensors/credentials.py``): OAuth tokens renewed ahead of expiry by
``credential_refresh_job``, re-logins announced, a catch-up run once a connection is back."""

from dagster import Definitions, definitions

from dashtam_pipeline.sensors.credentials import build_credential_jobs, build_credential_sensors


@definitions
def credentials() -> Definitions:
    return Definitions(jobs=build_credential_jobs(), sensors=build_credential_sensors())
