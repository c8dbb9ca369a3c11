"""Polygon.io (Massive): quotes and daily bars when FMP fails, and the options chain.

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
    slug=ProviderSlug("polygon"),
    display_name="Polygon.io (Massive)",
    category=ProviderCategory.MARKET_DATA,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(
        ProviderCapability.QUOTES,
        ProviderCapability.DAILY_BARS,
        ProviderCapability.OPTIONS,
    ),
    required_settings=("polygon_api_key",),
    datasets=(Dataset.QUOTES, Dataset.DAILY_BARS, Dataset.OPTIONS_CHAIN),
    env_prefix="POLYGON",
    default_base_url="https://api.polygon.io",
    default_timeout_seconds=5,
    rate_limits={
        "free": RateLimit(requests_per_minute=5),
        "starter": RateLimit(),
    },
    default_tier="free",
    pool_limit=1,
    docs_url="https://polygon.io/docs",
    client="dashtam_pipeline.providers.polygon.client:PolygonClient",
    sandbox_routes="dashtam_pipeline.providers.polygon.sandbox:PROVIDER",
    priority=20,
)
