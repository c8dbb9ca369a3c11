"""NewsAPI: articles per symbol query.

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
    slug=ProviderSlug("newsapi"),
    display_name="NewsAPI",
    category=ProviderCategory.NEWS,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(ProviderCapability.NEWS,),
    required_settings=("news_api_key",),
    datasets=(Dataset.NEWS_ARTICLES,),
    env_prefix="NEWS",
    default_base_url="https://newsapi.org/v2",
    default_timeout_seconds=3,
    rate_limits={
        "developer": RateLimit(requests_per_day=100),
        "business": RateLimit(requests_per_day=250_000),
    },
    default_tier="developer",
    pool_limit=1,
    docs_url="https://newsapi.org/docs",
    client="dashtam_pipeline.providers.newsapi.client:NewsApiClient",
    sandbox_routes="dashtam_pipeline.providers.newsapi.sandbox:PROVIDER",
)
