"""Data-quality queries over the lake, for asset checks and metadata.

They read the Parquet files with an in-memory DuckDB connection, so a check never needs
the warehouse file (and never waits for an analyst's read lock on it).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dashtam_pipeline.registry import DatasetSpec


def _glob(lake_root: Path, table: str) -> str:
    schema, name = table.split(".")
    return str(lake_root / schema / name / "*.parquet")


def _has_files(lake_root: Path, table: str) -> bool:
    schema, name = table.split(".")
    return any((lake_root / schema / name).glob("*.parquet"))


def duplicate_key_count(lake_root: Path, spec: DatasetSpec) -> int:
    """How many key values appear more than once in the whole table (0 when healthy)."""
    if not _has_files(lake_root, spec.table):
        return 0
    key = ", ".join(f'"{k}"' for k in spec.key)
    sql = (
        f"SELECT count(*) FROM (SELECT {key} FROM read_parquet(?, union_by_name=true) "
        f"GROUP BY ALL HAVING count(*) > 1)"
    )
    with duckdb.connect() as con:
        return int(con.execute(sql, [_glob(lake_root, spec.table)]).fetchone()[0])


def row_count(lake_root: Path, table: str, *, provider: str | None = None) -> int:
    """Rows in a table, optionally only those served by one provider label."""
    if not _has_files(lake_root, table):
        return 0
    sql = "SELECT count(*) FROM read_parquet(?, union_by_name=true)"
    params: list[object] = [_glob(lake_root, table)]
    if provider is not None:
        sql += " WHERE provider = ?"
        params.append(provider)
    with duckdb.connect() as con:
        return int(con.execute(sql, params).fetchone()[0])
