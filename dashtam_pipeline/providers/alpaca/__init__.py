"""Alpaca Markets (API keys, the operator's or a user's own): accounts, positions and
transactions.

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
    slug=ProviderSlug("alpaca"),
    display_name="Alpaca Markets",
    category=ProviderCategory.BROKERAGE,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(
        ProviderCapability.ACCOUNTS,
        ProviderCapability.POSITIONS,
        ProviderCapability.TRANSACTIONS,
    ),
    required_settings=("alpaca_api_key_id", "alpaca_api_secret_key"),
    datasets=(Dataset.ACCOUNTS, Dataset.POSITIONS, Dataset.TRANSACTIONS),
    env_prefix="ALPACA",
    default_base_url="https://paper-api.alpaca.markets",
    default_timeout_seconds=10,
    rate_limits={"free": RateLimit(requests_per_minute=200, per=LimitScope.KEY)},
    default_tier="free",
    docs_url="https://docs.alpaca.markets",
    client="dashtam_pipeline.providers.alpaca.client:AlpacaClient",
    sandbox_routes="dashtam_pipeline.providers.alpaca.sandbox:PROVIDER",
    priority=20,
    accepts_user_keys=True,
)
