"""The circuit breaker as operators meet it: a real multiprocess Dagster run (every step in
its own process) of many FMP-backed steps against a dead FMP sends at most the breaker
threshold plus a few requests in total — not threshold times steps — because the breaker's
state is shared through the state store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.resilience.dlq import DeadLetterQueue
from dashtam_pipeline.runner import execute_plans, plan_runs, resolve_selection
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.loopback import configured_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        monkeypatch.setenv("DASHTAM_SYMBOLS", "AAPL,MSFT,NVDA,AMZN,GOOGL,JPM")
        yield running


def test_dead_fmp_across_step_processes(server: SandboxServer) -> None:
    server.app.add_fault(r"^/fmp/", status=503)
    settings = load_settings()
    defs = build_definitions(settings)
    keys = resolve_selection(
        defs, "key:market/fundamentals or key:market/earnings or key:market/quotes"
        " or key:market/daily_bars"
    )
    # 4 assets x 6 symbols, quotes and bars over three days: dozens of FMP calls planned
    plans = plan_runs(defs, keys, start="2026-11-17", end="2026-11-19")
    with get_instance(settings) as instance:
        report = execute_plans(instance, plans, in_process=False)

    threshold = settings.provider("fmp").breaker_threshold
    fmp_requests = server.app.request_counts().get("fmp", 0)
    # Steps run in parallel processes: attempts already in flight when the breaker opens
    # still arrive, hence "+ a few" (at most one per concurrently running FMP step).
    assert threshold <= fmp_requests <= threshold + 4, fmp_requests
    # Polygon served what it can (quotes and bars); fundamentals and earnings have no
    # fallback: they fail by name and wait in the dead-letter queue.
    assert report.assets["market/quotes"].status == "materialized"
    assert report.assets["market/daily_bars"].status == "materialized"
    for name in ("market/fundamentals", "market/earnings"):
        assert report.assets[name].status == "failed"
        assert "fmp" in report.assets[name].detail
    pending = {e.asset_key for e in DeadLetterQueue.from_settings(settings).list("pending")}
    assert pending == {"market/fundamentals", "market/earnings"}
