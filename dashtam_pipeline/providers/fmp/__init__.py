"""Financial Modeling Prep (the ``stable`` API): quotes, daily bars, fundamentals and
earnings; the first provider tried for quotes and bars.

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
    slug=ProviderSlug("fmp"),
    display_name="Financial Modeling Prep",
    category=ProviderCategory.MARKET_DATA,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(
        ProviderCapability.QUOTES,
        ProviderCapability.DAILY_BARS,
        ProviderCapability.FUNDAMENTALS,
        ProviderCapability.EARNINGS,
    ),
    required_settings=("fmp_api_key",),
    datasets=(Dataset.QUOTES, Dataset.DAILY_BARS, Dataset.FUNDAMENTALS, Dataset.EARNINGS),
    env_prefix="FMP",
    default_base_url="https://financialmodelingprep.com/stable",
    default_timeout_seconds=5,
    rate_limits={
        "free": RateLimit(requests_per_day=250),
        "starter": RateLimit(requests_per_minute=300),
        "premium": RateLimit(requests_per_minute=750),
    },
    default_tier="free",
    docs_url="https://site.financialmodelingprep.com/developer/docs/stable",
    client="dashtam_pipeline.providers.fmp.client:FMPClient",
    sandbox_routes="dashtam_pipeline.providers.fmp.sandbox:PROVIDER",
    priority=10,
    symbol_class_separator="-",
)
