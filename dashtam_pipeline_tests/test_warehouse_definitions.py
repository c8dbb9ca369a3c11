"""ensure_views writes only what changed, all of it in one transaction, and works on a
warehouse file that has no ``ops._views`` yet (a file someone else created)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dashtam_pipeline.storage.warehouse import (
    VIEWS_TABLE,
    Warehouse,
    _fingerprint,
    view_definitions,
)


def recorded(path: Path) -> dict[str, tuple[str, object]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"SELECT name, fingerprint, updated_at FROM {VIEWS_TABLE}").fetchall()
    return {name: (fingerprint, updated_at) for name, fingerprint, updated_at in rows}


def test_a_file_without_the_bookkeeping_table_gets_every_definition(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:  # an existing file: no ops schema, no ops._views
        con.execute("CREATE TABLE main.notes (text VARCHAR)")
    warehouse = Warehouse(path, tmp_path / "lake")
    assert warehouse.ensure_views() is True
    definitions = view_definitions(warehouse.lake)
    assert {name: fp for name, (fp, _) in recorded(path).items()} == {
        name: _fingerprint(sql) for name, sql in definitions.items()
    }
    _, rows = warehouse.query("SELECT count(*) FROM macro.fred_observations")
    assert rows == [(0,)]
    _, notes = warehouse.query("SELECT count(*) FROM main.notes")
    assert notes == [(0,)]  # what was in the file is untouched


def test_unchanged_definitions_are_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    warehouse = Warehouse(path, tmp_path / "lake")
    assert warehouse.ensure_views() is True
    before = recorded(path)
    assert warehouse.ensure_views() is True
    assert recorded(path) == before  # same fingerprints, same updated_at: nothing written
    assert warehouse.register_view("marts.answer", "SELECT 42 AS answer") is True
    after = recorded(path)
    assert {k: v for k, v in after.items() if k != "marts.answer"} == before
    assert after["marts.answer"][0] == _fingerprint(
        'CREATE OR REPLACE VIEW "marts"."answer" AS SELECT 42 AS answer'
    )
    assert warehouse.query("SELECT answer FROM marts.answer") == (["answer"], [(42,)])


def test_a_failing_definition_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    warehouse = Warehouse(path, tmp_path / "lake")
    assert warehouse.ensure_views() is True
    before = recorded(path)
    with pytest.raises(duckdb.Error):
        warehouse._apply(  # one good and one broken definition: all or nothing
            {"marts.good": 'CREATE OR REPLACE VIEW "marts"."good" AS SELECT 1 AS x',
             "marts.bad": 'CREATE OR REPLACE VIEW "marts"."bad" AS SELECT * FROM nowhere'}
        )
    assert recorded(path) == before
    with duckdb.connect(str(path), read_only=True) as con:
        views = {row[0] for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'"
        ).fetchall()}
    assert views == set()
