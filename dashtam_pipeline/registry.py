"""The provider registry: the single source of truth for every data provider and dataset.

Everything provider-shaped in the pipeline is derived from the data in this module: the
Dagster assets and their checks (``assets/factory.py``), the HTTP clients' configuration
(base URL, timeout, circuit-breaker knobs), the settings a provider needs, the CLI's
``dashtam providers`` listing and the compliance tests.

The datasets are declared here; the providers are not. Each provider is a folder
``dashtam_pipeline/providers/<slug>/`` whose ``__init__`` declares its ``METADATA``, found
by ``discover_providers`` on first use. Adding a provider on an existing dataset is one new
folder; a new dataset adds one ``DatasetSpec`` here and one schema in ``schemas/``. The
compliance tests say what a folder is missing.

The module holds data and lookups only: no I/O, and no static import of providers, clients
or Dagster (layering: ``registry`` ← ``providers/*`` ← assets and definitions).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class ProviderSlug(str):
    """A provider's stable identifier; its text is what lands in ``provider`` columns.

    An open set rather than an enum: providers are discovered from their folders under
    ``dashtam_pipeline.providers``, so the core cannot list them. Instances are interned,
    so ``slug is ProviderSlug.SCHWAB`` holds whenever the text is equal (as it did when this
    was an enum), and ``.value`` is the plain string. The constants name the built-in
    providers the core refers to by name; a new provider needs none.
    """

    __slots__ = ()
    _interned: ClassVar[dict[str, ProviderSlug]] = {}

    FMP: ClassVar[ProviderSlug]
    POLYGON: ClassVar[ProviderSlug]
    FRED: ClassVar[ProviderSlug]
    NEWSAPI: ClassVar[ProviderSlug]
    SCHWAB: ClassVar[ProviderSlug]
    ALPACA: ClassVar[ProviderSlug]
    CHASE_FILE: ClassVar[ProviderSlug]

    def __new__(cls, value: str) -> ProviderSlug:
        if isinstance(value, ProviderSlug):
            return value
        text = str(value)
        found = cls._interned.get(text)
        if found is None:
            if not _SLUG_PATTERN.fullmatch(text):
                raise ValueError(
                    f"{text!r} is not a provider slug (lower-case letters, digits, underscores)"
                )
            found = cls._interned.setdefault(text, super().__new__(cls, text))
        return found

    @property
    def value(self) -> str:
        """The slug as a plain ``str`` (for JSON, Arrow columns and Dagster tags)."""
        return str.__str__(self)


_SLUG_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
ProviderSlug.FMP = ProviderSlug("fmp")
ProviderSlug.POLYGON = ProviderSlug("polygon")
ProviderSlug.FRED = ProviderSlug("fred")
ProviderSlug.NEWSAPI = ProviderSlug("newsapi")
ProviderSlug.SCHWAB = ProviderSlug("schwab")
ProviderSlug.ALPACA = ProviderSlug("alpaca")
ProviderSlug.CHASE_FILE = ProviderSlug("chase_file")


class ProviderCategory(StrEnum):
    """What kind of service a provider is."""

    MARKET_DATA = "market_data"
    ECONOMIC_DATA = "economic_data"
    NEWS = "news"
    BROKERAGE = "brokerage"
    BANK = "bank"


class ProviderAuthType(StrEnum):
    """How the pipeline authenticates to a provider."""

    OAUTH = "oauth"
    API_KEY = "api_key"
    FILE_IMPORT = "file_import"


class ProviderCapability(StrEnum):
    """What a provider can serve. Each capability maps to one client method (see
    ``CAPABILITY_METHODS``); the compliance tests check every provider implements the
    methods of the capabilities it claims."""

    QUOTES = "quotes"
    DAILY_BARS = "daily_bars"
    FUNDAMENTALS = "fundamentals"
    EARNINGS = "earnings"
    OPTIONS = "options"
    ECONOMIC_SERIES = "economic_series"
    NEWS = "news"
    ACCOUNTS = "accounts"
    POSITIONS = "positions"
    TRANSACTIONS = "transactions"


class Domain(StrEnum):
    """Asset groups in the Dagster UI and schemas in the warehouse."""

    MARKET = "market"
    MACRO = "macro"
    NEWS = "news"
    BROKERAGE = "brokerage"
    MARTS = "marts"
    OPS = "ops"


class Dataset(StrEnum):
    """Datasets the providers serve; each lands in one warehouse table."""

    QUOTES = "quotes"
    DAILY_BARS = "daily_bars"
    FUNDAMENTALS = "fundamentals"
    EARNINGS = "earnings"
    OPTIONS_CHAIN = "options_chain"
    FRED_SERIES = "fred_series"
    FRED_OBSERVATIONS = "fred_observations"
    NEWS_ARTICLES = "news_articles"
    ACCOUNTS = "accounts"
    POSITIONS = "positions"
    TRANSACTIONS = "transactions"


class Sourcing(StrEnum):
    """How the providers serving one dataset combine.

    ``FALLBACK``: one asset; providers are tried in ``fallback_order`` until one serves.
    ``PER_PROVIDER``: one asset per provider (each brokerage is its own source of truth);
    all of them land in the same table, told apart by the ``provider`` key column.
    """

    FALLBACK = "fallback"
    PER_PROVIDER = "per_provider"


class Partitioning(StrEnum):
    """How a dataset's assets are partitioned in Dagster.

    ``INBOX_FILE``: one dynamic partition per file dropped in a file-import provider's
    inbox, added by that provider's inbox sensor (so one file is one import run).
    ``CONNECTION``: one dynamic partition per connection of a brokerage API provider
    (keyed by connection id), kept in step with the connection repository by the
    ``connection_partitions_sensor``: a connection is the unit of brokerage work.
    """

    NONE = "none"
    TRADING_DAY = "trading_day"
    FRED_SERIES = "fred_series"
    INBOX_FILE = "inbox_file"
    CONNECTION = "connection"


class LimitScope(StrEnum):
    """Who shares a rate limit's budget (``RateLimit.per``)."""

    APP = "app"
    KEY = "key"


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A license tier's published limits. ``None`` means the provider publishes none.

    ``per`` says whose budget a limit is. ``APP``: one budget for the platform's
    credentials, shared by every user (Schwab counts requests per registered app, FMP per
    platform key). ``KEY``: one budget per API key, so a user who brings their own key
    (Alpaca) has a budget of their own, and one user's sync cannot starve another's.
    """

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    per: LimitScope = LimitScope.APP


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One dataset: where it lands, what identifies a row, how it is sourced and partitioned.

    ``lake_bucket`` names the key column (or a column fully determined by the key) whose
    value picks the Parquet file a row lives in. Because it is a function of the key, a key
    lives in exactly one file, so upserting file by file can never duplicate a row.
    ``lake_bucket_format`` is a strftime pattern for date buckets (``"%Y-%m"`` groups a month).
    ``lake_buckets``: hash the bucket value into this many files instead of one file per
    value. Tables keyed by a series or a symbol would otherwise hold one small file per
    value (1,000 series, 1,000 files), and a query over them pays a file open and a footer
    read per file: hashing keeps a table at a few large, row-grouped files that DuckDB
    scans near native speed, at the cost of rewriting a larger file per upsert.
    ``serves_stale``: when every provider fails, the last good row per symbol is served
    again for the requested date with ``is_stale = true`` instead of leaving the day empty.
    ``companions``: datasets whose rows this dataset's fetch returns too (FRED's ``/series``
    answer decides whether observations are pulled and *is* the series' metadata). They
    share one Dagster step with this dataset, so one request lands in both tables; each
    keeps its own asset, checks and table, and can still be materialized alone.
    """

    dataset: Dataset
    table: str
    domain: Domain
    capability: ProviderCapability
    key: tuple[str, ...]
    sourcing: Sourcing
    partitioning: Partitioning
    lake_bucket: str
    lake_bucket_format: str | None = None
    lake_buckets: int | None = None
    serves_stale: bool = False
    companions: tuple[Dataset, ...] = ()
    description: str

    @property
    def table_name(self) -> str:
        """``quotes`` of ``market.quotes``: the name generated assets are given."""
        return self.table.split(".")[1]


@dataclass(frozen=True, kw_only=True)
class ProviderMetadata:
    """Everything the pipeline knows about one provider, as data.

    ``required_settings`` are the provider's keys, by setting name (lower case; the
    environment variable is the upper-case spelling, read by ``provider_settings.py``).
    ``env_prefix`` is the ``<P>`` of the contract's ``<P>_BASE_URL``,
    ``<P>_TIMEOUT_SECONDS``, ``<P>_CIRCUIT_BREAKER_*``, ``<P>_LICENSE_TIER`` and
    ``<P>_REQUESTS_PER_*``; ``url_settings`` are the provider's own further URL settings
    (``<P>_<NAME>``) with their defaults, such as Schwab's OAuth callback URL.
    ``pool_limit`` caps concurrent steps of this provider across the deployment (the
    Dagster pool ``provider_<slug>``), so parallel runs cannot outrun its rate limits.
    ``partitioning_overrides`` replaces a dataset's partitioning for this provider's own
    asset of a ``PER_PROVIDER`` dataset: a file import is partitioned by inbox file while
    the API brokerages' assets of the same dataset stay as the dataset says.

    The provider's code is named by ``"module:attribute"`` paths and imported on first
    use, so listing providers never imports HTTP clients or the sandbox: ``client`` is its
    client class, ``sandbox_routes`` its ``sandbox.routing.Provider`` (what the sandbox
    answers in its name), ``oauth_flow`` its ``connections.OAuthFlow`` (OAuth providers).
    ``priority`` orders the providers of a ``FALLBACK`` dataset (lower is tried
    first; ties by slug) and providers of one category in listings.
    ``symbol_class_separator`` is how the provider spells the share class of ``BRK.B``.
    ``accepts_user_keys``: a user may store their own keys (the
    ``required_settings``) as a connection of theirs with ``dashtam connect <slug>``.
    """

    slug: ProviderSlug
    display_name: str
    category: ProviderCategory
    auth_type: ProviderAuthType
    capabilities: tuple[ProviderCapability, ...]
    required_settings: tuple[str, ...]
    datasets: tuple[Dataset, ...]
    env_prefix: str | None
    default_base_url: str | None
    default_timeout_seconds: float | None
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    default_tier: str | None = None
    pool_limit: int = 2
    token_endpoint: str | None = None
    authorize_endpoint: str | None = None
    docs_url: str | None = None
    partitioning_overrides: Mapping[Dataset, Partitioning] = field(default_factory=dict)
    client: str | None = None
    sandbox_routes: str | None = None
    oauth_flow: str | None = None
    priority: int = 100
    symbol_class_separator: str = "."
    accepts_user_keys: bool = False
    url_settings: Mapping[str, str] = field(default_factory=dict)

    def partitioning_of(self, spec: DatasetSpec) -> Partitioning:
        """How this provider's asset of ``spec`` is partitioned (the dataset's own
        partitioning unless this provider overrides it)."""
        return self.partitioning_overrides.get(spec.dataset, spec.partitioning)

    @property
    def pool(self) -> str:
        """The Dagster pool capping how many of this provider's steps run at once."""
        return f"provider_{self.slug.value}"

    @property
    def is_oauth(self) -> bool:
        return self.auth_type is ProviderAuthType.OAUTH

    @property
    def required_env_vars(self) -> tuple[str, ...]:
        return tuple(name.upper() for name in self.required_settings)


#: The client method that implements each capability. Methods take a
#: ``clients.base.FetchRequest`` and return a ``clients.base.FetchResult``.
CAPABILITY_METHODS: Mapping[ProviderCapability, tuple[str, ...]] = {
    ProviderCapability.QUOTES: ("fetch_quotes",),
    ProviderCapability.DAILY_BARS: ("fetch_daily_bars",),
    ProviderCapability.FUNDAMENTALS: ("fetch_fundamentals",),
    ProviderCapability.EARNINGS: ("fetch_earnings",),
    ProviderCapability.OPTIONS: ("fetch_options_chain",),
    ProviderCapability.ECONOMIC_SERIES: ("fetch_fred_series", "fetch_fred_observations"),
    ProviderCapability.NEWS: ("fetch_news_articles",),
    ProviderCapability.ACCOUNTS: ("fetch_accounts",),
    ProviderCapability.POSITIONS: ("fetch_positions",),
    ProviderCapability.TRANSACTIONS: ("fetch_transactions",),
}


def fetch_method_name(dataset: Dataset) -> str:
    """The client method that serves ``dataset`` (``fetch_<dataset>``)."""
    return f"fetch_{dataset.value}"


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        dataset=Dataset.QUOTES,
        table="market.quotes",
        domain=Domain.MARKET,
        capability=ProviderCapability.QUOTES,
        key=("symbol", "quote_date"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.TRADING_DAY,
        lake_bucket="quote_date",
        lake_bucket_format="%Y-%m",
        serves_stale=True,
        description="End-of-day quote snapshot per symbol and trading date.",
    ),
    DatasetSpec(
        dataset=Dataset.DAILY_BARS,
        table="market.daily_bars",
        domain=Domain.MARKET,
        capability=ProviderCapability.DAILY_BARS,
        key=("symbol", "date"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.TRADING_DAY,
        lake_bucket="date",
        lake_bucket_format="%Y-%m",
        description="Daily OHLCV bars per symbol.",
    ),
    DatasetSpec(
        dataset=Dataset.FUNDAMENTALS,
        table="market.fundamentals",
        domain=Domain.MARKET,
        capability=ProviderCapability.FUNDAMENTALS,
        key=("symbol", "period_end", "period"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.NONE,
        lake_bucket="symbol",
        lake_buckets=8,
        description="Income statement and balance sheet lines per fiscal period.",
    ),
    DatasetSpec(
        dataset=Dataset.EARNINGS,
        table="market.earnings",
        domain=Domain.MARKET,
        capability=ProviderCapability.EARNINGS,
        key=("symbol", "report_date"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.NONE,
        lake_bucket="symbol",
        lake_buckets=8,
        description="Earnings reports: actual and estimated EPS and revenue.",
    ),
    DatasetSpec(
        dataset=Dataset.OPTIONS_CHAIN,
        table="market.options_chain",
        domain=Domain.MARKET,
        capability=ProviderCapability.OPTIONS,
        key=("contract", "as_of_date"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.NONE,
        lake_bucket="as_of_date",
        lake_bucket_format="%Y-%m",
        description="Options chain snapshot with greeks (rights profile `pro` only).",
    ),
    DatasetSpec(
        dataset=Dataset.FRED_SERIES,
        table="macro.fred_series",
        domain=Domain.MACRO,
        capability=ProviderCapability.ECONOMIC_SERIES,
        key=("series_id",),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.FRED_SERIES,
        lake_bucket="series_id",
        lake_buckets=4,
        description="FRED series metadata (title, frequency, units, last update).",
    ),
    DatasetSpec(
        dataset=Dataset.FRED_OBSERVATIONS,
        table="macro.fred_observations",
        domain=Domain.MACRO,
        capability=ProviderCapability.ECONOMIC_SERIES,
        key=("series_id", "date", "realtime_start"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.FRED_SERIES,
        lake_bucket="series_id",
        lake_buckets=16,
        companions=(Dataset.FRED_SERIES,),
        description="Every ALFRED vintage of every FRED observation.",
    ),
    DatasetSpec(
        dataset=Dataset.NEWS_ARTICLES,
        table="news.articles",
        domain=Domain.NEWS,
        capability=ProviderCapability.NEWS,
        key=("article_id", "symbol"),
        sourcing=Sourcing.FALLBACK,
        partitioning=Partitioning.TRADING_DAY,
        lake_bucket="symbol",
        lake_buckets=8,
        description="News articles per symbol query, with a finance-lexicon sentiment score.",
    ),
    DatasetSpec(
        dataset=Dataset.ACCOUNTS,
        table="brokerage.accounts",
        domain=Domain.BROKERAGE,
        capability=ProviderCapability.ACCOUNTS,
        key=("connection_id", "account_id", "as_of_date"),
        sourcing=Sourcing.PER_PROVIDER,
        partitioning=Partitioning.CONNECTION,
        lake_bucket="provider",
        description="Daily balance snapshot per brokerage account (account numbers masked).",
    ),
    DatasetSpec(
        dataset=Dataset.POSITIONS,
        table="brokerage.positions",
        domain=Domain.BROKERAGE,
        capability=ProviderCapability.POSITIONS,
        key=("connection_id", "account_id", "symbol", "as_of_date"),
        sourcing=Sourcing.PER_PROVIDER,
        partitioning=Partitioning.CONNECTION,
        lake_bucket="provider",
        description="Daily holdings snapshot per brokerage account.",
    ),
    DatasetSpec(
        dataset=Dataset.TRANSACTIONS,
        table="brokerage.transactions",
        domain=Domain.BROKERAGE,
        capability=ProviderCapability.TRANSACTIONS,
        key=("connection_id", "transaction_id"),
        sourcing=Sourcing.PER_PROVIDER,
        partitioning=Partitioning.CONNECTION,
        lake_bucket="provider",
        description="Trades, dividends, fees and cash movements, signed (+ cash in).",
    ),
)

_DATASETS: dict[Dataset, DatasetSpec] = {d.dataset: d for d in DATASETS}


#: The package whose sub-packages are the providers (``providers/<slug>/``); each declares
#: ``METADATA`` (a ``ProviderMetadata``) in its ``__init__``.
PROVIDERS_PACKAGE = "dashtam_pipeline.providers"


def discover_providers(package: str = PROVIDERS_PACKAGE) -> tuple[ProviderMetadata, ...]:
    """Every provider folder under ``package``, found with ``pkgutil.iter_modules``.

    Why discovery rather than a list: a new provider is one new folder and no edit to the
    core (OpenBB's provider packages work the same way). Order is the folders' declared
    ``METADATA``, sorted by category and then slug, so listings are stable. A folder without
    ``METADATA``, or whose slug is not its folder name, is an error that names it.
    """
    root = importlib.import_module(package)
    found: list[ProviderMetadata] = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        meta = getattr(module, "METADATA", None)
        if not isinstance(meta, ProviderMetadata):
            raise ProviderDeclarationError(
                f"provider folder {package}.{info.name} declares no METADATA "
                "(a dashtam_pipeline.registry.ProviderMetadata) in its __init__.py"
            )
        if meta.slug.value != info.name:
            raise ProviderDeclarationError(
                f"provider folder {info.name!r} declares slug {meta.slug.value!r}; "
                "the folder must be named after its slug"
            )
        found.append(meta)
    order = {category: n for n, category in enumerate(ProviderCategory)}
    return tuple(sorted(found, key=lambda m: (order[m.category], m.priority, m.slug.value)))


class ProviderDeclarationError(ValueError):
    """A provider folder that cannot be loaded as a provider."""


class _Catalogue:
    """The discovered providers and what is derived from them, built once per process."""

    def __init__(self, providers: tuple[ProviderMetadata, ...]) -> None:
        self.providers = providers
        self.by_slug: dict[ProviderSlug, ProviderMetadata] = {p.slug: p for p in providers}
        if len(self.by_slug) != len(providers):
            raise ProviderDeclarationError("two provider folders declare the same slug")
        self.fallback_order: dict[Dataset, tuple[ProviderSlug, ...]] = {
            spec.dataset: tuple(
                p.slug for p in sorted(
                    (p for p in providers if spec.dataset in p.datasets),
                    key=lambda p: (p.priority, p.slug.value),
                )
            )
            for spec in DATASETS
            if spec.sourcing is Sourcing.FALLBACK
        }


_catalogue: _Catalogue | None = None
_catalogue_lock = threading.Lock()


def _loaded() -> _Catalogue:
    global _catalogue
    if _catalogue is None:
        with _catalogue_lock:
            if _catalogue is None:
                _catalogue = _Catalogue(discover_providers())
    return _catalogue


def __getattr__(name: str) -> Any:
    """``PROVIDER_REGISTRY`` and ``FALLBACK_ORDER`` are computed on first use: discovery
    imports the provider folders, which import this module for their types."""
    if name == "PROVIDER_REGISTRY":
        return _loaded().providers
    if name == "FALLBACK_ORDER":
        return _loaded().fallback_order
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Extra folders searched for provider packages (``os.pathsep``-separated), read by
#: ``dashtam_pipeline.providers``: providers kept outside this repository, and tests.
PROVIDERS_PATH_ENV = "DASHTAM_PROVIDERS_PATH"


def extra_provider_dirs() -> list[str]:
    """The folders named by ``DASHTAM_PROVIDERS_PATH``, in order."""
    raw = os.environ.get(PROVIDERS_PATH_ENV, "")
    return [part for part in raw.split(os.pathsep) if part.strip()]


def load_attribute(target: str) -> Any:
    """The object a ``"module:attribute"`` path names (a provider's client, routes, flow)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def get_provider_metadata(slug: ProviderSlug | str) -> ProviderMetadata:
    """Metadata of one provider. Unknown slugs raise ``ValueError`` naming the known ones."""
    try:
        return _loaded().by_slug[ProviderSlug(slug)]
    except (ValueError, KeyError):
        supported = ", ".join(p.slug.value for p in _loaded().providers)
        raise ValueError(
            f"Unknown provider {slug!r}; supported providers: {supported}"
        ) from None


def get_all_provider_slugs() -> list[ProviderSlug]:
    """Every registered provider, in registry order."""
    return [p.slug for p in _loaded().providers]


def get_oauth_providers() -> set[ProviderSlug]:
    """Providers that authenticate with OAuth (and so need a connection and tokens)."""
    return {p.slug for p in _loaded().providers if p.auth_type is ProviderAuthType.OAUTH}


def get_providers_by_category(category: ProviderCategory | str) -> list[ProviderMetadata]:
    """Providers of one category, in registry order."""
    wanted = ProviderCategory(category)
    return [p for p in _loaded().providers if p.category is wanted]


def get_statistics() -> dict[str, int]:
    """Counts for compliance snapshots and monitoring."""
    stats: dict[str, int] = {
        "total_providers": len(_loaded().providers),
        "oauth_providers": len(get_oauth_providers()),
        "total_datasets": len(DATASETS),
    }
    for category, count in Counter(p.category for p in _loaded().providers).items():
        stats[f"category_{category.value}"] = count
    for auth_type, count in Counter(p.auth_type for p in _loaded().providers).items():
        stats[f"auth_{auth_type.value}"] = count
    return stats


def get_dataset_spec(dataset: Dataset | str) -> DatasetSpec:
    """The spec of one dataset."""
    try:
        return _DATASETS[Dataset(dataset)]
    except (ValueError, KeyError):
        known = ", ".join(d.value for d in Dataset)
        raise ValueError(f"Unknown dataset {dataset!r}; known datasets: {known}") from None


def providers_serving(dataset: Dataset) -> list[ProviderMetadata]:
    """Providers that serve ``dataset``: in fallback order for ``FALLBACK`` datasets,
    registry order otherwise."""
    spec = get_dataset_spec(dataset)
    if spec.sourcing is Sourcing.FALLBACK:
        return [get_provider_metadata(slug) for slug in _loaded().fallback_order[dataset]]
    return [p for p in _loaded().providers if dataset in p.datasets]
