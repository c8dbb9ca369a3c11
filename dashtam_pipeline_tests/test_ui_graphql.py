"""What analysts see in the Dagster UI, asserted through the webserver's GraphQL API.

The same facts ``test_ui_browser.py`` reads off the pages, without a browser, so a
regression fails here first: provider → dataset → mart lineage; each FRED series
partition showing its own row count; a skipped asset recorded as skipped (no
materialization, an observation with its reason, run tags) and not as a plain success;
readable column descriptions, constraints and DuckDB types; marts with checks; and daily
market assets that are not "0% filled" after the demo's month of history.

One module-scoped instance (a few assets materialized in-process) and one real
``dagster-webserver`` over it keep this tier to about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashtam_pipeline_tests.ui_helpers import (
    ASSET_NODES,
    LATEST_OBSERVATION,
    PARTITION_MATERIALIZATION,
    RUNS_TAGGED,
    Webserver,
    entries,
    run_small_demo,
    warehouse_count,
    webserver,
)

#: one worker runs the whole module, so its module fixtures (a webserver) start once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui_graphql")]

DUCKDB_TYPES = {"VARCHAR", "DOUBLE", "DATE", "TIMESTAMPTZ", "BIGINT", "INTEGER", "BOOLEAN"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("ui_graphql")
    run_small_demo(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[Webserver]:
    with webserver(demo_dir) as running:
        yield running


@pytest.fixture(scope="module")
def nodes(server: Webserver) -> dict[str, dict[str, Any]]:
    data = server.graphql(ASSET_NODES)
    return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}


def _deps(nodes: dict[str, dict[str, Any]], key: str) -> set[str]:
    return {"/".join(d["path"]) for d in nodes[key]["dependencyKeys"]}


def test_lineage_runs_from_provider_to_dataset_to_mart(nodes: dict[str, dict[str, Any]]) -> None:
    assert nodes["providers/fmp"]["groupName"] == "providers"
    assert not nodes["providers/fmp"]["isMaterializable"]  # an external asset: an API
    # both quote providers are upstream, and the order they are tried in is stated
    assert {"providers/fmp", "providers/polygon"} <= _deps(nodes, "market/quotes")
    quotes_meta = entries(nodes["market/quotes"]["metadataEntries"])
    assert quotes_meta["fallback_order"] == "fmp → polygon"
    assert "providers/fred" in _deps(nodes, "macro/fred_observations")
    assert "macro/fred_observations" in _deps(nodes, "marts/macro_monthly_panel")
    assert "providers/chase_file" in _deps(nodes, "brokerage/chase_file_transactions")


def test_a_fred_partition_shows_its_own_row_count(server: Webserver, demo_dir: Path) -> None:
    counts = {}
    for series in ("UNRATE", "GDP"):
        data = server.graphql(
            PARTITION_MATERIALIZATION, {"path": ["macro", "fred_observations"], "partition": series}
        )
        (mat,) = data["assetNodes"][0]["assetMaterializations"]
        meta = entries(mat["metadataEntries"])
        expected = warehouse_count(
            demo_dir, f"select count(*) from macro.fred_observations where series_id = '{series}'"
        )
        assert meta["dagster/row_count"] == expected, (series, meta)
        assert meta["rows_written"] == expected
        assert meta["table_row_count"] == warehouse_count(
            demo_dir, "select count(*) from macro.fred_observations"
        )
        assert "calls" not in meta, "a 3-series run's calls are not one series' calls"
        assert meta["run_partitions"] == 3 and meta["run_calls"] > 0
        counts[series] = meta["dagster/row_count"]
    assert counts["UNRATE"] != counts["GDP"]


def test_a_skipped_asset_is_not_materialized_and_says_why(server: Webserver) -> None:
    data = server.graphql(LATEST_OBSERVATION, {"path": ["market", "options_chain"]})
    node = data["assetNodes"][0]
    assert node["assetMaterializations"] == []
    (observation,) = node["assetObservations"]
    meta = entries(observation["metadataEntries"])
    assert "rights profile does not include options_chain" in meta["skipped"]
    assert observation["description"].startswith("skipped: ")

    runs = server.graphql(RUNS_TAGGED, {"key": "dashtam/skipped", "value": "market/options_chain"})
    (run,) = [r for r in runs["runsOrError"]["results"] if r["runId"] == observation["runId"]]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"  # skipping never fails the run …
    # … but a run whose every asset was skipped (options is the only unpartitioned asset of
    # its selection, so it ran alone) says so: it is not a plain success
    assert tags["dashtam/outcome"] == "skipped"
    assert "DASHTAM_RIGHTS_PROFILE=pro" in tags["dashtam/skipped.market.options_chain"]


def test_columns_are_described_with_duckdb_types_and_readable_constraints(
    nodes: dict[str, dict[str, Any]],
) -> None:
    for key, node in nodes.items():
        if not node["isMaterializable"]:
            continue
        schema = entries(node["metadataEntries"]).get("dagster/column_schema")
        assert schema, f"{key} has no column schema"
        for column in schema["columns"]:
            assert column["type"] in DUCKDB_TYPES, (key, column)
            assert column["description"], (key, column["name"])
            assert not any("<Check" in text for text in column["constraints"]["other"])
    quotes = entries(nodes["market/quotes"]["metadataEntries"])["dagster/column_schema"]
    by_name = {c["name"]: c for c in quotes["columns"]}
    assert "previous_close" in by_name["change"]["description"]
    assert "> 0" in by_name["price"]["constraints"]["other"]
    assert "≥ day_low" in by_name["day_high"]["constraints"]["other"]


def test_marts_have_checks_and_duckdb_types(server: Webserver) -> None:
    data = server.graphql(
        """query { assetNodes(assetKeys: [{path: ["marts", "macro_monthly_panel"]}]) {
             assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
             assetMaterializations(limit: 1) { metadataEntries { label
               ... on TableSchemaMetadataEntry { schema { columns { name type } } } } } } }"""
    )
    node = data["assetNodes"][0]
    checks = {c["name"]: c["blocking"] for c in node["assetChecksOrError"]["checks"]}
    assert checks == {"valid_rows": False, "unique_keys": True}
    (mat,) = node["assetMaterializations"]
    columns = entries(mat["metadataEntries"])["dagster/column_schema"]["columns"]
    assert {c["name"]: c["type"] for c in columns} == {
        "month": "DATE", "series_id": "VARCHAR", "value": "DOUBLE",
    }


def test_daily_market_assets_are_not_zero_percent_filled(nodes: dict[str, dict[str, Any]]) -> None:
    for key in ("market/quotes", "market/daily_bars"):
        stats = nodes[key]["partitionStats"]
        assert stats["numMaterialized"] >= 20, (key, stats)
        assert stats["numMaterialized"] / stats["numPartitions"] >= 0.01, (key, stats)


def test_provider_health_is_observed(server: Webserver) -> None:
    data = server.graphql(LATEST_OBSERVATION, {"path": ["providers", "fred"]})
    (observation,) = data["assetNodes"][0]["assetObservations"]
    meta = entries(observation["metadataEntries"])
    assert meta["last_outcome"] == "served" and meta["circuit_state"] == "closed"
    assert meta["calls"] > 0
    assert "not counted" in meta["quota"]  # sandbox calls spend no quota: said, not "0"
