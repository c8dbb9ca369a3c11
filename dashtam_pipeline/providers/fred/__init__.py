"""FRED / ALFRED: economic series and every vintage of their observations.

The folder is the whole provider: this declaration (discovered by
``dashtam_pipeline.registry.discover_providers``), its client, its sandbox routes.
"""

from __future__ import annotations

from dashtam_pipeline.registry import (
    Dataset,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderMetadata,
    ProviderSlug,
    RateLimit,
)

METADATA = ProviderMetadata(
    slug=ProviderSlug("fred"),
    display_name="FRED / ALFRED (St. Louis Fed)",
    category=ProviderCategory.ECONOMIC_DATA,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(ProviderCapability.ECONOMIC_SERIES,),
    required_settings=("fred_api_key",),
    datasets=(Dataset.FRED_SERIES, Dataset.FRED_OBSERVATIONS),
    env_prefix="FRED",
    default_base_url="https://api.stlouisfed.org/fred",
    default_timeout_seconds=10,
    rate_limits={"free": RateLimit(requests_per_minute=120)},
    default_tier="free",
    docs_url="https://fred.stlouisfed.org/docs/api/fred/",
    client="dashtam_pipeline.providers.fred.client:FredClient",
    sandbox_routes="dashtam_pipeline.providers.fred.sandbox:PROVIDER",
)
