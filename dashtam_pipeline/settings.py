"""Settings: exactly the environment variables of ``CONTRACT.md``, read from the process
environment and a ``.env`` file in the working directory (the environment wins).

Secrets are ``SecretStr`` so they never print in a repr, a log line or the Dagster UI.
Per-provider knobs follow the contract's ``<P>_`` prefix from the registry
(``ProviderMetadata.env_prefix``); ``ProviderSettings`` collects them for one provider, so
clients and resources never read the environment themselves.

Every value is checked when the settings are read, not when a run first uses it: a
timeout of ``-1`` or ``nan``, a breaker threshold of 0, an ``ftp://`` base URL or an empty
symbol list would otherwise surface minutes later, deep inside a run, as an httpx or
pandas traceback. ``load_settings`` turns a refusal into one ``ConfigurationError`` whose
message is one sentence per bad variable, naming it and what is wrong with the value
(never pydantic's multi-line dump, and never the value of a secret).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.registry import (
    LimitScope,
    ProviderMetadata,
    ProviderSlug,
    get_provider_metadata,
)
from dashtam_pipeline.symbols import to_canonical

#: The daily partitions' default first day (``DASHTAM_HISTORY_START``).
DEFAULT_HISTORY_START = dt.date(2024, 1, 1)
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "JPM", "XOM", "BRK.B")
DEFAULT_FRED_SERIES = (
    "GDP", "CPIAUCSL", "UNRATE", "FEDFUNDS", "DGS10", "T10Y2Y", "PAYEMS", "INDPRO",
)
RIGHTS_PROFILES = ("basic", "pro")
#: Where a run's steps execute (``DASHTAM_EXECUTOR``; ``executors.py`` builds them).
EXECUTORS = ("multiprocess", "celery")
#: Celery broker/backend URL schemes the deployment supports (Redis is the tested one).
_CELERY_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "rpc",
                   "db+postgresql", "db+postgresql+psycopg2")
#: Provider prefixes of the per-provider knobs (``<P>_TIMEOUT_SECONDS``...).
PROVIDER_PREFIXES = ("fmp", "polygon", "fred", "news", "alpaca", "schwab")
#: A canonical equity symbol: a letter, up to 9 more letters/digits, and an optional share
#: class after a dot (``BRK.B``); ``to_canonical`` has already turned ``BRK-B``/``BRK/B``
#: into that. Anything else (``AAPL;DROP``, ``../x``, spaces) would reach URLs and file names.
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?$")
#: A FRED series id as FRED spells them (upper-cased here): letters, digits, underscores.
FRED_SERIES_PATTERN = re.compile(r"^[A-Z0-9_]{1,30}$")
#: NewsAPI refuses a ``q`` longer than 500 characters.
MAX_NEWS_QUERY_LENGTH = 500
_TIMEOUT_FIELDS = tuple(f"{p}_timeout_seconds" for p in PROVIDER_PREFIXES)
_BREAKER_TIMEOUT_FIELDS = tuple(f"{p}_circuit_breaker_timeout" for p in PROVIDER_PREFIXES)
_THRESHOLD_FIELDS = tuple(f"{p}_circuit_breaker_threshold" for p in PROVIDER_PREFIXES)
_LIMIT_FIELDS = tuple(
    f"{p}_requests_per_{unit}" for p in PROVIDER_PREFIXES for unit in ("minute", "day")
)
_URL_FIELDS = (*(f"{p}_base_url" for p in PROVIDER_PREFIXES), "schwab_callback_url")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def shown(value: object, limit: int = 60) -> str:
    """How a refused value is quoted in a sentence: bare when it is one printable word
    (``got -1``), quoted otherwise (``got ''``, ``got 'a b'``), cut at ``limit``."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if not text or any(c.isspace() or not c.isprintable() or c in "'\"" for c in text):
        return repr(text)
    return text


def _variable(info: ValidationInfo) -> str:
    return (info.field_name or "").upper()


def _number(value: object, name: str, what: str, *, integer: bool) -> float | int:
    """Parse one numeric knob (from the environment it is a string) or say why not."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    if integer:
        if number != int(number):
            raise ValueError(f"{name} must be {what}, got {shown(value)}")
        return int(number)
    return number



def _whole_number_at_least_one(value: object, name: str, what: str) -> int:
    """A count setting (a breaker threshold, a request limit): a whole number >= 1, or one
    sentence naming the variable ``name``."""
    count = _number(value, name, what, integer=True)
    if count < 1:
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    return int(count)


SANDBOX_USERS_ENV = "DASHTAM_SANDBOX_USERS"
DEFAULT_SANDBOX_USERS = 3


def sandbox_user_count(value: object) -> int:
    """``DASHTAM_SANDBOX_USERS``: how many users the sandbox's brokerages know (a whole
    number >= 1), or one sentence naming the variable. A module function because the
    sandbox app reads it from the environment in every process that serves it, as well as
    ``Settings`` at start-up."""
    what = "a whole number of sandbox users, at least 1"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{SANDBOX_USERS_ENV} must be {what}, got an empty value")
    return _whole_number_at_least_one(value, SANDBOX_USERS_ENV, what)


class Settings(BaseSettings):
    """Every variable of the contract's Environment table, with its default."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    #: Values for names this class does not declare (a provider folder's own ``<P>_`` knobs
    #: and keys) given by a resource's config (``replaced``); they win over the environment.
    _given: dict[str, object] = PrivateAttr(default_factory=dict)

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
    #: First trading day of the daily (market, news) partitions: how far back a backfill
    #: of "all partitions" reaches.
    dashtam_history_start: dt.date = DEFAULT_HISTORY_START
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

    # --- execution: where steps run (README "Scaling out") ---------------------------
    dashtam_executor: str = "multiprocess"
    dashtam_celery_broker: SecretStr | None = None
    dashtam_celery_backend: SecretStr | None = None
    dashtam_celery_visibility_timeout: int = 3600

    sandbox_data_seed: int = Field(
        default=42, validation_alias=AliasChoices("DASHTAM_SANDBOX_SEED", "sandbox_data_seed")
    )
    #: users of the sandbox's Schwab and Alpaca, each with their own accounts (README
    #: "Many users in the sandbox")
    dashtam_sandbox_users: int = DEFAULT_SANDBOX_USERS

    _split = field_validator(
        "dashtam_symbols", "dashtam_fred_series", "dashtam_news_queries", mode="before"
    )(_split_csv)

    # --- validation: each refusal is one sentence naming the variable -------------------
    @field_validator("dashtam_symbols", mode="after")
    @classmethod
    def _canonical_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "DASHTAM_SYMBOLS must list at least one symbol (comma-separated, e.g. "
                "AAPL,MSFT,BRK.B), got none"
            )
        symbols = tuple(dict.fromkeys(to_canonical(v) for v in value))
        for symbol in symbols:
            if not SYMBOL_PATTERN.match(symbol):
                raise ValueError(
                    f"DASHTAM_SYMBOLS must be comma-separated ticker symbols such as AAPL or "
                    f"BRK.B (a letter, then letters or digits, an optional .CLASS), got "
                    f"{shown(symbol)}"
                )
        return symbols

    @field_validator("dashtam_fred_series", mode="after")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "DASHTAM_FRED_SERIES must list at least one FRED series id (comma-separated, "
                "e.g. GDP,UNRATE), got none"
            )
        series = tuple(dict.fromkeys(v.upper() for v in value))
        for series_id in series:
            if not FRED_SERIES_PATTERN.match(series_id):
                raise ValueError(
                    "DASHTAM_FRED_SERIES must be comma-separated FRED series ids (letters, "
                    f"digits and underscores, at most 30), got {shown(series_id)}"
                )
        return series

    @field_validator("dashtam_news_queries", mode="after")
    @classmethod
    def _plain_queries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for query in value:
            if len(query) > MAX_NEWS_QUERY_LENGTH or not query.isprintable():
                raise ValueError(
                    "DASHTAM_NEWS_QUERIES must be comma-separated queries of printable text, "
                    f"each at most {MAX_NEWS_QUERY_LENGTH} characters, got {shown(query)}"
                )
        return tuple(dict.fromkeys(value))

    @field_validator("dashtam_rights_profile", mode="before")
    @classmethod
    def _known_profile(cls, value: object) -> str:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in RIGHTS_PROFILES:
            raise ValueError(
                f"DASHTAM_RIGHTS_PROFILE must be one of {', '.join(RIGHTS_PROFILES)}, got "
                f"{shown(value)}"
            )
        return str(text)

    @field_validator(*_TIMEOUT_FIELDS, *_BREAKER_TIMEOUT_FIELDS, mode="before")
    @classmethod
    def _positive_seconds(cls, value: object, info: ValidationInfo) -> float:
        name = _variable(info)
        what = "a number of seconds greater than 0"
        seconds = _number(value, name, what, integer=False)
        if seconds <= 0:
            raise ValueError(f"{name} must be {what}, got {shown(value)}")
        return float(seconds)

    @field_validator(*_THRESHOLD_FIELDS, mode="before")
    @classmethod
    def _threshold(cls, value: object, info: ValidationInfo) -> int:
        return _whole_number_at_least_one(value, _variable(info),
                                          "a whole number of failures, at least 1")

    @field_validator("dashtam_celery_visibility_timeout", mode="before")
    @classmethod
    def _visibility(cls, value: object, info: ValidationInfo) -> int:
        return _whole_number_at_least_one(value, _variable(info),
                                          "a whole number of seconds, at least 1")

    @field_validator(*_LIMIT_FIELDS, "dashtam_dlq_max_replays", mode="before")
    @classmethod
    def _at_least_one(cls, value: object, info: ValidationInfo) -> int | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            if info.field_name == "dashtam_dlq_max_replays":
                raise ValueError("DASHTAM_DLQ_MAX_REPLAYS must be a whole number, at least 1, "
                                 "got an empty value")
            return None  # unset: the tier's published limit applies
        return _whole_number_at_least_one(value, _variable(info), "a whole number, at least 1")

    @field_validator(*_URL_FIELDS, mode="before")
    @classmethod
    def _http_url(cls, value: object, info: ValidationInfo) -> str:
        name = _variable(info)
        text = str(value).strip() if isinstance(value, str) else ""
        problem = _http_url_problem(text) if isinstance(value, str) else "it is not text"
        if problem:
            raise ValueError(f"{name} must be an http:// or https:// URL with a host, got "
                             f"{shown(value)} ({problem})")
        return text

    @field_validator("dashtam_state_url", mode="before")
    @classmethod
    def _state_url(cls, value: object) -> str | None:
        # The URL may carry a password: only its scheme is ever quoted back.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip()
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "sqlite" and text.startswith("sqlite:///") and len(text) > 10:
            return text
        if scheme in ("postgresql", "postgres"):
            try:
                has_host = bool(parts.hostname)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                has_host = False
            if has_host:
                return text
            raise ValueError("DASHTAM_STATE_URL must be a postgresql:// URL with a host and "
                             "a numeric port, e.g. postgresql://dashtam@db:5432/dashtam (the "
                             "value is not shown: it may hold a password)")
        raise ValueError(
            "DASHTAM_STATE_URL must be a sqlite:///PATH or postgresql://... URL, got one "
            f"{'with scheme ' + shown(scheme) if scheme else 'without a scheme'} (the rest "
            "is not shown: it may hold a password)"
        )

    @field_validator("dashtam_secret_key", mode="after")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so a typo fails every command at once, not a run's Schwab step;
        # the value is a secret and is never quoted.
        if value is None:
            return None
        from cryptography.fernet import Fernet

        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        try:
            for key in keys:
                Fernet(key.encode())
        except (ValueError, TypeError):
            keys = []
        if not keys:
            raise ValueError(
                "DASHTAM_SECRET_KEY must be one or more comma-separated Fernet keys (32 "
                "url-safe base64 bytes; generate one with: python -c 'from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'), "
                "got a value that is not one (not shown: it is a secret)"
            )
        return value

    @field_validator("dashtam_executor", mode="before")
    @classmethod
    def _known_executor(cls, value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if not text:
            return "multiprocess"
        if text not in EXECUTORS:
            raise ValueError(f"DASHTAM_EXECUTOR must be one of {', '.join(EXECUTORS)}, got "
                             f"{shown(value)}")
        return str(text)

    @field_validator("dashtam_celery_broker", "dashtam_celery_backend", mode="before")
    @classmethod
    def _celery_url(cls, value: object, info: ValidationInfo) -> object:
        # Broker URLs carry passwords: only the scheme is ever quoted back.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip() if isinstance(value, str) else ""
        scheme = urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme not in _CELERY_SCHEMES:
            raise ValueError(
                f"{_variable(info)} must be a Celery URL such as redis://HOST:6379/0 (schemes: "
                f"{', '.join(_CELERY_SCHEMES)}), got one "
                f"{'with scheme ' + shown(scheme) if scheme else 'without a scheme'} (the "
                "rest is not shown: it may hold a password)"
            )
        return text

    @model_validator(mode="after")
    def _celery_needs_a_broker(self) -> Settings:
        """Celery with no broker would fall back to dagster-celery's default
        (``pyamqp://guest@localhost``): a run that hangs instead of a refusal."""
        if self.dashtam_executor == "celery" and self.dashtam_celery_broker is None:
            raise ValueError("DASHTAM_EXECUTOR=celery needs DASHTAM_CELERY_BROKER, the Celery "
                             "broker URL every worker reads too (e.g. redis://HOST:6379/0)")
        return self

    @field_validator("dashtam_sandbox", mode="before")
    @classmethod
    def _flag(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("", "0", "false", "no", "off"):
                return False
            raise ValueError(f"DASHTAM_SANDBOX must be true or false, got {shown(value)}")
        return value

    @field_validator("dashtam_history_start", mode="before")
    @classmethod
    def _history_start(cls, value: object) -> dt.date:
        what = "a date (YYYY-MM-DD) from 1990-01-01 on"
        try:
            day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(f"DASHTAM_HISTORY_START must be {what}, got {shown(value)}") from None
        if day < dt.date(1990, 1, 1):
            raise ValueError(f"DASHTAM_HISTORY_START must be {what}, got {shown(value)}")
        return day

    @field_validator("sandbox_data_seed", mode="before")
    @classmethod
    def _seed(cls, value: object) -> int:
        what = "a whole number from 0 to 4294967295"
        seed = _number(value, "DASHTAM_SANDBOX_SEED", what, integer=True)
        if not 0 <= seed <= 0xFFFFFFFF:
            raise ValueError(f"DASHTAM_SANDBOX_SEED must be {what}, got {shown(value)}")
        return int(seed)

    @field_validator("dashtam_sandbox_users", mode="before")
    @classmethod
    def _sandbox_users(cls, value: object) -> int:
        return sandbox_user_count(value)

    @model_validator(mode="after")
    def _known_tiers(self) -> Settings:
        """A ``<P>_LICENSE_TIER`` must name a tier of that provider in the registry: the
        tier picks the rate limits, so a typo would silently run without any."""
        from dashtam_pipeline.registry import PROVIDER_REGISTRY

        for meta in PROVIDER_REGISTRY:
            prefix = (meta.env_prefix or "").lower()
            tier = getattr(self, f"{prefix}_license_tier", None) if prefix else None
            if tier and meta.rate_limits and tier not in meta.rate_limits:
                raise ValueError(
                    f"{meta.env_prefix}_LICENSE_TIER must be one of "
                    f"{', '.join(meta.rate_limits)} ({meta.display_name}'s tiers), got "
                    f"{shown(tier)}"
                )
        return self

    def replaced(self, **values: object) -> Settings:
        """These settings with ``values`` in place (a resource's config over the
        environment's), checked like the variables they replace: a bad one raises
        ``ConfigurationError`` with the same sentence. Names this class does not declare
        (a provider folder's own knobs and keys) are kept aside for ``provider()``."""
        declared = {k: v for k, v in values.items() if k in type(self).model_fields}
        copy = self
        if declared:
            try:
                copy = type(self)(**{**dict(self), **declared})
            except ValidationError as error:
                raise ConfigurationError(settings_error_sentence(error)) from None
        else:
            copy = self.model_copy()
        copy._given = {**self._given,
                       **{k: v for k, v in values.items() if k not in declared}}
        return copy

    # --- derived paths -----------------------------------------------------------------
    @cached_property
    def data_dir(self) -> Path:
        return self.dashtam_data_dir.expanduser().resolve()

    @property
    def dagster_home_dir(self) -> Path:
        return (self.dagster_home or self.data_dir / "dagster_home").expanduser().resolve()

    @property
    def celery_backend(self) -> str | None:
        """The Celery result backend: ``DASHTAM_CELERY_BACKEND``, else the broker itself when
        it is Redis (one service for both), else Celery's ``rpc://`` over the broker."""
        if self.dashtam_celery_backend is not None:
            return self.dashtam_celery_backend.get_secret_value()
        if self.dashtam_celery_broker is None:
            return None
        broker = self.dashtam_celery_broker.get_secret_value()
        return broker if broker.split(":", 1)[0].lower() in ("redis", "rediss") else "rpc://"

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
            if not prefix:
                return default
            field_name = f"{prefix}_{name}"
            if field_name in self._given:
                return self._given[field_name]
            if field_name in type(self).model_fields:
                return getattr(self, field_name)
            # a provider folder's own <P>_... knob: from the environment, else the default
            return os.environ.get(field_name.upper(), "").strip() or default

        secrets = {
            name: value
            for name in meta.required_settings
            if isinstance(value := self._required_setting(name), SecretStr)
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
            limit_scope=published.per if published else LimitScope.APP,
        )

    def _required_setting(self, name: str) -> object:
        """A provider's required setting: the field when ``Settings`` declares it, else the
        upper-case environment variable. Why the fallback: a provider folder brings its own
        keys (``METADATA.required_settings``) without an edit to this module; such keys are
        read from the process environment only (not from ``.env``)."""
        if name in self._given:
            given = self._given[name]
            return given if isinstance(given, SecretStr) else SecretStr(str(given))
        if name in type(self).model_fields:
            return getattr(self, name)
        raw = os.environ.get(name.upper(), "").strip()
        return SecretStr(raw) if raw else None

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
    #: Whose budget the rate limits are: the platform's (``APP``) or each key's (``KEY``).
    limit_scope: LimitScope = LimitScope.APP
    #: The id of the user's own key this client spends (``None``: the platform's).
    user_key_id: str | None = None

    def limit_key(self) -> str:
        """The name the state store counts this client's requests under: the provider
        for an app-wide budget or the platform's own key; ``<slug>:key-<digest>`` for a
        per-key budget spent with a user's own key (a digest of the key id, never the
        key itself, so the store holds no secret)."""
        slug = self.meta.slug.value
        if self.limit_scope is not LimitScope.KEY or not self.user_key_id:
            return slug
        digest = hashlib.sha256(self.user_key_id.encode()).hexdigest()[:16]
        return f"{slug}:key-{digest}"


    def secret(self, name: str) -> str:
        """The clear value of one secret, for building a request (never for logging)."""
        value = self.secrets.get(name)
        return value.get_secret_value() if value is not None else ""

    def secret_values(self) -> list[str]:
        """Every clear secret, for redaction."""
        return [v.get_secret_value() for v in self.secrets.values() if v.get_secret_value()]


def _http_url_problem(text: str) -> str:
    """What is wrong with a base or callback URL, or "" when it is usable."""
    if not text:
        return "it is empty"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"it cannot be parsed: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"the scheme is {parts.scheme or 'missing'}"
    if not parts.hostname:
        return "it has no host"
    if any(c.isspace() or not c.isprintable() for c in text):
        return "it contains spaces or control characters"
    if parts.query or parts.fragment:
        return "a base URL takes no ?query or #fragment"
    return ""


def settings_error_sentence(error: ValidationError) -> str:
    """A pydantic ``ValidationError`` over ``Settings`` → one sentence per bad variable.

    Our own validators already wrote the sentence (``ctx['error']``); pydantic's own type
    errors (a ``bool`` that is neither, an unknown field type) get a generic one that
    names the variable and the input, except for secrets, whose values are never quoted.
    """
    sentences: list[str] = []
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc", ())).upper() or "a setting"
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, ValueError) and str(cause):
            sentence = str(cause)
        else:
            field = Settings.model_fields.get(name.lower())
            secret = field is not None and "SecretStr" in str(field.annotation)
            value = "a value that is not shown" if secret else shown(item.get("input"))
            sentence = f"{name} has an unusable value: {item.get('msg', 'invalid')}, got {value}"
        if sentence not in sentences:
            sentences.append(sentence)
    return "; ".join(sentences) or "the settings are invalid"


def load_settings(**overrides: object) -> Settings:
    """Read settings now (environment and ``.env``); overrides win, for tests.

    Raises ``ConfigurationError`` (one sentence per bad variable) instead of pydantic's
    ``ValidationError``: every command, sensor and code-location load reads settings
    here, so every one of them refuses a bad value the same way.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(settings_error_sentence(error)) from None
