"""The provider registry: the single source of truth for every data provider and dataset.

Everything provider-shaped in the pipeline is derived from the data in this module: the
Dagster assets and their checks (``assets/factory.py``), the HTTP clients' configuration
(base URL, timeout, circuit-breaker knobs), the settings a provider needs, the CLI's
``dashtam providers`` listing and the compliance tests. Adding a provider is one
``ProviderMetadata`` entry here, one client module in ``clients/`` and, for a new dataset,
one schema in ``schemas/`` — the compliance tests say what is missing.

The module holds data and lookups only: no I/O, no imports of clients or Dagster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ProviderSlug(StrEnum):
    """Stable identifiers of providers; the value is what lands in ``provider`` columns."""

    FMP = "fmp"
    POLYGON = "polygon"
    FRED = "fred"
    NEWSAPI = "newsapi"
    SCHWAB = "schwab"
    ALPACA = "alpaca"
    CHASE_FILE = "chase_file"


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
    """

    NONE = "none"
    TRADING_DAY = "trading_day"
    FRED_SERIES = "fred_series"
    INBOX_FILE = "inbox_file"


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A license tier's published limits. ``None`` means the provider publishes none."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None


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

    ``required_settings`` are field names of ``dashtam_pipeline.settings.Settings`` (lower
    case; the environment variable is the upper-case spelling). ``env_prefix`` is the
    ``<P>`` of the contract's ``<P>_TIMEOUT_SECONDS`` / ``<P>_CIRCUIT_BREAKER_*``.
    ``pool_limit`` caps concurrent steps of this provider across the deployment (the
    Dagster pool ``provider_<slug>``), so parallel runs cannot outrun its rate limits.
    ``partitioning_overrides`` replaces a dataset's partitioning for this provider's own
    asset of a ``PER_PROVIDER`` dataset: a file import is partitioned by inbox file while
    the API brokerages' assets of the same dataset stay as the dataset says.
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
        partitioning=Partitioning.NONE,
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
        partitioning=Partitioning.NONE,
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
        partitioning=Partitioning.NONE,
        lake_bucket="provider",
        description="Trades, dividends, fees and cash movements, signed (+ cash in).",
    ),
)

#: Order in which providers are tried for ``FALLBACK`` datasets (first that serves wins).
FALLBACK_ORDER: Mapping[Dataset, tuple[ProviderSlug, ...]] = {
    Dataset.QUOTES: (ProviderSlug.FMP, ProviderSlug.POLYGON),
    Dataset.DAILY_BARS: (ProviderSlug.FMP, ProviderSlug.POLYGON),
    Dataset.FUNDAMENTALS: (ProviderSlug.FMP,),
    Dataset.EARNINGS: (ProviderSlug.FMP,),
    Dataset.OPTIONS_CHAIN: (ProviderSlug.POLYGON,),
    Dataset.FRED_SERIES: (ProviderSlug.FRED,),
    Dataset.FRED_OBSERVATIONS: (ProviderSlug.FRED,),
    Dataset.NEWS_ARTICLES: (ProviderSlug.NEWSAPI,),
}


PROVIDER_REGISTRY: tuple[ProviderMetadata, ...] = (
    # --- API-key market, macro and news data -------------------------------------------
    ProviderMetadata(
        slug=ProviderSlug.FMP,
        display_name="Financial Modeling Prep",
        category=ProviderCategory.MARKET_DATA,
        auth_type=ProviderAuthType.API_KEY,
        capabilities=(
            ProviderCapability.QUOTES,
            ProviderCapability.DAILY_BARS,
            ProviderCapability.FUNDAMENTALS,
            ProviderCapability.EARNINGS,
        ),
        required_settings=("fmp_api_key",),
        datasets=(Dataset.QUOTES, Dataset.DAILY_BARS, Dataset.FUNDAMENTALS, Dataset.EARNINGS),
        env_prefix="FMP",
        default_base_url="https://financialmodelingprep.com/stable",
        default_timeout_seconds=5,
        rate_limits={
            "free": RateLimit(requests_per_day=250),
            "starter": RateLimit(requests_per_minute=300),
            "premium": RateLimit(requests_per_minute=750),
        },
        default_tier="free",
        docs_url="https://site.financialmodelingprep.com/developer/docs/stable",
    ),
    ProviderMetadata(
        slug=ProviderSlug.POLYGON,
        display_name="Polygon.io (Massive)",
        category=ProviderCategory.MARKET_DATA,
        auth_type=ProviderAuthType.API_KEY,
        capabilities=(
            ProviderCapability.QUOTES,
            ProviderCapability.DAILY_BARS,
            ProviderCapability.OPTIONS,
        ),
        required_settings=("polygon_api_key",),
        datasets=(Dataset.QUOTES, Dataset.DAILY_BARS, Dataset.OPTIONS_CHAIN),
        env_prefix="POLYGON",
        default_base_url="https://api.polygon.io",
        default_timeout_seconds=5,
        rate_limits={
            "free": RateLimit(requests_per_minute=5),
            "starter": RateLimit(),
        },
        default_tier="free",
        pool_limit=1,
        docs_url="https://polygon.io/docs",
    ),
    ProviderMetadata(
        slug=ProviderSlug.FRED,
        display_name="FRED / ALFRED (St. Louis Fed)",
        category=ProviderCategory.ECONOMIC_DATA,
        auth_type=ProviderAuthType.API_KEY,
        capabilities=(ProviderCapability.ECONOMIC_SERIES,),
        required_settings=("fred_api_key",),
        datasets=(Dataset.FRED_SERIES, Dataset.FRED_OBSERVATIONS),
        env_prefix="FRED",
        default_base_url="https://api.stlouisfed.org/fred",
        default_timeout_seconds=10,
        rate_limits={"free": RateLimit(requests_per_minute=120)},
        default_tier="free",
        docs_url="https://fred.stlouisfed.org/docs/api/fred/",
    ),
    ProviderMetadata(
        slug=ProviderSlug.NEWSAPI,
        display_name="NewsAPI",
        category=ProviderCategory.NEWS,
        auth_type=ProviderAuthType.API_KEY,
        capabilities=(ProviderCapability.NEWS,),
        required_settings=("news_api_key",),
        datasets=(Dataset.NEWS_ARTICLES,),
        env_prefix="NEWS",
        default_base_url="https://newsapi.org/v2",
        default_timeout_seconds=3,
        rate_limits={
            "developer": RateLimit(requests_per_day=100),
            "business": RateLimit(requests_per_day=250_000),
        },
        default_tier="developer",
        pool_limit=1,
        docs_url="https://newsapi.org/docs",
    ),
    # --- Brokerages --------------------------------------------------------------------
    ProviderMetadata(
        slug=ProviderSlug.SCHWAB,
        display_name="Charles Schwab",
        category=ProviderCategory.BROKERAGE,
        auth_type=ProviderAuthType.OAUTH,
        capabilities=(
            ProviderCapability.ACCOUNTS,
            ProviderCapability.POSITIONS,
            ProviderCapability.TRANSACTIONS,
        ),
        required_settings=("schwab_app_key", "schwab_app_secret"),
        datasets=(Dataset.ACCOUNTS, Dataset.POSITIONS, Dataset.TRANSACTIONS),
        env_prefix="SCHWAB",
        default_base_url="https://api.schwabapi.com",
        default_timeout_seconds=10,
        rate_limits={"individual": RateLimit(requests_per_minute=120)},
        default_tier="individual",
        token_endpoint="/v1/oauth/token",
        authorize_endpoint="/v1/oauth/authorize",
        docs_url="https://developer.schwab.com",
    ),
    ProviderMetadata(
        slug=ProviderSlug.ALPACA,
        display_name="Alpaca Markets",
        category=ProviderCategory.BROKERAGE,
        auth_type=ProviderAuthType.API_KEY,
        capabilities=(
            ProviderCapability.ACCOUNTS,
            ProviderCapability.POSITIONS,
            ProviderCapability.TRANSACTIONS,
        ),
        required_settings=("alpaca_api_key_id", "alpaca_api_secret_key"),
        datasets=(Dataset.ACCOUNTS, Dataset.POSITIONS, Dataset.TRANSACTIONS),
        env_prefix="ALPACA",
        default_base_url="https://paper-api.alpaca.markets",
        default_timeout_seconds=10,
        rate_limits={"free": RateLimit(requests_per_minute=200)},
        default_tier="free",
        docs_url="https://docs.alpaca.markets",
    ),
    # --- File imports ------------------------------------------------------------------
    ProviderMetadata(
        slug=ProviderSlug.CHASE_FILE,
        display_name="Chase (CSV file import)",
        category=ProviderCategory.BANK,
        auth_type=ProviderAuthType.FILE_IMPORT,
        capabilities=(ProviderCapability.TRANSACTIONS,),
        required_settings=(),
        datasets=(Dataset.TRANSACTIONS,),
        env_prefix=None,
        default_base_url=None,
        default_timeout_seconds=None,
        pool_limit=1,
        partitioning_overrides={Dataset.TRANSACTIONS: Partitioning.INBOX_FILE},
    ),
)


_BY_SLUG: dict[ProviderSlug, ProviderMetadata] = {p.slug: p for p in PROVIDER_REGISTRY}
_DATASETS: dict[Dataset, DatasetSpec] = {d.dataset: d for d in DATASETS}


def get_provider_metadata(slug: ProviderSlug | str) -> ProviderMetadata:
    """Metadata of one provider. Unknown slugs raise ``ValueError`` naming the known ones."""
    try:
        return _BY_SLUG[ProviderSlug(slug)]
    except (ValueError, KeyError):
        supported = ", ".join(p.slug.value for p in PROVIDER_REGISTRY)
        raise ValueError(
            f"Unknown provider {slug!r}; supported providers: {supported}"
        ) from None


def get_all_provider_slugs() -> list[ProviderSlug]:
    """Every registered provider, in registry order."""
    return [p.slug for p in PROVIDER_REGISTRY]


def get_oauth_providers() -> set[ProviderSlug]:
    """Providers that authenticate with OAuth (and so need a connection and tokens)."""
    return {p.slug for p in PROVIDER_REGISTRY if p.auth_type is ProviderAuthType.OAUTH}


def get_providers_by_category(category: ProviderCategory | str) -> list[ProviderMetadata]:
    """Providers of one category, in registry order."""
    wanted = ProviderCategory(category)
    return [p for p in PROVIDER_REGISTRY if p.category is wanted]


def get_statistics() -> dict[str, int]:
    """Counts for compliance snapshots and monitoring."""
    stats: dict[str, int] = {
        "total_providers": len(PROVIDER_REGISTRY),
        "oauth_providers": len(get_oauth_providers()),
        "total_datasets": len(DATASETS),
    }
    for category, count in Counter(p.category for p in PROVIDER_REGISTRY).items():
        stats[f"category_{category.value}"] = count
    for auth_type, count in Counter(p.auth_type for p in PROVIDER_REGISTRY).items():
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
        return [get_provider_metadata(slug) for slug in FALLBACK_ORDER[dataset]]
    return [p for p in PROVIDER_REGISTRY if dataset in p.datasets]
