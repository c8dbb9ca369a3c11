"""Integration: materialize every asset over the in-process sandbox in a real (temporary)
Dagster instance, check every contract table fills, and that re-running changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.demo import CONTRACT_TABLES, prepare_demo
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.registry import DATASETS
from dashtam_pipeline.runner import execute_plans, plan_runs, resolve_selection
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.warehouse import Warehouse

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    monkeypatch.setenv("DASHTAM_RIGHTS_PROFILE", "pro")
    monkeypatch.setenv("DASHTAM_SYMBOLS", "AAPL,MSFT,BRK.B")
    monkeypatch.setenv("DASHTAM_FRED_SERIES", "GDP,UNRATE,DGS10")
    return data_dir


def materialize_all(selection: str | None = None):  # type: ignore[no-untyped-def]
    settings = load_settings()
    defs = build_definitions(settings)
    plans = plan_runs(defs, resolve_selection(defs, selection))
    with get_instance(settings) as instance:
        return execute_plans(instance, plans, in_process=True)


def row_counts() -> dict[str, int]:
    settings = load_settings()
    warehouse = Warehouse(settings.warehouse_path, settings.lake_dir)
    return {t: warehouse.query(f"select count(*) from {t}")[1][0][0] for t in CONTRACT_TABLES}


def test_every_asset_materializes_and_reruns_are_idempotent(sandbox_env: Path) -> None:
    prepare_demo()
    report = materialize_all()
    failed = {k: a.detail for k, a in report.assets.items() if a.status != "materialized"}
    assert not failed, failed
    assert report.ok and not report.failed_checks
    counts = row_counts()
    for table in CONTRACT_TABLES:
        if table == "ops.quarantine":
            continue
        assert counts[table] > 0, f"{table} is empty"
    settings = load_settings()
    warehouse = Warehouse(settings.warehouse_path, settings.lake_dir)
    _, rows = warehouse.query(
        "select symbol, provider, is_stale from market.quotes order by symbol"
    )
    assert {r[0] for r in rows} == {"AAPL", "MSFT", "BRK.B"}
    assert {r[1] for r in rows} == {"sandbox:fmp"} and not any(r[2] for r in rows)
    _, providers = warehouse.query("select distinct provider from brokerage.transactions")
    assert {p[0] for p in providers} == {"sandbox:schwab", "sandbox:alpaca", "sandbox:chase_file"}
    for spec in DATASETS:
        assert warehouse.duplicate_keys(spec.table, spec.key) == 0

    second = materialize_all()
    assert second.ok
    assert row_counts() == counts


def test_missing_settings_skip_only_that_provider(data_dir: Path, monkeypatch) -> None:
    """Outside the sandbox with only FRED pointed at a served sandbox... here: no keys at all
    means every asset is skipped with its reason, and the run still succeeds."""
    monkeypatch.setenv("DASHTAM_SANDBOX", "false")
    report = materialize_all("group:market")
    assert report.ok
    quotes = report.assets["market/quotes"]
    assert quotes.status == "skipped" and "FMP_API_KEY" in quotes.detail
    assert "POLYGON_API_KEY" in quotes.detail
