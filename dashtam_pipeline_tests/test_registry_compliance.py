"""Self-enforcing registry compliance: these fail when a provider or dataset is added
without everything the pipeline needs (client methods, schema, asset, settings).

A provider is a folder, ``dashtam_pipeline/providers/<slug>/``; ``folder_problems`` lists
what one lacks in sentences naming the file to write, and ``TestProviderFolders`` fails
with that list. The snapshot counts at the bottom fail on purpose when a provider is added:
update them together with the README's provider table.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.registry import (
    CAPABILITY_METHODS,
    DATASETS,
    FALLBACK_ORDER,
    PROVIDER_REGISTRY,
    PROVIDERS_PACKAGE,
    Dataset,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderMetadata,
    ProviderSlug,
    Sourcing,
    fetch_method_name,
    get_all_provider_slugs,
    get_dataset_spec,
    get_oauth_providers,
    get_provider_metadata,
    get_providers_by_category,
    get_statistics,
    load_attribute,
)
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.settings import Settings

PROVIDERS = [pytest.param(p, id=p.slug.value) for p in PROVIDER_REGISTRY]


def _loads(target: str | None) -> tuple[object | None, str | None]:
    """(the object a ``module:attribute`` path names, or why it cannot be loaded)."""
    if not target or ":" not in target:
        return None, "is not a 'module:attribute' path"
    try:
        return load_attribute(target), None
    except (ImportError, AttributeError) as error:
        return None, f"cannot be loaded ({error})"


def folder_problems(meta: ProviderMetadata) -> list[str]:
    """What ``providers/<slug>/`` lacks, one sentence each (empty: the folder is complete).

    Why sentences: the person adding a provider reads this list, not the test's code, so
    each names the file or the ``METADATA`` field to write.
    """
    slug = meta.slug.value
    folder = f"providers/{slug}/"
    problems: list[str] = []
    spec = importlib.util.find_spec(f"{PROVIDERS_PACKAGE}.{slug}")
    if spec is None or not spec.submodule_search_locations:
        return [f"{folder} is not a package (add {folder}__init__.py declaring METADATA)"]
    here = Path(next(iter(spec.submodule_search_locations)))
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", meta.env_prefix or "X"):
        problems.append(f"{folder}__init__.py: env_prefix {meta.env_prefix!r} is not upper case")
    for name in meta.required_settings:
        if name != name.lower() or not name.isidentifier():
            problems.append(f"{folder}__init__.py: required setting {name!r} must be a "
                            "lower-case identifier (its variable is the upper-case spelling)")
    # the client: every dataset's fetch method, with the (self, request) signature
    cls, why = _loads(meta.client)
    if cls is None:
        problems.append(f"{folder}__init__.py: METADATA.client {meta.client!r} {why}; write "
                        f"{folder}client.py with the client class and name it there")
    else:
        for dataset in meta.datasets:
            method = getattr(cls, fetch_method_name(dataset), None)
            if not callable(method):
                problems.append(f"{folder}client.py: {cls.__name__} has no "  # type: ignore[attr-defined]
                                f"{fetch_method_name(dataset)}(self, request) for {dataset.value}")
            elif list(inspect.signature(method).parameters) != ["self", "request"]:
                problems.append(f"{folder}client.py: {fetch_method_name(dataset)} must take "
                                "(self, request)")
        for capability in meta.capabilities:
            for method_name in CAPABILITY_METHODS[capability]:
                claimed = capability is ProviderCapability.ECONOMIC_SERIES or any(
                    fetch_method_name(d) == method_name for d in meta.datasets)
                if claimed and not callable(getattr(cls, method_name, None)):
                    problems.append(f"{folder}client.py: claims {capability.value} but has "
                                    f"no {method_name}()")
    for dataset in meta.datasets:
        if get_dataset_spec(dataset).capability not in meta.capabilities:
            problems.append(f"{folder}__init__.py: serves {dataset.value} without the "
                            f"{get_dataset_spec(dataset).capability.value} capability")
    # HTTP providers: real base URL, limits, and routes the sandbox answers (make demo)
    if meta.auth_type is not ProviderAuthType.FILE_IMPORT:
        if not (meta.default_base_url or "").startswith("https://"):
            problems.append(f"{folder}__init__.py: default_base_url must be the real https URL")
        if not (meta.default_timeout_seconds and meta.env_prefix):
            problems.append(f"{folder}__init__.py: needs default_timeout_seconds and env_prefix")
        if not (meta.rate_limits and meta.default_tier in meta.rate_limits):
            problems.append(f"{folder}__init__.py: rate_limits must hold default_tier")
        routes, why = _loads(meta.sandbox_routes)
        if routes is None:
            problems.append(f"{folder}__init__.py: METADATA.sandbox_routes "
                            f"{meta.sandbox_routes!r} {why}; write {folder}sandbox.py with "
                            "a sandbox.routing.Provider so DASHTAM_SANDBOX answers it")
        elif getattr(routes, "slug", None) != slug:
            problems.append(f"{folder}sandbox.py: its Provider's slug must be {slug!r}")
    if meta.is_oauth:
        if not (meta.token_endpoint and meta.authorize_endpoint):
            problems.append(f"{folder}__init__.py: an OAuth provider needs token_endpoint "
                            "and authorize_endpoint")
        flow, why = _loads(meta.oauth_flow)
        missing = [m for m in ("authorize_url", "missing_app_credentials",
                               "code_from_redirect_url", "exchange_code", "refresh_tokens")
                   if flow is not None and not callable(getattr(flow, m, None))]
        if flow is None:
            problems.append(f"{folder}__init__.py: METADATA.oauth_flow {meta.oauth_flow!r} "
                            f"{why}; write {folder}oauth.py with a connections.OAuthFlow")
        elif missing or not isinstance(getattr(flow, "short_name", None), str):
            problems.append(f"{folder}oauth.py: the flow lacks "
                            f"{', '.join(missing) or 'short_name'} (see connections.OAuthFlow)")
    if not (here / "__init__.py").is_file():
        problems.append(f"{folder}__init__.py is missing")
    if not any(p.is_file() for p in (here / "payloads").rglob("*")):
        problems.append(f"{folder}payloads/ holds no recorded response: add the real "
                        "provider's answers (and errors) there, each one read by a test")
    return problems


class TestProviderFolders:
    @pytest.mark.parametrize("meta", PROVIDERS)
    def test_folder_is_complete(self, meta) -> None:
        problems = folder_problems(meta)
        assert not problems, f"providers/{meta.slug.value}/ is missing:\n  " + "\n  ".join(
            problems)

    def test_problems_are_named(self) -> None:
        """An incomplete declaration gets sentences naming what to write."""
        from dataclasses import replace

        broken = replace(get_provider_metadata("fmp"), client=None, sandbox_routes=None,
                         default_tier="gold")
        problems = "\n".join(folder_problems(broken))
        assert "providers/fmp/client.py" in problems
        assert "providers/fmp/sandbox.py" in problems
        assert "default_tier" in problems


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
    def test_required_settings_are_read(self, meta, monkeypatch) -> None:
        """Each required setting is read (a Settings field, or the provider's own variable
        from the environment): set them all and nothing is reported missing."""
        for name in meta.required_settings:
            monkeypatch.setenv(name.upper(), "x")
        assert Settings().missing_settings(meta.slug) == []


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
