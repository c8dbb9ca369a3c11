"""Settings: exactly the environment variables of ``CONTRACT.md``, read from the process
environment and a ``.env`` file in the working directory (the environment wins).

Secrets are ``SecretStr`` so they never print in a repr, a log line or the Dagster UI.
Per-provider knobs follow the contract's ``<P>_`` prefix from the registry
(``ProviderMetadata.env_prefix``); ``ProviderSettings`` collects them for one provider, so
clients and resources never read the environment themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.registry import ProviderMetadata, ProviderSlug, get_provider_metadata
from dashtam_pipeline.symbols import to_canonical

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "JPM", "XOM", "BRK.B")
DEFAULT_FRED_SERIES = (
    "GDP", "CPIAUCSL", "UNRATE", "FEDFUNDS", "DGS10", "T10Y2Y", "PAYEMS", "INDPRO",
)
RIGHTS_PROFILES = ("basic", "pro")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Every variable of the contract's Environment table, with its default."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- the pipeline -----------------------------------------------------------------
    dashtam_data_dir: Path = Path("data")
    dagster_home: Path | None = None
    dashtam_sandbox: bool = False
    dashtam_state_url: str | None = None
    dashtam_secret_key: SecretStr | None = None
    dashtam_symbols: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SYMBOLS
    dashtam_fred_series: Annotated[tuple[str, ...], NoDecode] = DEFAULT_FRED_SERIES
    dashtam_news_queries: Annotated[tuple[str, ...], NoDecode] = ()
    dashtam_rights_profile: str = "basic"
    chase_import_dir: Path | None = None

    # --- providers: keys and base URLs -------------------------------------------------
    fmp_api_key: SecretStr | None = None
    fmp_base_url: str = "https://financialmodelingprep.com/stable"
    polygon_api_key: SecretStr | None = None
    polygon_base_url: str = "https://api.polygon.io"
    fred_api_key: SecretStr | None = None
    fred_base_url: str = "https://api.stlouisfed.org/fred"
    news_api_key: SecretStr | None = None
    news_base_url: str = "https://newsapi.org/v2"
    alpaca_api_key_id: SecretStr | None = None
    alpaca_api_secret_key: SecretStr | None = None
    alpaca_base_url: str = "https://paper-api.alpaca.markets"
    schwab_app_key: SecretStr | None = None
    schwab_app_secret: SecretStr | None = None
    schwab_base_url: str = "https://api.schwabapi.com"
    schwab_callback_url: str = "https://127.0.0.1:8182"

    # --- providers: timeouts and circuit breakers (<P>_...) ----------------------------
    fmp_timeout_seconds: float = 5
    polygon_timeout_seconds: float = 5
    fred_timeout_seconds: float = 10
    news_timeout_seconds: float = 3
    alpaca_timeout_seconds: float = 10
    schwab_timeout_seconds: float = 10
    fmp_circuit_breaker_threshold: int = 3
    fmp_circuit_breaker_timeout: float = 60
    polygon_circuit_breaker_threshold: int = 3
    polygon_circuit_breaker_timeout: float = 60
    fred_circuit_breaker_threshold: int = 3
    fred_circuit_breaker_timeout: float = 60
    news_circuit_breaker_threshold: int = 3
    news_circuit_breaker_timeout: float = 60
    alpaca_circuit_breaker_threshold: int = 3
    alpaca_circuit_breaker_timeout: float = 60
    schwab_circuit_breaker_threshold: int = 3
    schwab_circuit_breaker_timeout: float = 60

    # --- providers: license tier and its limits (<P>_LICENSE_TIER, overrides) ----------
    # The tier picks the registry's published limits; the two overrides replace them.
    fmp_license_tier: str | None = None
    polygon_license_tier: str | None = None
    fred_license_tier: str | None = None
    news_license_tier: str | None = None
    alpaca_license_tier: str | None = None
    schwab_license_tier: str | None = None
    fmp_requests_per_minute: int | None = None
    polygon_requests_per_minute: int | None = None
    fred_requests_per_minute: int | None = None
    news_requests_per_minute: int | None = None
    alpaca_requests_per_minute: int | None = None
    schwab_requests_per_minute: int | None = None
    fmp_requests_per_day: int | None = None
    polygon_requests_per_day: int | None = None
    fred_requests_per_day: int | None = None
    news_requests_per_day: int | None = None
    alpaca_requests_per_day: int | None = None
    schwab_requests_per_day: int | None = None

    # --- dead-letter queue ------------------------------------------------------------
    dashtam_dlq_max_replays: int = 3

    sandbox_data_seed: int = Field(
        default=42, validation_alias=AliasChoices("DASHTAM_SANDBOX_SEED", "sandbox_data_seed")
    )

    _split = field_validator(
        "dashtam_symbols", "dashtam_fred_series", "dashtam_news_queries", mode="before"
    )(_split_csv)

    @field_validator("dashtam_symbols", mode="after")
    @classmethod
    def _canonical_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(to_canonical(v) for v in value))

    @field_validator("dashtam_fred_series", mode="after")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.upper() for v in value))

    @field_validator("dashtam_rights_profile", mode="after")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in RIGHTS_PROFILES:
            raise ValueError(
                f"DASHTAM_RIGHTS_PROFILE={value!r} is not a known profile; use one of "
                f"{', '.join(RIGHTS_PROFILES)}"
            )
        return value

    # --- derived paths -----------------------------------------------------------------
    @cached_property
    def data_dir(self) -> Path:
        return self.dashtam_data_dir.expanduser().resolve()

    @property
    def dagster_home_dir(self) -> Path:
        return (self.dagster_home or self.data_dir / "dagster_home").expanduser().resolve()

    @property
    def state_url(self) -> str:
        return self.dashtam_state_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def chase_inbox(self) -> Path:
        return (self.chase_import_dir or self.data_dir / "inbox" / "chase").expanduser().resolve()

    @property
    def news_queries(self) -> tuple[str, ...]:
        """Explicit queries, or one query per symbol (the contract's default)."""
        return self.dashtam_news_queries or self.dashtam_symbols

    @property
    def options_allowed(self) -> bool:
        return self.dashtam_rights_profile == "pro"

    # --- per provider ------------------------------------------------------------------
    def provider(self, slug: ProviderSlug | str) -> ProviderSettings:
        """The settings one provider's client needs, resolved from the registry."""
        meta = get_provider_metadata(slug)
        prefix = (meta.env_prefix or "").lower()

        def knob(name: str, default: object) -> object:
            return getattr(self, f"{prefix}_{name}", default) if prefix else default

        secrets = {
            name: value
            for name in meta.required_settings
            if isinstance(value := getattr(self, name, None), SecretStr)
            and value.get_secret_value()
        }
        tier = str(knob("license_tier", None) or meta.default_tier or "")
        published = meta.rate_limits.get(tier)
        if tier and meta.rate_limits and published is None:
            raise ConfigurationError(
                f"{meta.env_prefix}_LICENSE_TIER={tier!r} is not a known {meta.display_name} "
                f"tier; use one of {', '.join(meta.rate_limits)}"
            )
        per_minute = knob("requests_per_minute", None)
        per_day = knob("requests_per_day", None)
        return ProviderSettings(
            meta=meta,
            tier=tier or None,
            requests_per_minute=(
                int(per_minute) if per_minute is not None  # type: ignore[call-overload]
                else (published.requests_per_minute if published else None)
            ),
            requests_per_day=(
                int(per_day) if per_day is not None  # type: ignore[call-overload]
                else (published.requests_per_day if published else None)
            ),
            base_url=str(knob("base_url", meta.default_base_url) or ""),
            timeout_seconds=float(knob("timeout_seconds", meta.default_timeout_seconds) or 10),
            breaker_threshold=int(knob("circuit_breaker_threshold", 3)),  # type: ignore[arg-type]
            breaker_timeout_seconds=float(knob("circuit_breaker_timeout", 60)),  # type: ignore[arg-type]
            secrets=secrets,
            sandbox=self.dashtam_sandbox,
        )

    def missing_settings(self, slug: ProviderSlug | str) -> list[str]:
        """Environment variables a provider needs that are unset (empty list: ready)."""
        meta = get_provider_metadata(slug)
        present = self.provider(slug).secrets
        missing = [name for name in meta.required_settings if name not in present]
        return [name.upper() for name in missing]


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's resolved configuration. ``secrets`` maps required-setting names to
    their values; it is the only place a client reads credentials from."""

    meta: ProviderMetadata
    tier: str | None
    requests_per_minute: int | None
    requests_per_day: int | None
    base_url: str
    timeout_seconds: float
    breaker_threshold: int
    breaker_timeout_seconds: float
    secrets: dict[str, SecretStr]
    sandbox: bool

    def secret(self, name: str) -> str:
        """The clear value of one secret, for building a request (never for logging)."""
        value = self.secrets.get(name)
        return value.get_secret_value() if value is not None else ""

    def secret_values(self) -> list[str]:
        """Every clear secret, for redaction."""
        return [v.get_secret_value() for v in self.secrets.values() if v.get_secret_value()]


def load_settings(**overrides: object) -> Settings:
    """Read settings now (environment and ``.env``); overrides win, for tests."""
    return Settings(**overrides)  # type: ignore[arg-type]
