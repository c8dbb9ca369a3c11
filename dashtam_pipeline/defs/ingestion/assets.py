"""Ingestion: one external asset per provider, and the assets the registry generates
(``assets/factory.py``: one per dataset, fed by its providers' fallback chain)."""

from dagster import Definitions, definitions

from dashtam_pipeline.assets.factory import build_ingestion_assets
from dashtam_pipeline.assets.sources import provider_source_specs
from dashtam_pipeline.defs import settings_in_force


@definitions
def ingestion() -> Definitions:
    """Partitions follow the settings (symbols, FRED series): built at each load."""
    return Definitions(
        assets=[*provider_source_specs(), *build_ingestion_assets(settings_in_force())]
    )
