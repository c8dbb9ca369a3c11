"""One provider's settings, named by the registry instead of declared here per provider.

A provider's knobs are the contract's ``<P>_BASE_URL``, ``<P>_TIMEOUT_SECONDS``,
``<P>_CIRCUIT_BREAKER_THRESHOLD``/``_TIMEOUT``, ``<P>_LICENSE_TIER`` and
``<P>_REQUESTS_PER_MINUTE``/``_DAY`` (``<P>`` is ``ProviderMetadata.env_prefix``), its
``url_settings`` (Schwab's ``SCHWAB_CALLBACK_URL``) and its keys
(``ProviderMetadata.required_settings``). They are read from the environment and ``.env``
like the pipeline's own settings, and checked the same way (one sentence per bad
variable), but nothing here lists providers: a new provider folder brings its variables
with its metadata. ``ProviderSettings`` is the resolved result a client is built from.

Numbers have upper bounds as well as lower ones (``setting_values``): a request timeout
is at most an hour, a breaker timeout a day, a breaker threshold a million failures, a
request limit a billion requests. Above them a typo such as ``1e300`` would pass the load
and crash a run with an ``OverflowError``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values
from pydantic import SecretStr

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.registry import (
    LimitScope,
    ProviderMetadata,
    ProviderSlug,
    get_provider_metadata,
)
from dashtam_pipeline.setting_values import (
    MAX_BREAKER_TIMEOUT_SECONDS,
    MAX_REQUEST_LIMIT,
    http_url,
    positive_seconds,
    shown,
    whole_number_at_least_one,
)

#: Every provider's knobs, by name: ``<P>_<NAME>`` in the environment.
KNOBS = ("base_url", "timeout_seconds", "circuit_breaker_threshold",
         "circuit_breaker_timeout", "license_tier", "requests_per_minute",
         "requests_per_day")
DEFAULT_BREAKER_THRESHOLD = 3
DEFAULT_BREAKER_TIMEOUT_SECONDS = 60.0
DEFAULT_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")


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
    #: The provider's own URL settings by name (``callback_url``), defaults applied.
    urls: Mapping[str, str] = field(default_factory=dict)

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


def setting_names(meta: ProviderMetadata) -> dict[str, str]:
    """Every setting of one provider: ``Settings``-style name (``fmp_timeout_seconds``,
    ``fmp_api_key``) -> its environment variable (``FMP_TIMEOUT_SECONDS``...)."""
    names = {key: key.upper() for key in meta.required_settings}
    if meta.env_prefix:
        for knob in (*KNOBS, *meta.url_settings):
            names[f"{meta.env_prefix.lower()}_{knob}"] = f"{meta.env_prefix}_{knob.upper()}"
    return names


def read_dotenv() -> dict[str, str]:
    """The variables of ``.env`` in the working directory (none when there is no such
    file), by lower-case name.

    Raises ``ConfigurationError`` with one sentence naming ``.env`` when it cannot be read
    or is not UTF-8 text (a UTF-16 file, as some editors save): every command reads
    settings, and each would otherwise stop with a bare ``UnicodeDecodeError``. A UTF-8
    byte-order mark is allowed (``utf-8-sig``, as ``Settings`` reads it too)."""
    dotenv = Path(".env")
    if not dotenv.is_file():
        return {}
    try:
        text = dotenv.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f".env in {Path.cwd()} is not UTF-8 text (byte {error.start} cannot be decoded; "
            "UTF-16 is a usual cause): save it as UTF-8, or remove it") from None
    except OSError as error:
        raise ConfigurationError(f".env in {Path.cwd()} cannot be read "
                                 f"({error.strerror or type(error).__name__})") from None
    return {k.lower(): v for k, v in dotenv_values(stream=io.StringIO(text)).items()
            if v is not None}


def read_environment() -> dict[str, str]:
    """The variables as the settings read them: ``.env`` in the working directory, then
    the process environment over it, by lower-case name (read once per resolution: a
    provider's variables are a handful of lookups in it, not a settings model each)."""
    values = read_dotenv()
    values.update({k.lower(): v for k, v in os.environ.items()})
    return values


class _Problems:
    """Sentences collected while resolving, so every bad variable is named at once."""

    def __init__(self) -> None:
        self.sentences: list[str] = []

    def check(self, parse: Callable[[], T], fallback: T) -> T:
        try:
            return parse()
        except ValueError as error:
            self.sentences.append(str(error))
            return fallback


def resolve(
    slug: ProviderSlug | str, given: Mapping[str, object], *, sandbox: bool,
    environment: Mapping[str, str] | None = None,
) -> ProviderSettings:
    """One provider's settings: ``given`` (a resource's config, by setting name) over the
    environment's, else the registry's defaults. Raises ``ValueError`` with one sentence
    per bad variable (secrets are never quoted)."""
    meta = get_provider_metadata(slug)
    names = setting_names(meta)
    env = read_environment() if environment is None else environment
    raw: dict[str, Any] = {name: env[name] for name in names if name in env}
    raw.update({k: v for k, v in given.items() if k in names})
    prefix = (meta.env_prefix or "").lower()
    problems = _Problems()

    def knob(name: str) -> Any:
        return raw.get(f"{prefix}_{name}") if prefix else None

    def variable(name: str) -> str:
        return names[f"{prefix}_{name}"]

    base_url = knob("base_url")
    timeout = knob("timeout_seconds")
    threshold = knob("circuit_breaker_threshold")
    breaker_timeout = knob("circuit_breaker_timeout")
    settings_tier = knob("license_tier")
    tier = (str(settings_tier).strip() if settings_tier is not None else "") or meta.default_tier
    published = meta.rate_limits.get(tier) if tier else None
    if tier and meta.rate_limits and published is None:
        problems.sentences.append(
            f"{variable('license_tier')} must be one of {', '.join(meta.rate_limits)} "
            f"({meta.display_name}'s tiers), got {shown(tier)}")

    def limit(name: str, published_value: int | None) -> int | None:
        value = knob(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return published_value  # unset: the tier's published limit applies
        return problems.check(
            lambda: whole_number_at_least_one(value, variable(name),
                                              "a whole number, at least 1",
                                              maximum=MAX_REQUEST_LIMIT), None)

    secrets = {}
    for name in meta.required_settings:
        value = raw.get(name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
        if text.strip():
            secrets[name] = SecretStr(text.strip())
    urls = {
        name: problems.check(lambda name=name, default=default: http_url(  # type: ignore[misc]
            raw.get(f"{prefix}_{name}", default), variable(name)), default)
        for name, default in meta.url_settings.items()
    }
    resolved = ProviderSettings(
        meta=meta,
        tier=tier or None,
        requests_per_minute=limit(
            "requests_per_minute", published.requests_per_minute if published else None),
        requests_per_day=limit(
            "requests_per_day", published.requests_per_day if published else None),
        base_url=(problems.check(lambda: http_url(base_url, variable("base_url")), "")
                  if base_url is not None else meta.default_base_url or ""),
        timeout_seconds=(
            problems.check(lambda: positive_seconds(timeout, variable("timeout_seconds")), 1.0)
            if timeout is not None
            else float(meta.default_timeout_seconds or DEFAULT_TIMEOUT_SECONDS)),
        breaker_threshold=(
            problems.check(lambda: whole_number_at_least_one(
                threshold, variable("circuit_breaker_threshold"),
                "a whole number of failures, at least 1"), DEFAULT_BREAKER_THRESHOLD)
            if threshold is not None else DEFAULT_BREAKER_THRESHOLD),
        breaker_timeout_seconds=(
            problems.check(lambda: positive_seconds(
                breaker_timeout, variable("circuit_breaker_timeout"),
                maximum=MAX_BREAKER_TIMEOUT_SECONDS),
                DEFAULT_BREAKER_TIMEOUT_SECONDS)
            if breaker_timeout is not None else DEFAULT_BREAKER_TIMEOUT_SECONDS),
        secrets=secrets,
        sandbox=sandbox,
        limit_scope=published.per if published else LimitScope.APP,
        urls=urls,
    )
    if problems.sentences:
        raise ValueError("; ".join(problems.sentences))
    return resolved
