"""Chase CSV exports dropped in an inbox: transactions, one import run per file.

The folder is the whole provider: this declaration (discovered by
``dashtam_pipeline.registry.discover_providers``), its client, its sandbox routes.
"""

from __future__ import annotations

from dashtam_pipeline.registry import (
    Dataset,
    Partitioning,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderMetadata,
    ProviderSlug,
)

METADATA = ProviderMetadata(
    slug=ProviderSlug("chase_file"),
    display_name="Chase (CSV file import)",
    category=ProviderCategory.BANK,
    auth_type=ProviderAuthType.FILE_IMPORT,
    capabilities=(ProviderCapability.TRANSACTIONS,),
    required_settings=(),
    datasets=(Dataset.TRANSACTIONS,),
    env_prefix=None,
    default_base_url=None,
    default_timeout_seconds=None,
    pool_limit=1,
    partitioning_overrides={Dataset.TRANSACTIONS: Partitioning.INBOX_FILE},
    client="dashtam_pipeline.providers.chase_file.client:ChaseFileClient",
)
