"""Dagster resources: the only place assets get I/O from.

``ProviderResource`` (one per registry entry, key ``provider_<slug>``) builds that
provider's client from the current settings; ``StorageResource`` opens the lake and the
warehouse under ``DASHTAM_DATA_DIR``; ``ClockResource`` (key ``clock``) is the time the
sensors and the credential refresh job decide on. Secrets are read from the environment
when a step runs (``settings.py``), never placed in resource config, so they never
render in the UI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from dashtam_pipeline.clients import build_client
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.registry import PROVIDER_REGISTRY, ProviderSlug, get_provider_metadata
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.warehouse import Warehouse


def provider_resource_key(slug: ProviderSlug | str) -> str:
    return f"provider_{ProviderSlug(slug).value}"


class ProviderResource(ConfigurableResource):
    """Gives assets a configured client for one provider (see ``clients.build_client``).

    Its non-secret knobs are config, so the launchpad shows them and a run may override
    them; left unset they are the settings in force when the step runs (``<P>_BASE_URL``,
    ``<P>_TIMEOUT_SECONDS``, else the registry's defaults). An override is checked like the
    environment variable it replaces (one sentence naming it). Keys are never config: the
    client reads them from the environment (``settings.py``), so they never render in the UI.
    """

    slug: str
    base_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the provider's API (http:// or https://, a path prefix allowed). "
            "Unset: <P>_BASE_URL, else the registry's default."
        ),
    )
    timeout_seconds: float | None = Field(
        default=None,
        description="Per-request timeout in seconds. Unset: <P>_TIMEOUT_SECONDS, else the "
        "registry's default.",
    )

    def setting_overrides(self) -> dict[str, object]:
        """The settings this resource's config replaces, by ``Settings`` field name."""
        given = {"base_url": self.base_url, "timeout_seconds": self.timeout_seconds}
        given = {name: value for name, value in given.items() if value is not None}
        if not given:
            return {}
        prefix = get_provider_metadata(self.slug).env_prefix
        if not prefix:
            raise ConfigurationError(
                f"{provider_resource_key(self.slug)} has no {' or '.join(sorted(given))} to "
                "configure: it calls no API"
            )
        return {f"{prefix.lower()}_{name}": value for name, value in given.items()}

    def configured(self, settings: Settings | None = None) -> Settings:
        """``settings`` (the environment's when None) with this resource's config applied."""
        overrides = self.setting_overrides()
        if not overrides:
            return settings or load_settings()
        try:
            return load_settings(**overrides)
        except ConfigurationError as error:
            raise ConfigurationError(
                f"{error} (set in the config of the {provider_resource_key(self.slug)} resource)"
            ) from None

    def client(
        self, settings: Settings | None = None, *, run_id: str | None = None,
        connection_id: str | None = None,
    ) -> Any:
        return build_client(ProviderSlug(self.slug), self.configured(settings), run_id=run_id,
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


CLOCK_RESOURCE_KEY = "clock"


class ClockResource(ConfigurableResource):
    """The time sensors and jobs decide on (credential expiry, token refresh, breaker
    timeouts and quota resets of the DLQ replay): the wall clock, in UTC.

    Tests replace it with ``ClockResource.following(fake_clock)`` (through
    ``build_definitions(resources={"clock": ...})`` or
    ``build_sensor_context(resources={"clock": ...})``), so time moves when they say.
    """

    @classmethod
    def following(cls, source: Callable[[], dt.datetime]) -> ClockResource:
        """A clock that asks ``source`` for the time (a test's fake clock). A subclass,
        not a field: Dagster rebuilds a resource from its config when it binds it, and a
        callable is no config."""
        follower = type(
            f"{cls.__name__}Following",
            (cls,),
            {"__module__": cls.__module__, "now": lambda _self: source()},
        )
        return follower()

    def now(self) -> dt.datetime:
        from dashtam_pipeline import connections  # looked up per call: a patch is honoured

        return connections.utcnow()


def build_resources() -> dict[str, Any]:
    """Every resource the generated assets, sensors and jobs may ask for, keyed as they ask."""
    resources: dict[str, Any] = {"storage": StorageResource(), CLOCK_RESOURCE_KEY: ClockResource()}
    for meta in PROVIDER_REGISTRY:
        resources[provider_resource_key(meta.slug)] = ProviderResource(slug=meta.slug.value)
    return resources
