"""Downstream marts: what analysts ask of the ingested data, as materialized tables.

Each mart is SQL over the lake's ingestion tables, run in an in-memory DuckDB connection
(so it never touches the warehouse file's lock), written atomically to
``lake/marts/<name>/<name>.parquet`` and exposed as the warehouse view ``marts.<name>``.
Their dependencies are derived from the registry, so a new brokerage feeds the holdings
mart without edits here.
"""


from collections.abc import Sequence
from dataclasses import dataclass

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from dashtam_pipeline.assets.factory import OWNERS, ingestion_asset_specs
from dashtam_pipeline.registry import Dataset, Domain
from dashtam_pipeline.resources import StorageResource
from dashtam_pipeline.storage.warehouse import lake_connection, write_mart


@dataclass(frozen=True)
class MartSpec:
    name: str
    datasets: tuple[Dataset, ...]
    mart_deps: tuple[str, ...]
    description: str
    sql: str

    @property
    def key(self) -> AssetKey:
        return AssetKey([Domain.MARTS.value, self.name])


HOLDINGS_SQL = """
WITH latest AS (
    SELECT provider, account_id, max(as_of_date) AS as_of_date
    FROM brokerage.positions GROUP BY ALL
)
SELECT p.provider, p.account_id, p.symbol, p.asset_class, p.quantity, p.market_value,
       p.average_cost,
       p.quantity * p.average_cost AS cost_basis,
       p.market_value - p.quantity * p.average_cost AS unrealized_gain,
       p.market_value / nullif(sum(p.market_value) OVER (PARTITION BY p.provider, p.account_id), 0)
           AS weight_in_account,
       p.as_of_date
FROM brokerage.positions p JOIN latest USING (provider, account_id, as_of_date)
ORDER BY p.provider, p.account_id, p.market_value DESC NULLS LAST
"""

# Positions are daily snapshots; a day is valued with the snapshot in force that day
# (the latest one on or before it), and days before the first snapshot with the first
# snapshot ("holdings carried back"), so a new connection still gets a history.
DAILY_PORTFOLIO_VALUE_SQL = """
WITH snapshots AS (
    SELECT DISTINCT provider, account_id, as_of_date FROM brokerage.positions
),
days AS (SELECT DISTINCT date FROM market.daily_bars),
in_force AS (
    SELECT d.date, s.provider, s.account_id,
           coalesce(max(s.as_of_date) FILTER (WHERE s.as_of_date <= d.date),
                    min(s.as_of_date)) AS as_of_date
    FROM days d CROSS JOIN snapshots s GROUP BY ALL
)
SELECT f.date, f.provider, f.account_id,
       sum(p.quantity * b.close) AS market_value,
       count(b.close) AS positions_priced,
       count(*) - count(b.close) AS positions_unpriced,
       f.as_of_date AS holdings_as_of
FROM in_force f
JOIN brokerage.positions p USING (provider, account_id, as_of_date)
LEFT JOIN market.daily_bars b ON b.symbol = p.symbol AND b.date = f.date
GROUP BY ALL
ORDER BY f.date, f.provider, f.account_id
"""

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
            "Normalized holdings: the latest positions snapshot of every brokerage account, "
            "with cost basis, unrealized gain and weight in the account."
        ),
        sql=HOLDINGS_SQL,
    ),
    MartSpec(
        name="daily_portfolio_value",
        datasets=(Dataset.POSITIONS, Dataset.DAILY_BARS),
        mart_deps=("holdings",),
        description=(
            "Daily market value per account: positions in force that day times that day's close "
            "from market.daily_bars (unpriced positions, e.g. options, are counted)."
        ),
        sql=DAILY_PORTFOLIO_VALUE_SQL,
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
    """
    return (
        (
            AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()
        ).since_last_handled()
        & AutomationCondition.any_deps_match(~AutomationCondition.missing())
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("rebuild from what landed")


def _upstream_keys(mart: MartSpec) -> list[AssetKey]:
    keys = [s.key for s in ingestion_asset_specs() if s.dataset.dataset in mart.datasets]
    return keys + [AssetKey([Domain.MARTS.value, name]) for name in mart.mart_deps]


def build_mart_asset(mart: MartSpec) -> AssetsDefinition:
    @asset(
        key=mart.key,
        group_name=Domain.MARTS.value,
        description=mart.description + f"\n\nWarehouse view `marts.{mart.name}`.",
        deps=_upstream_keys(mart),
        required_resource_keys={"storage"},
        owners=OWNERS,
        kinds={"duckdb", "parquet", "sql"},
        tags={"dashtam/mart": mart.name},
        automation_condition=mart_automation_condition(),
        metadata={"dagster/table_name": f"warehouse.marts.{mart.name}"},
    )
    def _mart(context: AssetExecutionContext) -> MaterializeResult:
        storage: StorageResource = context.resources.storage
        lake = storage.lake()
        with lake_connection(lake.root) as con:
            table = con.sql(mart.sql).to_arrow_table()
        path = write_mart(lake.root, mart.name, table)
        storage.warehouse().ensure_views()
        return MaterializeResult(
            metadata={
                "dagster/row_count": MetadataValue.int(table.num_rows),
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(f.name, str(f.type)) for f in table.schema]
                ),
                "path": MetadataValue.path(str(path)),
                "sql": MetadataValue.md(f"```sql\n{mart.sql.strip()}\n```"),
            }
        )

    return _mart


def build_mart_assets(marts: Sequence[MartSpec] = MARTS) -> list[AssetsDefinition]:
    return [build_mart_asset(m) for m in marts]
