"""Marts (``assets/marts.py``) and ``marts_automation``, the sensor that builds them
from what landed upstream (``jobs.py``)."""

from dagster import Definitions, definitions

from dashtam_pipeline.assets.marts import build_mart_assets
from dashtam_pipeline.jobs import marts_automation


@definitions
def marts() -> Definitions:
    return Definitions(assets=build_mart_assets(), sensors=[marts_automation])
