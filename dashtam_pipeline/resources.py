"""Dagster resources: the only place assets get I/O from.

``ProviderResource`` (one per registry entry, key ``provider_<slug>``) builds that
provider's client from the current settings; ``StorageResource`` opens the lake and the
warehouse under ``DASHTAM_DATA_DIR``. Secrets are read from the environment when a step
runs (``settings.py``), never placed in resource config, so they never render in the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from dashtam_pipeline.clients import build_client
from dashtam_pipeline.registry import PROVIDER_REGISTRY, ProviderSlug
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.warehouse import Warehouse


def provider_resource_key(slug: ProviderSlug | str) -> str:
    return f"provider_{ProviderSlug(slug).value}"


class ProviderResource(ConfigurableResource):
    """Gives assets a configured client for one provider (see ``clients.build_client``)."""

    slug: str

    def client(
        self, settings: Settings | None = None, *, run_id: str | None = None,
        connection_id: str | None = None,
    ) -> Any:
        return build_client(ProviderSlug(self.slug), settings or load_settings(), run_id=run_id,
                            connection_id=connection_id)


class StorageResource(ConfigurableResource):
    """The Parquet lake (the record) and the DuckDB warehouse (views for analysts).

    ``data_dir`` overrides ``DASHTAM_DATA_DIR`` (tests use it); empty means the setting.
    """

    data_dir: str = ""

    def root(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else load_settings().data_dir

    def lake(self) -> Lake:
        return Lake(self.root() / "lake")

    def warehouse(self) -> Warehouse:
        root = self.root()
        return Warehouse(root / "warehouse.duckdb", root / "lake")


def build_resources() -> dict[str, Any]:
    """Every resource the generated assets may ask for, keyed as they ask."""
    resources: dict[str, Any] = {"storage": StorageResource()}
    for meta in PROVIDER_REGISTRY:
        resources[provider_resource_key(meta.slug)] = ProviderResource(slug=meta.slug.value)
    return resources
