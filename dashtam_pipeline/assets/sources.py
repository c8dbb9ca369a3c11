"""The provider APIs as external assets: where every number in the lineage comes from.

Each registered provider is an external asset (``providers/<slug>``, group ``providers``)
upstream of every dataset it serves, so the lineage reads provider → dataset → mart and
"where does this number come from" is one click. A dataset with a fallback chain has each
of its providers upstream, and its ``fallback_order`` metadata says in which order they are
tried (quotes and daily bars: FMP, then Polygon).

Nothing materializes a provider: Dagster cannot re-run an API. Its health is recorded as
``AssetObservation``s instead, one per provider by every ingestion step that asked it: the
breaker state and quota from the shared state store, and how the step's attempt went
(served, skipped with its reason, or the error kind) with its calls and latency. The
provider's page then shows its latest health beside the datasets it feeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import AssetKey, AssetObservation, AssetSpec, MetadataValue

from dashtam_pipeline.registry import (
    DATASETS,
    PROVIDER_REGISTRY,
    ProviderMetadata,
    providers_serving,
)

PROVIDERS_GROUP = "providers"


def provider_asset_key(slug: str) -> AssetKey:
    """``providers/<slug>``: the external asset of one provider's API."""
    return AssetKey([PROVIDERS_GROUP, slug])


def _description(meta: ProviderMetadata) -> str:
    served = [d.table for d in DATASETS if meta in providers_serving(d.dataset)]
    where = (
        f"its API at `{meta.default_base_url}`" if meta.default_base_url
        else "files dropped in its inbox (`CHASE_IMPORT_DIR`)"
    )
    settings = ", ".join(f"`{v}`" for v in meta.required_env_vars) or "nothing"
    return (
        f"{meta.display_name}: {where}. Serves {', '.join(served) or 'no dataset'}. "
        f"Needs {settings}. Its health (circuit breaker, quota, last attempt) is observed "
        "by every ingestion run that asks it: see this asset's events."
    )


def provider_source_specs() -> list[AssetSpec]:
    """One external asset per registered provider (in registry order)."""
    return [
        AssetSpec(
            key=provider_asset_key(meta.slug.value),
            group_name=PROVIDERS_GROUP,
            description=_description(meta),
            kinds={"api"} if meta.default_base_url else {"csv"},
            tags={"dashtam/provider": meta.slug.value},
            metadata={
                "display_name": meta.display_name,
                "category": meta.category.value,
                "auth_type": meta.auth_type.value,
                "base_url": MetadataValue.url(meta.default_base_url)
                if meta.default_base_url else "(file import)",
                "required_settings": ", ".join(meta.required_env_vars) or "none",
                "docs": MetadataValue.url(meta.docs_url) if meta.docs_url else "",
            },
        )
        for meta in PROVIDER_REGISTRY
    ]


def fallback_order_text(providers: Sequence[ProviderMetadata]) -> str:
    """``fmp → polygon``: the order a dataset's providers are tried in."""
    return " → ".join(p.slug.value for p in providers)


def provider_observation(
    meta: ProviderMetadata,
    *,
    dataset_table: str,
    attempt: Mapping[str, str] | None,
    health: Mapping[str, Any] | None,
    calls: Mapping[str, Any],
) -> AssetObservation:
    """One provider's health as one ingestion step saw it: ``last_outcome`` (served,
    skipped, not_asked or an error kind), its detail, the breaker and quota, the calls."""
    outcome = attempt["outcome"] if attempt else "not_asked"
    metadata: dict[str, Any] = {
        "last_outcome": MetadataValue.text(outcome),
        "last_dataset": MetadataValue.text(dataset_table),
    }
    if attempt and attempt.get("detail"):
        metadata["last_detail"] = MetadataValue.text(attempt["detail"])
    for name, value in (health or {}).items():
        if value is not None:
            metadata[name] = (
                MetadataValue.int(value) if isinstance(value, int) and not isinstance(value, bool)
                else MetadataValue.text(str(value))
            )
    for name, value in calls.items():
        metadata[name] = (
            MetadataValue.float(float(value)) if "latency" in name
            else MetadataValue.int(int(value))
        )
    return AssetObservation(
        asset_key=provider_asset_key(meta.slug.value),
        description=f"{meta.display_name} for {dataset_table}: {outcome}",
        metadata=metadata,
    )
