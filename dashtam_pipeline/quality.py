"""Data-quality queries over the lake, for asset checks and metadata.

They run on the in-memory lake connection (``storage.warehouse.lake_connection``: the
warehouse's own views and casts over the Parquet files), so a check never needs the
warehouse file and never waits for an analyst's read lock on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dashtam_pipeline.storage.warehouse import lake_connection


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def duplicate_key_count(lake_root: Path, table: str, key: Sequence[str]) -> int:
    """How many key values appear more than once in the whole table (0 when healthy)."""
    with lake_connection(lake_root) as con:
        row = con.execute(
            f"SELECT count(*) FROM (SELECT {_quoted(key)} FROM {table} "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    return int(row[0]) if row else 0


def row_count(lake_root: Path, table: str, *, provider: str | None = None) -> int:
    """Rows in a table, optionally only those served by one provider label."""
    sql = f"SELECT count(*) FROM {table}"
    params: list[object] = []
    if provider is not None:
        sql += " WHERE provider = ?"
        params.append(provider)
    with lake_connection(lake_root) as con:
        row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def partition_row_counts(
    lake_root: Path, table: str, expression: str, *, provider: str | None = None
) -> dict[str, int]:
    """Rows of a table per partition (``expression`` gives a row's partition key, see
    ``assets.metadata.partition_expression``), optionally only one provider's rows: what
    each partition's ``dagster/row_count`` says."""
    sql = f"SELECT {expression} AS k, count(*) FROM {table}"
    params: list[object] = []
    if provider is not None:
        sql += " WHERE provider = ?"
        params.append(provider)
    with lake_connection(lake_root) as con:
        rows = con.execute(sql + " GROUP BY ALL", params).fetchall()
    return {str(k): int(n) for k, n in rows if k is not None}
