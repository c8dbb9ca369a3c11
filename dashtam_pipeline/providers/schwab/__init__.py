"""Charles Schwab (OAuth): accounts, positions and transactions of a connected user.

The folder is the whole provider: this declaration (discovered by
``dashtam_pipeline.registry.discover_providers``), its client, its sandbox routes.
"""

from __future__ import annotations

from dashtam_pipeline.registry import (
    Dataset,
    LimitScope,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderMetadata,
    ProviderSlug,
    RateLimit,
)

METADATA = ProviderMetadata(
    slug=ProviderSlug("schwab"),
    display_name="Charles Schwab",
    category=ProviderCategory.BROKERAGE,
    auth_type=ProviderAuthType.OAUTH,
    capabilities=(
        ProviderCapability.ACCOUNTS,
        ProviderCapability.POSITIONS,
        ProviderCapability.TRANSACTIONS,
    ),
    required_settings=("schwab_app_key", "schwab_app_secret"),
    datasets=(Dataset.ACCOUNTS, Dataset.POSITIONS, Dataset.TRANSACTIONS),
    env_prefix="SCHWAB",
    default_base_url="https://api.schwabapi.com",
    default_timeout_seconds=10,
    rate_limits={"individual": RateLimit(requests_per_minute=120, per=LimitScope.APP)},
    default_tier="individual",
    token_endpoint="/v1/oauth/token",
    authorize_endpoint="/v1/oauth/authorize",
    docs_url="https://developer.schwab.com",
    client="dashtam_pipeline.providers.schwab.client:SchwabClient",
    sandbox_routes="dashtam_pipeline.providers.schwab.sandbox:PROVIDER",
    oauth_flow="dashtam_pipeline.providers.schwab.oauth:FLOW",
    priority=10,
    symbol_class_separator="/",
    url_settings={"callback_url": "https://127.0.0.1:8182"},  # SCHWAB_CALLBACK_URL
)
