"""Dagster resources: the only place assets and sensors get configuration and I/O from.

- ``provider_<slug>`` (``ProviderResource``, one per registry entry): the provider's
  client, with its knobs (base URL, timeout, breaker, tier, rate limits) and its keys as
  config. Keys are ``EnvVar``s: Dagster reads them when a run or tick starts and shows
  only the variable's name, never the value.
- ``storage`` (``StorageResource``): the lake and the warehouse under the data directory.
- ``state`` (``StateStoreResource``): where shared state lives (connections and their
  encrypted credentials, the dead-letter queue, breakers, rate limits, lake write locks).
- ``clock`` (``ClockResource``): the time sensors and jobs decide on; tests replace it.

Each field left unset is the setting in force when the step or tick runs (the
environment's and ``.env``'s, ``settings.py``), so the launchpad shows what a run may
override and the environment stays the one place an operator sets things.
``settings_from(...)`` is the ``Settings`` those resources amount to.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from dashtam_pipeline.clients import build_client
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.provider_settings import KNOBS
from dashtam_pipeline.registry import (
    PROVIDER_REGISTRY,
    ProviderMetadata,
    ProviderSlug,
    get_provider_metadata,
)
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.locks import table_lock_for
from dashtam_pipeline.storage.warehouse import Warehouse


def provider_resource_key(slug: ProviderSlug | str) -> str:
    return f"provider_{ProviderSlug(slug).value}"


def _from_environment(name: str) -> str | None:
    """``EnvVar(name)`` when the variable is set now (Dagster resolves it when a run or
    tick starts), else None: the setting in force then (``.env`` included) applies."""
    return EnvVar(name) if os.environ.get(name, "").strip() else None


def _resolved(value: object) -> object:
    """A field's value: an ``EnvVar`` the resource still holds (used outside a run, e.g.
    by the CLI, where Dagster has not bound it) is read now, never taken for its name."""
    return value.get_value() if isinstance(value, EnvVar) else value


class _SettingsConfig(ConfigurableResource):
    """A resource whose config fields replace settings (``setting_overrides``)."""

    def setting_overrides(self) -> dict[str, object]:
        """The settings this resource's config replaces, by ``Settings`` field name."""
        return {}

    def _described(self) -> str:
        return "resource"

    def configured(self, settings: Settings | None = None) -> Settings:
        """``settings`` (the environment's when None) with this resource's config applied;
        a bad value is the environment variable's sentence, saying where it was set."""
        base = settings or load_settings()
        overrides = self.setting_overrides()
        if not overrides:
            return base
        try:
            return base.replaced(**overrides)
        except ConfigurationError as error:
            raise ConfigurationError(
                f"{error} (set in the config of the {self._described()})") from None


def settings_from(*resources: _SettingsConfig) -> Settings:
    """The environment's settings with each resource's config applied in turn: what a
    step or a tick decides on."""
    current = load_settings()
    for resource in resources:
        current = resource.configured(current)
    return current


class ProviderResource(_SettingsConfig):
    """Gives assets a configured client for one provider (see ``clients.build_client``).

    Every knob is config, so the launchpad shows it and a run may override it; left unset
    it is the setting in force when the step runs (``<P>_BASE_URL``...), else the
    registry's default. An override is checked like the environment variable it replaces
    (one sentence naming it). ``ProviderResource.for_provider`` adds one field per key the
    provider requires (``fmp_api_key``...), given as ``EnvVar``s.
    """

    slug: str
    base_url: str | None = Field(
        default=None,
        description="Base URL of the provider's API (http:// or https://, a path prefix "
        "allowed). Unset: <P>_BASE_URL, else the registry's default.",
    )
    timeout_seconds: float | None = Field(
        default=None,
        description="Per-request timeout in seconds. Unset: <P>_TIMEOUT_SECONDS, else the "
        "registry's default.",
    )
    circuit_breaker_threshold: int | None = Field(
        default=None,
        description="Consecutive failures that open the provider's shared circuit breaker. "
        "Unset: <P>_CIRCUIT_BREAKER_THRESHOLD, else 3.",
    )
    circuit_breaker_timeout: float | None = Field(
        default=None,
        description="Seconds an open breaker waits before one trial call. Unset: "
        "<P>_CIRCUIT_BREAKER_TIMEOUT, else 60.",
    )
    license_tier: str | None = Field(
        default=None,
        description="The plan the keys are on; its published rate limits apply. Unset: "
        "<P>_LICENSE_TIER, else the registry's default tier.",
    )
    requests_per_minute: int | None = Field(
        default=None,
        description="Overrides the tier's requests per minute. Unset: "
        "<P>_REQUESTS_PER_MINUTE, else the tier's.",
    )
    requests_per_day: int | None = Field(
        default=None,
        description="Overrides the tier's requests per day. Unset: <P>_REQUESTS_PER_DAY, "
        "else the tier's.",
    )

    @classmethod
    def for_provider(cls, meta: ProviderMetadata) -> ProviderResource:
        """The resource of one registry entry: its keys are ``EnvVar``s when set."""
        resource_class = _resource_class(meta.slug)
        keys = {name: value for name in meta.required_settings
                if (value := _from_environment(name.upper())) is not None}
        return resource_class(slug=meta.slug.value, **keys)

    def key_names(self) -> tuple[str, ...]:
        return get_provider_metadata(self.slug).required_settings

    def _described(self) -> str:
        return f"{provider_resource_key(self.slug)} resource"

    def setting_overrides(self) -> dict[str, object]:
        knobs = {name: getattr(self, name) for name in KNOBS}  # each replaces <P>_<KNOB>
        knobs = {name: value for name, value in knobs.items() if value is not None}
        keys = {name: value for name in self.key_names()
                if (value := _resolved(getattr(self, name, None))) is not None}
        if not knobs:
            return keys
        prefix = get_provider_metadata(self.slug).env_prefix
        if not prefix:
            raise ConfigurationError(
                f"{provider_resource_key(self.slug)} has no {' or '.join(sorted(knobs))} to "
                "configure: it calls no API"
            )
        return {**{f"{prefix.lower()}_{name}": value for name, value in knobs.items()}, **keys}

    def client(
        self, settings: Settings | None = None, *, run_id: str | None = None,
        connection_id: str | None = None,
    ) -> Any:
        return build_client(ProviderSlug(self.slug), self.configured(settings), run_id=run_id,
                            connection_id=connection_id)


@cache
def _resource_class(slug: ProviderSlug) -> type[ProviderResource]:
    """``ProviderResource`` for one provider: its ``slug`` fixed (a run's config need not
    repeat it) and one optional field per key it requires (named as the setting, e.g.
    ``fmp_api_key``), so the UI lists the provider's keys by name."""
    meta = get_provider_metadata(slug)
    names = meta.required_settings
    fields: dict[str, Any] = {
        name: Field(default=None, description=f"{name.upper()}, from the environment "
                    "(an EnvVar: Dagster shows its name, never its value).")
        for name in names
    }
    fields["slug"] = Field(default=slug.value, description="The provider (registry slug).")
    return type(  # a real subclass: Dagster rebuilds a resource from its class and config
        "".join(part.title() for part in slug.value.split("_")) + "Resource",
        (ProviderResource,),
        {"__module__": __name__,
         "__annotations__": {"slug": "str", **dict.fromkeys(names, "str | None")},
         **fields},
    )


STORAGE_RESOURCE_KEY = "storage"
STATE_RESOURCE_KEY = "state"


class StorageResource(_SettingsConfig):
    """The Parquet lake (the record) and the DuckDB warehouse (views for analysts).

    ``data_dir`` overrides ``DASHTAM_DATA_DIR`` (tests use it); empty means the setting.
    """

    data_dir: str = Field(
        default="",
        description="Where the lake, the warehouse and the inbox live. Empty: "
        "DASHTAM_DATA_DIR, else ./data.",
    )

    def _described(self) -> str:
        return f"{STORAGE_RESOURCE_KEY} resource"

    def setting_overrides(self) -> dict[str, object]:
        return {"dashtam_data_dir": self.data_dir} if self.data_dir else {}

    def root(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else load_settings().data_dir

    def lake(self, settings: Settings | None = None) -> Lake:
        """The lake; with ``settings`` (a step's ``settings_from``), its writers exclude
        each other through that state store's lock (PostgreSQL's across hosts), else
        through the one the environment's state store names."""
        if settings is None:
            return Lake(self.root() / "lake")
        return Lake(settings.lake_dir, table_lock=table_lock_for(settings.state_url))

    def warehouse(self, settings: Settings | None = None) -> Warehouse:
        """The warehouse; with ``settings``, its lake locks as ``lake(settings)`` does."""
        if settings is None:
            root = self.root()
            return Warehouse(root / "warehouse.duckdb", root / "lake")
        return Warehouse(settings.warehouse_path, settings.lake_dir,
                         table_lock=table_lock_for(settings.state_url))


class StateStoreResource(_SettingsConfig):
    """Where the state every process shares lives: connections and their encrypted
    credentials, the dead-letter queue, circuit breakers, rate-limit and quota counters,
    and the lake's write locks (``state/store.py``). SQLite under the data directory for
    one machine; PostgreSQL when runs spread over hosts.

    ``url`` and ``secret_key`` are ``EnvVar``s when their variables are set (a PostgreSQL
    URL may carry a password; the key decrypts every token), so the UI shows their names
    only.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state store. Unset: DASHTAM_STATE_URL, else "
        "SQLite in the data directory.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key(s) the connection credentials are encrypted with. Unset: "
        "DASHTAM_SECRET_KEY, else the data directory's .secret_key (one machine only).",
    )
    dlq_max_replays: int | None = Field(
        default=None,
        description="Replays of a dead letter before it waits for an operator. Unset: "
        "DASHTAM_DLQ_MAX_REPLAYS, else 3.",
    )

    @classmethod
    def from_environment(cls) -> StateStoreResource:
        return cls(url=_from_environment("DASHTAM_STATE_URL"),
                   secret_key=_from_environment("DASHTAM_SECRET_KEY"))

    def _described(self) -> str:
        return f"{STATE_RESOURCE_KEY} resource"

    def setting_overrides(self) -> dict[str, object]:
        given = {"dashtam_state_url": _resolved(self.url),
                 "dashtam_secret_key": _resolved(self.secret_key),
                 "dashtam_dlq_max_replays": self.dlq_max_replays}
        return {name: value for name, value in given.items() if value is not None}


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
    resources: dict[str, Any] = {
        STORAGE_RESOURCE_KEY: StorageResource(),
        STATE_RESOURCE_KEY: StateStoreResource.from_environment(),
        CLOCK_RESOURCE_KEY: ClockResource(),
    }
    for meta in PROVIDER_REGISTRY:
        resources[provider_resource_key(meta.slug)] = ProviderResource.for_provider(meta)
    return resources
