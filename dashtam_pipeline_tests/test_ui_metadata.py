"""The column schemas and step names the UI shows, checked without an instance (unit tier)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pytest

from dashtam_pipeline.assets.factory import build_ingestion_assets
from dashtam_pipeline.assets.marts import MARTS
from dashtam_pipeline.assets.metadata import (
    constraint_text,
    frame_partition_counts,
    model_column_schema,
    partition_expression,
)
from dashtam_pipeline.assets.sources import provider_source_specs
from dashtam_pipeline.registry import DATASETS, PROVIDER_REGISTRY, Partitioning
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.ops import QuarantineSchema
from dashtam_pipeline.settings import load_settings

DUCKDB_TYPES = {"VARCHAR", "DOUBLE", "DATE", "TIMESTAMPTZ", "BIGINT", "INTEGER", "BOOLEAN"}


@pytest.mark.parametrize("model", [*SCHEMAS.values(), QuarantineSchema], ids=lambda m: m.__name__)
def test_every_field_is_described_and_every_check_reads_as_text(
    model: type[pa.DataFrameModel],
) -> None:
    schema = model_column_schema(model)
    for column in schema.columns:
        assert column.description and len(column.description) > 10, column.name
        assert column.type in DUCKDB_TYPES
        for text in column.constraints.other or []:
            assert "<Check" not in text and len(text) <= 60, text


def test_constraint_texts() -> None:
    assert constraint_text(pa.Check.gt(0)) == "> 0"
    assert constraint_text(pa.Check.ge(-1)) == "≥ -1"
    assert constraint_text(pa.Check.isin(["BUY", "SELL"])) == "one of BUY, SELL"
    many = constraint_text(pa.Check.isin([str(i) for i in range(9)]))
    assert many.endswith(", …") and many.count(",") == 6
    with pytest.raises(KeyError):
        constraint_text(pa.Check(lambda s: s > 0, name="no_text_for_this"))


def test_row_checks_show_on_their_columns() -> None:
    quotes = {c.name: c for c in model_column_schema(SCHEMAS[DATASETS[0].dataset]).columns}
    assert "≥ day_low" in (quotes["day_high"].constraints.other or [])
    assert "finite (no ±infinity)" not in (quotes["symbol"].constraints.other or [])


def test_partition_expression_counts_rows_per_partition() -> None:
    news = next(d for d in DATASETS if d.table == "news.articles")
    expression = partition_expression(news, Partitioning.TRADING_DAY)
    assert expression is not None
    frame = pd.DataFrame({"published_at": pd.to_datetime(
        ["2026-11-20T03:00:00Z", "2026-11-20T15:00:00Z", "2026-11-21T15:00:00Z"], utc=True)})
    # 03:00 UTC is still the 19th in New York
    assert frame_partition_counts(frame, expression) == {
        "2026-11-19": 1, "2026-11-20": 1, "2026-11-21": 1,
    }


def test_step_names_say_what_they_compute() -> None:
    names = {a.node_def.name for a in build_ingestion_assets(load_settings())}
    assert "macro__fred_observations_and_fred_series" in names
    assert "macro__fred_observations" not in names


def test_one_external_asset_per_provider_and_marts_declare_keys() -> None:
    keys = {s.key.to_user_string() for s in provider_source_specs()}
    assert keys == {f"providers/{p.slug.value}" for p in PROVIDER_REGISTRY}
    for mart in MARTS:
        assert mart.key_columns and set(mart.key_columns) <= {c.name for c in mart.columns}
        assert all(c.type in DUCKDB_TYPES and c.description for c in mart.columns)
