"""Downstream marts: what analysts ask of the ingested data, as materialized tables.

Each mart is SQL over the lake's ingestion tables, run in an in-memory DuckDB connection
(so it never touches the warehouse file's lock), written atomically to
``lake/marts/<name>/<name>.parquet`` and exposed as the warehouse view ``marts.<name>``.
Their dependencies are derived from the registry, so a new brokerage feeds the holdings
mart without edits here.
"""


import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    asset,
)

from dashtam_pipeline.assets.factory import (
    OWNERS,
    UNIQUE_KEYS_CHECK,
    VALID_ROWS_CHECK,
    ingestion_asset_specs,
)
from dashtam_pipeline.domain.provider_connection import ConnectionStatus
from dashtam_pipeline.registry import Dataset, Domain
from dashtam_pipeline.resources import (
    STATE_RESOURCE_KEY,
    STORAGE_RESOURCE_KEY,
    StorageResource,
    settings_from,
)
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.warehouse import lake_connection, write_mart
from dashtam_pipeline.trading_calendar import MARKET_TZ


@dataclass(frozen=True)
class MartColumn:
    """One column of a mart as analysts read it: DuckDB type and what it means."""

    name: str
    type: str
    description: str
    nullable: bool = True


@dataclass(frozen=True)
class MartSpec:
    """A mart: its SQL, its upstream datasets and marts, its key and its columns (declared
    here so the UI shows them before the first materialization; ``test_marts_metadata``
    holds them to what the SQL returns)."""

    name: str
    datasets: tuple[Dataset, ...]
    mart_deps: tuple[str, ...]
    description: str
    sql: str
    key_columns: tuple[str, ...] = ()
    columns: tuple[MartColumn, ...] = ()

    @property
    def key(self) -> AssetKey:
        return AssetKey([Domain.MARTS.value, self.name])


HOLDINGS_SQL = """
WITH latest AS (
    SELECT connection_id, account_id, max(as_of_date) AS as_of_date
    FROM brokerage.positions GROUP BY ALL
)
SELECT p.user_id, p.connection_id, p.provider, p.account_id, p.symbol, p.asset_class,
       p.quantity, p.market_value, p.average_cost,
       p.quantity * p.average_cost AS cost_basis,
       p.market_value - p.quantity * p.average_cost AS unrealized_gain,
       p.market_value / nullif(sum(p.market_value)
           OVER (PARTITION BY p.connection_id, p.account_id), 0) AS weight_in_account,
       p.as_of_date
FROM brokerage.positions p JOIN latest USING (connection_id, account_id, as_of_date)
WHERE p.connection_id NOT IN (SELECT connection_id FROM ended_connections)
ORDER BY p.user_id, p.connection_id, p.account_id, p.market_value DESC NULLS LAST
"""


#: The relation of ended (DISCONNECTED) connections every mart's SQL may read:
#: ``connection_id VARCHAR, ended_on DATE`` (the market date it was disconnected), filled
#: from the state store by ``compute_mart``.
ENDED_CONNECTIONS = "ended_connections"
ENDED_SCHEMA = pa.schema([("connection_id", pa.string()), ("ended_on", pa.date32())])


def _spans(snapshots: str) -> str:
    """The days each (connection, account) of ``snapshots`` counts for, ``[first_day,
    end_day)``. An ended connection stops counting on the day it ended. A connection that
    took an account over from one that ended before its first snapshot (the same user,
    provider and account, e.g. keys removed and set again) is carried back no further than
    that end: an account's history belongs to one connection at a time, never two."""
    return f"""
    WITH owned AS (
        SELECT user_id, connection_id, provider, account_id,
               min(as_of_date) AS first_snapshot
        FROM {snapshots} GROUP BY ALL
    )
    SELECT a.connection_id, a.account_id,
           coalesce(max(p.ended_on), DATE '0001-01-01') AS first_day,
           coalesce(any_value(e.ended_on), DATE '9999-12-31') AS end_day
    FROM owned a
    LEFT JOIN {ENDED_CONNECTIONS} e ON e.connection_id = a.connection_id
    LEFT JOIN (SELECT o.user_id, o.provider, o.account_id, o.connection_id, pe.ended_on
               FROM owned o JOIN {ENDED_CONNECTIONS} pe USING (connection_id)) p
           ON p.user_id = a.user_id AND p.provider = a.provider
          AND p.account_id = a.account_id AND p.connection_id <> a.connection_id
          AND p.ended_on <= a.first_snapshot
    GROUP BY a.connection_id, a.account_id"""


def _in_force(snapshots: str) -> str:
    """For every trading day and every (connection, account) of ``snapshots``, the
    snapshot in force that day: the latest on or before it, or the first one for earlier
    days ("carried back", so a new connection still gets a history), within the days the
    connection counts for (``_spans``)."""
    return f"""
    SELECT d.date, s.user_id, s.connection_id, s.provider, s.account_id,
           coalesce(max(s.as_of_date) FILTER (WHERE s.as_of_date <= d.date),
                    min(s.as_of_date)) AS as_of_date
    FROM (SELECT DISTINCT date FROM market.daily_bars) d
    CROSS JOIN (SELECT DISTINCT user_id, connection_id, provider, account_id, as_of_date
                FROM {snapshots}) s
    JOIN ({_spans(snapshots)}) span USING (connection_id, account_id)
    WHERE d.date >= span.first_day AND d.date < span.end_day
    GROUP BY ALL"""


# Positions are daily snapshots; a day is valued with the positions snapshot in force.
VALUED_ACCOUNTS_CTE = f"""
positions_in_force AS ({_in_force("brokerage.positions")}),
valued AS (
    SELECT f.date, f.user_id, f.connection_id, f.provider, f.account_id,
           sum(p.quantity * b.close) AS market_value,
           count(b.close) AS positions_priced,
           count(*) - count(b.close) AS positions_unpriced,
           f.as_of_date AS holdings_as_of
    FROM positions_in_force f
    JOIN brokerage.positions p USING (connection_id, account_id, as_of_date)
    LEFT JOIN market.daily_bars b ON b.symbol = p.symbol AND b.date = f.date
    GROUP BY ALL
)"""

DAILY_PORTFOLIO_VALUE_SQL = f"""
WITH {VALUED_ACCOUNTS_CTE}
SELECT * FROM valued ORDER BY date, user_id, connection_id, account_id
"""

# A user's net worth per trading day across all their connections: positions valued at
# that day's close plus the cash of each account's balance snapshot in force.
NET_WORTH_SQL = f"""
WITH {VALUED_ACCOUNTS_CTE},
cash_in_force AS ({_in_force("brokerage.accounts")}),
cash AS (
    SELECT f.date, f.user_id, f.connection_id, a.cash
    FROM cash_in_force f JOIN brokerage.accounts a USING (connection_id, account_id, as_of_date)
),
per_connection AS (
    SELECT date, user_id, connection_id, market_value AS invested, 0.0 AS cash FROM valued
    UNION ALL
    SELECT date, user_id, connection_id, 0.0, cash FROM cash
)
SELECT date, user_id,
       sum(coalesce(invested, 0)) AS invested,
       sum(coalesce(cash, 0)) AS cash,
       sum(coalesce(invested, 0)) + sum(coalesce(cash, 0)) AS net_worth,
       count(DISTINCT connection_id) AS connections
FROM per_connection GROUP BY ALL ORDER BY date, user_id
"""

_OWNER_COLUMNS = (
    MartColumn("user_id", "VARCHAR", "Owning Dashtam user (UUID).", False),
    MartColumn(
        "connection_id", "VARCHAR", "Provider connection that served the rows (UUID).", False
    ),
    MartColumn("provider", "VARCHAR", "Brokerage connection's registry slug.", False),
    MartColumn("account_id", "VARCHAR", "Masked account id (**** + last 4).", False),
)

# Current-vintage FRED values averaged per month; quarterly series fill their quarter's
# months so every month has every series (a balanced panel for models).
MACRO_MONTHLY_PANEL_SQL = """
WITH latest AS (
    SELECT o.series_id, o.date, o.value, s.frequency
    FROM macro.fred_observations o LEFT JOIN macro.fred_series s USING (series_id)
    WHERE o.realtime_end = DATE '9999-12-31' AND o.value IS NOT NULL
),
monthly AS (
    SELECT series_id, date_trunc('month', date)::DATE AS month, avg(value) AS value
    FROM latest WHERE coalesce(frequency, '') NOT ILIKE 'quarterly%' GROUP BY ALL
    UNION ALL
    SELECT series_id, (date_trunc('quarter', date) + to_months(m))::DATE AS month, value
    FROM latest, range(3) AS r(m) WHERE frequency ILIKE 'quarterly%'
)
SELECT month, series_id, value FROM monthly ORDER BY month, series_id
"""

MARTS: tuple[MartSpec, ...] = (
    MartSpec(
        name="holdings",
        datasets=(Dataset.POSITIONS,),
        mart_deps=(),
        description=(
            "Normalized holdings: the latest positions snapshot of every brokerage account of "
            "every connection, by user, with cost basis, unrealized gain and weight in the "
            "account."
        ),
        sql=HOLDINGS_SQL,
        key_columns=("connection_id", "account_id", "symbol"),
        columns=(
            *_OWNER_COLUMNS,
            MartColumn("symbol", "VARCHAR", "Ticker (or OCC symbol) held.", False),
            MartColumn("asset_class", "VARCHAR", "Asset class as the broker reports it."),
            MartColumn("quantity", "DOUBLE", "Shares or contracts held (negative: short)."),
            MartColumn("market_value", "DOUBLE", "Market value, USD, at the snapshot."),
            MartColumn("average_cost", "DOUBLE", "Average cost per share, USD."),
            MartColumn("cost_basis", "DOUBLE", "quantity * average_cost, USD."),
            MartColumn(
                "unrealized_gain", "DOUBLE",
                "market_value - cost_basis, USD (negative: a loss).",
            ),
            MartColumn(
                "weight_in_account", "DOUBLE",
                "Share of the account's total market value, 0..1 (NULL when it is 0).",
            ),
            MartColumn("as_of_date", "DATE", "Date of the positions snapshot used.", False),
        ),
    ),
    MartSpec(
        name="daily_portfolio_value",
        datasets=(Dataset.POSITIONS, Dataset.DAILY_BARS),
        mart_deps=("holdings",),
        description=(
            "Daily market value per user, connection and account: positions in force that "
            "day times that day's close from market.daily_bars (unpriced positions, e.g. "
            "options, are counted)."
        ),
        sql=DAILY_PORTFOLIO_VALUE_SQL,
        key_columns=("date", "connection_id", "account_id"),
        columns=(
            MartColumn("date", "DATE", "Trading date valued (a date of market.daily_bars).", False),
            *_OWNER_COLUMNS,
            MartColumn(
                "market_value", "DOUBLE",
                "Sum of quantity * that day's close over priced positions, USD.",
            ),
            MartColumn("positions_priced", "BIGINT", "Positions with a close that day."),
            MartColumn(
                "positions_unpriced", "BIGINT",
                "Positions without a close that day (options, unknown symbols): not valued.",
            ),
            MartColumn(
                "holdings_as_of", "DATE",
                "Date of the positions snapshot in force (the first one for earlier days).",
            ),
        ),
    ),
    MartSpec(
        name="net_worth",
        datasets=(Dataset.POSITIONS, Dataset.ACCOUNTS, Dataset.DAILY_BARS),
        mart_deps=(),
        description=(
            "A user's net worth per trading day over all their connections: positions "
            "valued at that day's close plus the cash of each account's balance snapshot in "
            "force that day."
        ),
        sql=NET_WORTH_SQL,
        key_columns=("date", "user_id"),
        columns=(
            MartColumn("date", "DATE", "Trading date (a date of market.daily_bars).", False),
            MartColumn("user_id", "VARCHAR", "Dashtam user (UUID).", False),
            MartColumn("invested", "DOUBLE", "Priced positions at that day's close, USD."),
            MartColumn("cash", "DOUBLE", "Cash balances of the snapshots in force, USD."),
            MartColumn("net_worth", "DOUBLE", "invested + cash, USD."),
            MartColumn("connections", "BIGINT", "Connections contributing that day."),
        ),
    ),
    MartSpec(
        name="macro_monthly_panel",
        datasets=(Dataset.FRED_OBSERVATIONS, Dataset.FRED_SERIES),
        mart_deps=(),
        description=(
            "Monthly panel of the current FRED vintage (long: month, series_id, value); "
            "daily and weekly series averaged per month, quarterly ones spread over their "
            "quarter."
        ),
        sql=MACRO_MONTHLY_PANEL_SQL,
        key_columns=("month", "series_id"),
        columns=(
            MartColumn("month", "DATE", "First day of the month.", False),
            MartColumn("series_id", "VARCHAR", "FRED series id.", False),
            MartColumn(
                "value", "DOUBLE",
                "Current-vintage value in the series' units: the month's mean (daily, weekly, "
                "monthly series) or its quarter's value (quarterly series).",
            ),
        ),
    ),
)


def mart_automation_condition() -> AutomationCondition:
    """Rebuild a mart once any upstream has new data, from whatever has landed.

    Not ``AutomationCondition.eager()``: eager also waits until no upstream partition is
    missing, and a mart reads *every* partition of its daily upstreams (the portfolio
    value reads ``market/daily_bars`` since 2023), so it would wait for thousands of days
    no nightly run will ever fetch and never build. A mart is SQL over what is in the
    lake, correct for any subset of days: it needs only that some upstream has landed
    something (so a fresh deployment does not build empty marts), that nothing upstream is
    still running (so the nightly runs finish first), and that it is not running itself.

    The trigger is reset only when the automation has requested the mart and no upstream
    landed since that request, not (as ``since_last_handled`` would) whenever the mart is
    updated: a mart run that started before an upstream landed and finishes after it must
    not swallow that update, or the night's data would reach the marts only the next night.
    The price of the rule is at most one redundant rebuild.
    """
    handled = (
        AutomationCondition.newly_requested() & ~AutomationCondition.any_deps_updated()
    ) | AutomationCondition.initial_evaluation()
    return (
        (
            AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()
        ).since(handled.with_label("requested with nothing newer upstream"))
        & AutomationCondition.any_deps_match(~AutomationCondition.missing())
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("rebuild from what landed")


def _upstream_keys(mart: MartSpec) -> list[AssetKey]:
    keys = [s.key for s in ingestion_asset_specs() if s.dataset.dataset in mart.datasets]
    return keys + [AssetKey([Domain.MARTS.value, name]) for name in mart.mart_deps]


def mart_column_schema(mart: MartSpec, actual_types: dict[str, str] | None = None) -> TableSchema:
    """The mart's columns for the UI: DuckDB types (``actual_types``, from the query
    itself, when given), descriptions, and which columns are its key."""
    types = actual_types or {}
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=types.get(c.name, c.type),
                description=(
                    f"Key column ({', '.join(mart.key_columns)}). " if c.name in mart.key_columns
                    else ""
                ) + c.description,
                constraints=TableColumnConstraints(nullable=c.nullable, unique=False),
            )
            for c in mart.columns
        ]
    )


def mart_check_specs(mart: MartSpec) -> list[AssetCheckSpec]:
    """The same two checks as every ingestion asset: ``valid_rows`` (WARN) and
    ``unique_keys`` (blocking)."""
    not_null = [c.name for c in mart.columns if not c.nullable]
    return [
        AssetCheckSpec(
            VALID_ROWS_CHECK,
            asset=mart.key,
            description=(
                f"No NULL in {', '.join(not_null)} and no infinite number in any DOUBLE "
                "column (WARN)."
            ),
        ),
        AssetCheckSpec(
            UNIQUE_KEYS_CHECK,
            asset=mart.key,
            blocking=True,
            description=f"The key ({', '.join(mart.key_columns)}) is unique in marts.{mart.name}.",
        ),
    ]


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _mart_checks(mart: MartSpec, con: duckdb.DuckDBPyConnection) -> list[AssetCheckResult]:
    """Run both checks on the freshly computed mart (registered as ``mart_rows``)."""
    not_null = [c.name for c in mart.columns if not c.nullable]
    doubles = [c.name for c in mart.columns if c.type == "DOUBLE"]
    bad_conditions = [f'"{c}" IS NULL' for c in not_null] + [
        f'isinf("{c}")' for c in doubles
    ]
    where = " OR ".join(bad_conditions) or "false"
    bad = _scalar(con, f"SELECT count(*) FROM mart_rows WHERE {where}")
    key = ", ".join(f'"{c}"' for c in mart.key_columns)
    duplicates = _scalar(
        con, f"SELECT count(*) FROM (SELECT {key} FROM mart_rows GROUP BY ALL HAVING count(*) > 1)"
    )
    return [
        AssetCheckResult(
            asset_key=mart.key, check_name=VALID_ROWS_CHECK, passed=bad == 0,
            severity=AssetCheckSeverity.WARN, metadata={"invalid_rows": int(bad)},
            description="every row is complete" if bad == 0 else f"{bad} incomplete row(s)",
        ),
        AssetCheckResult(
            asset_key=mart.key, check_name=UNIQUE_KEYS_CHECK, passed=duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicate_keys": int(duplicates), "key": ", ".join(mart.key_columns)},
        ),
    ]


def ended_connections(settings: Settings) -> list[tuple[str, dt.date]]:
    """Every DISCONNECTED connection and the market date it ended (DISCONNECTED is
    terminal, so its last update is the disconnection)."""
    return [
        (str(c.id), c.updated_at.astimezone(MARKET_TZ).date())
        for c in ConnectionRepository.from_settings(settings).find_all()
        if c.status is ConnectionStatus.DISCONNECTED
    ]


def compute_mart(
    con: duckdb.DuckDBPyConnection, mart: MartSpec, ended: Sequence[tuple[str, dt.date]] = ()
) -> duckdb.DuckDBPyRelation:
    """``mart``'s rows on a ``lake_connection``, with ``ended`` connections (id, the date
    they ended) as the ``ended_connections`` relation its SQL reads."""
    con.register(ENDED_CONNECTIONS, pa.table(
        [[c for c, _ in ended], [d for _, d in ended]], schema=ENDED_SCHEMA))
    return con.sql(mart.sql)


def build_mart_asset(mart: MartSpec) -> AssetsDefinition:
    @asset(
        key=mart.key,
        group_name=Domain.MARTS.value,
        description=mart.description + f"\n\nWarehouse view `marts.{mart.name}` (key: "
        f"{', '.join(mart.key_columns)}).",
        deps=_upstream_keys(mart),
        required_resource_keys={STORAGE_RESOURCE_KEY, STATE_RESOURCE_KEY},
        owners=OWNERS,
        kinds={"duckdb", "parquet", "sql"},
        tags={"dashtam/mart": mart.name},
        automation_condition=mart_automation_condition(),
        metadata={
            "dagster/table_name": f"warehouse.marts.{mart.name}",
            "dagster/column_schema": mart_column_schema(mart),
            "key": ", ".join(mart.key_columns),
        },
        check_specs=mart_check_specs(mart),
    )
    def _mart(context: AssetExecutionContext) -> MaterializeResult:
        storage: StorageResource = context.resources.storage
        settings = settings_from(storage, context.resources.state)
        lake = storage.lake(settings)  # writes under the state store's table lock
        with lake_connection(lake.root) as con:
            relation = compute_mart(con, mart, ended_connections(settings))
            types = {n: str(t) for n, t in zip(relation.columns, relation.types, strict=True)}
            table = relation.to_arrow_table()
            con.register("mart_rows", table)
            checks = _mart_checks(mart, con)
        path = write_mart(lake, mart.name, table)
        storage.warehouse(settings).ensure_views()
        return MaterializeResult(
            metadata={
                "dagster/row_count": MetadataValue.int(table.num_rows),
                "dagster/column_schema": mart_column_schema(mart, types),
                "path": MetadataValue.path(str(path)),
                "sql": MetadataValue.md(f"```sql\n{mart.sql.strip()}\n```"),
            },
            check_results=checks,
        )

    return _mart


def build_mart_assets(marts: Sequence[MartSpec] = MARTS) -> list[AssetsDefinition]:
    return [build_mart_asset(m) for m in marts]
