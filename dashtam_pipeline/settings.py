"""Settings: exactly the environment variables of ``CONTRACT.md``, read from the process
environment and a ``.env`` file in the working directory (the environment wins).

Secrets are ``SecretStr`` so they never print in a repr, a log line or the Dagster UI.
This module holds what is not per provider. A provider's knobs and keys (the contract's
``<P>_`` variables and ``ProviderMetadata.required_settings``) are named by the registry and
read by ``provider_settings.py``; ``Settings.provider(slug)`` resolves them into a
``ProviderSettings``, so clients and resources never read the environment themselves.

Every value is checked when the settings are read, not when a run first uses it: a
timeout of ``-1`` or ``nan``, a breaker threshold of 0, an ``ftp://`` base URL or an empty
symbol list would otherwise surface minutes later, deep inside a run, as an httpx or
pandas traceback. ``load_settings`` turns a refusal into one ``ConfigurationError`` whose
message is one sentence per bad variable, naming it and what is wrong with the value
(never pydantic's multi-line dump, and never the value of a secret).
"""

from __future__ import annotations

import datetime as dt
import re
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
from dashtam_pipeline.private_files import make_private_dirs
from dashtam_pipeline.provider_settings import (
    ProviderSettings,
    read_dotenv,
    read_environment,
    resolve,
    setting_names,
)
from dashtam_pipeline.registry import PROVIDER_REGISTRY, ProviderSlug, get_provider_metadata
from dashtam_pipeline.setting_values import parse_number, shown, whole_number_at_least_one
from dashtam_pipeline.symbols import to_canonical

#: The daily partitions' default first day (``DASHTAM_HISTORY_START``).
DEFAULT_HISTORY_START = dt.date(2024, 1, 1)
#: Series per FRED backfill run: enough that the per-run cost (~1 s) is amortized and series
#: are fetched concurrently, few enough that a backfill of hundreds of series shows progress
#: run by run (UI and CLI), bounds a run's memory, and one bad run is cheap to redo.
DEFAULT_FRED_SERIES_PER_RUN = 25
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
#: A canonical equity symbol: a letter, up to 9 more letters/digits, and an optional share
#: class after a dot (``BRK.B``); ``to_canonical`` has already turned ``BRK-B``/``BRK/B``
#: into that. Anything else (``AAPL;DROP``, ``../x``, spaces) would reach URLs and file names.
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?$")
#: A FRED series id as FRED spells them (upper-cased here): letters, digits, underscores.
FRED_SERIES_PATTERN = re.compile(r"^[A-Z0-9_]{1,30}$")
#: NewsAPI refuses a ``q`` longer than 500 characters.
MAX_NEWS_QUERY_LENGTH = 500
#: ``DASHTAM_DATA_DIR``'s default (relative to the working directory, as the contract says).
DEFAULT_DATA_DIR = Path("data")
#: ``DASHTAM_CELERY_VISIBILITY_TIMEOUT``'s bound: Celery re-delivers a task not acknowledged
#: within it, so it must outlast the longest step (hours), but beyond 30 days a lost task
#: is never re-delivered at all, and a value like 1e23 overflows the broker's integer.
MAX_VISIBILITY_TIMEOUT_SECONDS = 30 * 86_400


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _variable(info: ValidationInfo) -> str:
    return (info.field_name or "").upper()


def blank_as_unset(value: object) -> object:
    """A path setting's value with an empty or whitespace-only one as unset (``None``).

    Why: ``Path("")`` is ``.``, the working directory. ``CHASE_IMPORT_DIR=`` (a line left
    empty in ``.env``) would make the working directory the Chase inbox, whose files the
    import moves to quarantine; ``DASHTAM_DATA_DIR=`` would write the lake and the state
    store into it. An empty value means "not set", so the contract's default applies."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def data_dir_path(value: object) -> Path:
    """``DASHTAM_DATA_DIR`` as the absolute folder it names: ``./data`` when unset or
    blank. ``Settings.data_dir`` and the CLI's log folder (which must work when the
    settings are what failed) both resolve it here, so they never disagree."""
    given = blank_as_unset(value)
    return Path(str(given) if given is not None else DEFAULT_DATA_DIR).expanduser().resolve()


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
    return whole_number_at_least_one(value, SANDBOX_USERS_ENV, what)


class Settings(BaseSettings):
    """Every variable of the contract's Environment table, with its default."""

    model_config = SettingsConfigDict(
        env_file=".env",
        # utf-8-sig: a UTF-8 .env saved with a byte-order mark (Windows editors) reads the
        # same, instead of its first variable's name silently starting with U+FEFF
        env_file_encoding="utf-8-sig",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    #: Provider settings (``fmp_timeout_seconds``, ``fmp_api_key``...) given by a
    #: resource's config or ``load_settings(...)`` (``replaced``); they win over the
    #: environment's. And each provider's resolved settings, once asked for.
    _given: dict[str, object] = PrivateAttr(default_factory=dict)
    _providers: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)

    # --- the pipeline -----------------------------------------------------------------
    dashtam_data_dir: Path = DEFAULT_DATA_DIR
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
    #: FRED series per backfill run (the FRED assets' ``BackfillPolicy``): a run rewrites
    #: every hash bucket its series fall in, so a first backfill of thousands of series is
    #: cheaper in larger runs (bench/README.md 1e).
    dashtam_fred_series_per_run: int = DEFAULT_FRED_SERIES_PER_RUN
    chase_import_dir: Path | None = None

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

    @field_validator("dashtam_celery_visibility_timeout", mode="before")
    @classmethod
    def _visibility(cls, value: object, info: ValidationInfo) -> int:
        return whole_number_at_least_one(value, _variable(info),
                                          "a whole number of seconds, at least 1",
                                          maximum=MAX_VISIBILITY_TIMEOUT_SECONDS,
                                          unit=" seconds")

    @field_validator("dashtam_data_dir", "dagster_home", "chase_import_dir", mode="before")
    @classmethod
    def _path(cls, value: object, info: ValidationInfo) -> object:
        """Blank is unset (``blank_as_unset``: the field's default, which derives
        ``DAGSTER_HOME`` and ``CHASE_IMPORT_DIR`` from the data dir); a ``~user`` that
        names no user is refused here rather than when a run first opens the folder."""
        given = blank_as_unset(value)
        if given is None:
            return cls.model_fields[info.field_name or ""].default
        if isinstance(given, str | Path):
            try:
                Path(given).expanduser()
            except RuntimeError:
                raise ValueError(f"{_variable(info)} must be a folder path, got "
                                 f"{shown(given)} (its ~user is not a user here)") from None
        return given

    @field_validator("dashtam_fred_series_per_run", mode="before")
    @classmethod
    def _series_per_run(cls, value: object, info: ValidationInfo) -> int:
        return whole_number_at_least_one(value, _variable(info), "a whole number, at least 1")

    @field_validator("dashtam_dlq_max_replays", mode="before")
    @classmethod
    def _at_least_one(cls, value: object, info: ValidationInfo) -> int:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("DASHTAM_DLQ_MAX_REPLAYS must be a whole number, at least 1, "
                             "got an empty value")
        return whole_number_at_least_one(value, _variable(info), "a whole number, at least 1")

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
        seed = parse_number(value, "DASHTAM_SANDBOX_SEED", what, integer=True)
        if not 0 <= seed <= 0xFFFFFFFF:
            raise ValueError(f"DASHTAM_SANDBOX_SEED must be {what}, got {shown(value)}")
        return int(seed)

    @field_validator("dashtam_sandbox_users", mode="before")
    @classmethod
    def _sandbox_users(cls, value: object) -> int:
        return sandbox_user_count(value)

    @model_validator(mode="after")
    def _providers_readable(self) -> Settings:
        """Every provider's variables are checked when the settings are read, like the
        pipeline's own (a typo in ``FMP_LICENSE_TIER`` would silently run without limits,
        one in ``FMP_TIMEOUT_SECONDS`` would surface minutes later inside a run)."""
        if problems := _provider_problems():
            raise ValueError("; ".join(problems))
        return self

    def _as_input(self) -> dict[str, object]:
        """These settings as values ``Settings(...)`` reads back the same: secrets in
        clear (the validators check a URL's scheme, which a ``SecretStr`` hides)."""
        return {name: value.get_secret_value() if isinstance(value, SecretStr) else value
                for name, value in dict(self).items()}

    def replaced(self, **values: object) -> Settings:
        """These settings with ``values`` in place (a resource's config, or a test's
        ``load_settings(...)``, over the environment's), checked like the variables they
        replace: a bad one raises ``ConfigurationError`` with the same sentence. A
        provider's settings (``fmp_timeout_seconds``, ``fmp_api_key``) are kept for
        ``provider()``; a name that is no setting at all is refused."""
        fields = type(self).model_fields
        declared = {k: v for k, v in values.items() if k in fields}
        given = {k: v for k, v in values.items() if k not in fields}
        by_provider = {name: meta.slug for meta in PROVIDER_REGISTRY
                       for name in setting_names(meta)}
        if unknown := sorted(set(given) - set(by_provider)):
            raise ConfigurationError(
                f"{', '.join(n.upper() for n in unknown)} is not a setting of the pipeline "
                "or of any provider in the registry")
        copy = (_settings(**{**self._as_input(), **declared}) if declared
                else self.model_copy())
        copy._given = {**self._given, **given}
        copy._providers = {}
        for slug in dict.fromkeys(by_provider[name] for name in given):
            copy.provider(slug)  # checked now, as the environment's are at load
        return copy

    # --- derived paths -----------------------------------------------------------------
    @cached_property
    def data_dir(self) -> Path:
        return data_dir_path(self.dashtam_data_dir)

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
        """The settings one provider's client needs (``provider_settings.resolve``): the
        given values over the environment's, else the registry's defaults."""
        meta = get_provider_metadata(slug)
        cached = self._providers.get(meta.slug.value)
        if cached is None:
            try:
                cached = resolve(meta.slug, self._given, sandbox=self.dashtam_sandbox)
            except ValueError as error:
                raise ConfigurationError(str(error)) from None
            self._providers[meta.slug.value] = cached
        return cached

    def missing_settings(self, slug: ProviderSlug | str) -> list[str]:
        """Environment variables a provider needs that are unset (empty list: ready)."""
        meta = get_provider_metadata(slug)
        present = self.provider(slug).secrets
        missing = [name for name in meta.required_settings if name not in present]
        return [name.upper() for name in missing]


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


def _provider_problems() -> list[str]:
    """One sentence per bad provider variable in the environment (none: all readable)."""
    problems = []
    environment = read_environment()
    for meta in PROVIDER_REGISTRY:
        try:
            resolve(meta.slug, {}, sandbox=False, environment=environment)
        except ValueError as error:
            problems.append(str(error))
    return problems


def _settings(**values: object) -> Settings:
    """``Settings(**values)``, or one ``ConfigurationError`` naming every bad variable:
    the pipeline's and, because pydantic skips a model check after a field failed, the
    providers' too. ``.env`` is read first on its own (``read_dotenv``): pydantic's reader
    would raise a bare ``UnicodeDecodeError`` on one that is not UTF-8 text."""
    read_dotenv()
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValidationError as error:
        sentences = [settings_error_sentence(error)]
        sentences += [p for p in _provider_problems() if p not in sentences[0]]
        raise ConfigurationError("; ".join(sentences)) from None
    _usable_data_dir(settings.data_dir)
    return settings


def _usable_data_dir(path: Path) -> None:
    """Create ``DASHTAM_DATA_DIR`` (0700, as ``private_files`` makes every folder the
    pipeline creates) or refuse it in one sentence: every command writes under it, and a
    data dir that is a file (``/dev/null``) or cannot be created (``/proc/x``) would
    otherwise surface as a bare ``NotADirectoryError`` from whichever write came first."""
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"DASHTAM_DATA_DIR must be a folder, but {path} exists and "
                                 "is not one: point it at a folder, or at a path that does "
                                 "not exist yet")
    try:
        make_private_dirs(path)
    except OSError as error:
        raise ConfigurationError(f"DASHTAM_DATA_DIR {path} cannot be created "
                                 f"({error.strerror or type(error).__name__}): point it at "
                                 "a folder this user can create or write") from None


def load_settings(**overrides: object) -> Settings:
    """Read settings now (environment and ``.env``); overrides win, for tests.

    Raises ``ConfigurationError`` (one sentence per bad variable) instead of pydantic's
    ``ValidationError``: every command, sensor and code-location load reads settings
    here, so every one of them refuses a bad value the same way.
    """
    fields = Settings.model_fields
    settings = _settings(**{k: v for k, v in overrides.items() if k in fields})
    given = {k: v for k, v in overrides.items() if k not in fields}
    return settings.replaced(**given) if given else settings
