"""Self-enforcing registry compliance: these fail when a provider or dataset is added
without everything the pipeline needs (client methods, schema, asset, settings).

The snapshot counts at the bottom fail on purpose when a provider is added: update them
together with the README's provider table.
"""

from __future__ import annotations

import inspect

import pytest

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.clients import client_class
from dashtam_pipeline.registry import (
    CAPABILITY_METHODS,
    DATASETS,
    FALLBACK_ORDER,
    PROVIDER_REGISTRY,
    Dataset,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderSlug,
    Sourcing,
    fetch_method_name,
    get_all_provider_slugs,
    get_dataset_spec,
    get_oauth_providers,
    get_provider_metadata,
    get_providers_by_category,
    get_statistics,
)
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.settings import Settings

PROVIDERS = [pytest.param(p, id=p.slug.value) for p in PROVIDER_REGISTRY]


class TestRegistryCompleteness:
    def test_slugs_are_unique(self) -> None:
        slugs = [p.slug for p in PROVIDER_REGISTRY]
        assert len(slugs) == len(set(slugs))

    def test_builtin_slug_constants_are_registered(self) -> None:
        builtin = {v for v in vars(ProviderSlug).values() if isinstance(v, ProviderSlug)}
        assert builtin <= {p.slug for p in PROVIDER_REGISTRY}

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_display_name_capabilities_settings(self, meta) -> None:
        assert meta.display_name.strip(), f"{meta.slug} has no display name"
        assert meta.capabilities, f"Provider {meta.slug} has no capabilities defined"
        assert isinstance(meta.required_settings, tuple)
        assert meta.datasets, f"{meta.slug} serves no dataset"

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_required_settings_are_settings_fields(self, meta) -> None:
        for name in meta.required_settings:
            assert name in Settings.model_fields, (
                f"{meta.slug}: required setting {name!r} is not a field of Settings"
            )
        if meta.env_prefix:
            prefix = meta.env_prefix.lower()
            for knob in ("base_url", "timeout_seconds", "circuit_breaker_threshold",
                         "circuit_breaker_timeout"):
                assert f"{prefix}_{knob}" in Settings.model_fields, (
                    f"{meta.slug}: Settings lacks {prefix}_{knob} "
                    f"({meta.env_prefix}_{knob.upper()})"
                )

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_every_capability_has_client_methods(self, meta) -> None:
        cls = client_class(meta.slug)
        for capability in meta.capabilities:
            for method in CAPABILITY_METHODS[capability]:
                if capability is ProviderCapability.ECONOMIC_SERIES or any(
                    fetch_method_name(d) == method for d in meta.datasets
                ):
                    assert callable(getattr(cls, method, None)), (
                        f"{cls.__name__} claims {capability.value} but has no {method}()"
                    )

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_every_dataset_has_a_fetch_method_and_matching_capability(self, meta) -> None:
        cls = client_class(meta.slug)
        for dataset in meta.datasets:
            spec = get_dataset_spec(dataset)
            assert spec.capability in meta.capabilities, (
                f"{meta.slug} serves {dataset.value} without the {spec.capability.value} capability"
            )
            method = getattr(cls, fetch_method_name(dataset), None)
            assert callable(method), f"{cls.__name__} has no {fetch_method_name(dataset)}()"
            assert list(inspect.signature(method).parameters) == ["self", "request"]

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_every_provider_has_a_client(self, meta) -> None:
        assert meta.client, f"{meta.slug} declares no client"
        assert inspect.isclass(client_class(meta.slug))

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_oauth_providers_have_token_endpoints(self, meta) -> None:
        if meta.auth_type is ProviderAuthType.OAUTH:
            assert meta.token_endpoint and meta.authorize_endpoint

    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_http_providers_have_base_url_and_timeout(self, meta) -> None:
        if meta.auth_type is not ProviderAuthType.FILE_IMPORT:
            assert meta.default_base_url and meta.default_base_url.startswith("https://")
            assert meta.default_timeout_seconds and meta.env_prefix
            assert meta.rate_limits and meta.default_tier in meta.rate_limits


class TestDatasets:
    def test_every_dataset_has_spec_schema_and_asset(self) -> None:
        assert {d.dataset for d in DATASETS} == set(Dataset)
        assert set(SCHEMAS) == set(Dataset)
        asset_datasets = {s.dataset.dataset for s in ingestion_asset_specs()}
        assert asset_datasets == set(Dataset)

    @pytest.mark.parametrize("spec", DATASETS, ids=lambda s: s.dataset.value)
    def test_key_and_bucket_are_schema_columns(self, spec) -> None:
        columns = column_names(SCHEMAS[spec.dataset])
        assert set(spec.key) <= set(columns)
        assert spec.lake_bucket in columns

    @pytest.mark.parametrize("spec", DATASETS, ids=lambda s: s.dataset.value)
    def test_every_dataset_is_served(self, spec) -> None:
        served_by = [p.slug for p in PROVIDER_REGISTRY if spec.dataset in p.datasets]
        assert served_by, f"no provider serves {spec.dataset.value}"
        if spec.sourcing is Sourcing.FALLBACK:
            assert set(FALLBACK_ORDER[spec.dataset]) == set(served_by)
        else:
            assert spec.dataset not in FALLBACK_ORDER
            # each connection is its own source of truth: the key says which one
            assert "connection_id" in spec.key, "per-provider: connection_id in the key"

    def test_fmp_then_polygon_for_quotes_and_bars(self) -> None:
        assert FALLBACK_ORDER[Dataset.QUOTES] == (ProviderSlug.FMP, ProviderSlug.POLYGON)
        assert FALLBACK_ORDER[Dataset.DAILY_BARS] == (ProviderSlug.FMP, ProviderSlug.POLYGON)

    def test_asset_keys_are_unique(self) -> None:
        keys = [s.key for s in ingestion_asset_specs()]
        assert len(keys) == len(set(keys))


class TestHelpers:
    def test_get_provider_metadata(self) -> None:
        meta = get_provider_metadata("schwab")
        assert meta.slug is ProviderSlug.SCHWAB and meta.display_name == "Charles Schwab"
        assert get_provider_metadata(ProviderSlug.FRED).env_prefix == "FRED"

    def test_unknown_provider_lists_supported(self) -> None:
        with pytest.raises(ValueError) as info:
            get_provider_metadata("fidelity")
        message = str(info.value)
        assert "fidelity" in message
        for slug in get_all_provider_slugs():
            assert slug.value in message

    def test_oauth_providers(self) -> None:
        assert get_oauth_providers() == {ProviderSlug.SCHWAB}

    def test_by_category(self) -> None:
        brokerages = [p.slug for p in get_providers_by_category(ProviderCategory.BROKERAGE)]
        assert brokerages == [ProviderSlug.SCHWAB, ProviderSlug.ALPACA]
        assert [p.slug for p in get_providers_by_category("bank")] == [ProviderSlug.CHASE_FILE]

    def test_all_slugs_in_registry_order(self) -> None:
        assert get_all_provider_slugs() == [p.slug for p in PROVIDER_REGISTRY]


class TestSnapshot:
    """Fails when a provider is added without updating these numbers (and the README)."""

    def test_statistics(self) -> None:
        assert get_statistics() == {
            "total_providers": 7,
            "oauth_providers": 1,
            "total_datasets": 11,
            "category_market_data": 2,
            "category_economic_data": 1,
            "category_news": 1,
            "category_brokerage": 2,
            "category_bank": 1,
            "auth_api_key": 5,
            "auth_oauth": 1,
            "auth_file_import": 1,
        }

    def test_generated_asset_count(self) -> None:
        # 8 fallback datasets + 3 brokerage datasets for schwab and alpaca + chase transactions
        assert len(ingestion_asset_specs()) == 15
