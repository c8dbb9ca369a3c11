"""Integration over real sockets: the sandbox served on loopback, the pipeline configured
as in production (base URLs, keys, no DASHTAM_SANDBOX), assets materialized in a real
Dagster instance. Covers fallback, quarantine of bad rows and files, skipping, and that
no key or token lands anywhere under DASHTAM_DATA_DIR or in captured output."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey

from dashtam_pipeline.connections import (
    connection_json,
    list_connections,
)
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.resilience.audit import recent_calls
from dashtam_pipeline.resilience.dlq import DeadLetterQueue
from dashtam_pipeline.resilience.replay import replay
from dashtam_pipeline.runner import RunPlan, execute_plans
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.store import StateStore, state_store
from dashtam_pipeline_tests.loopback import (
    KEYS,
    configured_sandbox,
    connect_schwab_like_a_user,
    materialize,
    query,
)
from dashtam_pipeline_tests.payloads import payload_path

pytestmark = pytest.mark.integration

@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        yield running


def test_production_configuration_over_loopback(server: SandboxServer, capfd) -> None:
    connect_schwab_like_a_user()
    report = materialize()
    assert report.ok, {k: (a.status, a.detail) for k, a in report.assets.items()}
    skipped = {k for k, a in report.assets.items() if a.status == "skipped"}
    assert skipped == {"market/options_chain"}  # basic rights profile
    assert "options" not in " ".join(server.app.request_counts())  # no call was made ...
    settings = load_settings()
    denials = [c for c in recent_calls(state_store(settings), "polygon")
               if c["outcome"] == "rights_denied"]
    assert denials and denials[0]["rights_profile"] == "basic"  # ... but it is recorded
    assert query("select distinct provider from market.quotes") == [("fmp",)]
    assert sorted(query("select distinct symbol from market.quotes")) == [("AAPL",), ("BRK.B",)]
    assert sorted(r[0] for r in query("select distinct provider from brokerage.transactions")) == [
        "alpaca", "schwab"]
    news = query("select symbol, query from news.articles group by all order by 2")
    assert ("AAPL", "AAPL") in news and (None, "inflation") in news
    counts = server.app.request_counts()
    assert counts["fmp"] > 0 and counts["fred"] > 0 and counts.get("polygon", 0) == 0

    # no key or token anywhere under the data dir, nor in what the run printed
    stored = b"".join(p.read_bytes() for p in load_settings().data_dir.rglob("*") if p.is_file())
    printed = "".join(capfd.readouterr())
    for value in KEYS.values():
        assert value.encode() not in stored, f"{value} stored in clear"
        assert value not in printed
    assert b"access_token" not in stored  # tokens are in the state store only encrypted


def test_fmp_down_polygon_serves_quotes_and_bars(server: SandboxServer) -> None:
    server.app.add_fault(r"^/fmp/", status=503)
    report = materialize("key:market/quotes or key:market/daily_bars", partition="2026-11-20")
    assert report.ok, {k: (a.status, a.detail) for k, a in report.assets.items()}
    assert query("select distinct provider from market.quotes") == [("polygon",)]
    assert query("select distinct provider from market.daily_bars") == [("polygon",)]
    settings = load_settings()
    with get_instance(settings) as instance:
        event = instance.get_latest_materialization_event(AssetKey(["market", "quotes"]))
    fallback = event.asset_materialization.metadata["fallback"].value
    assert [a["provider"] for a in fallback] == ["fmp", "polygon"]
    # FMP failed (or its breaker, opened by the other asset's failures, refused it)
    assert fallback[0]["outcome"] in ("unavailable", "circuit_open")
    assert fallback[1]["outcome"] == "served"


def test_every_provider_down_fails_the_asset_by_name(server: SandboxServer) -> None:
    server.app.add_fault(r"^/(fmp|polygon)/", status=503)
    report = materialize("key:market/daily_bars", partition="2026-11-20")
    assert not report.ok
    entry = report.assets["market/daily_bars"]
    assert entry.status == "failed"
    assert "no provider could serve market.daily_bars" in entry.detail
    # the failed partition waits in the dead-letter queue ...
    settings = load_settings()
    (letter,) = DeadLetterQueue.from_settings(settings).list(status="pending")
    assert (letter.asset_key, letter.partition_key, letter.provider) == (
        "market/daily_bars", "2026-11-20", "polygon")
    assert letter.error_kind in ("unavailable", "circuit_open")
    assert letter.request["symbols"] == ["AAPL", "BRK.B"]
    # ... every provider's breaker capped what the dead providers received
    counts = server.app.request_counts()
    assert counts["fmp"] <= 3 * 2 and counts["polygon"] <= 3 * 2
    # ... and once they are back, a replay fills the gap exactly once
    server.app.clear_faults()
    server.app.reset()
    for slug in ("fmp", "polygon"):
        StateStore(settings.state_url).execute(
            "DELETE FROM circuit_breakers WHERE provider = ?", (slug,))
    assert replay(settings, in_process=True).ok
    (done,) = DeadLetterQueue.from_settings(settings).list()
    assert done.status == "replayed"
    assert query("select count(*), count(distinct symbol) from market.daily_bars") == [(2, 2)]
    assert replay(settings, in_process=True).outcomes == []  # nothing pending any more


def test_bad_rows_are_quarantined_and_good_rows_land(server: SandboxServer) -> None:
    bad_quote = [{
        "symbol": "AAPL", "name": "Apple Inc.", "price": -5.0, "changePercentage": 0.1,
        "change": 0.2, "volume": 100, "dayLow": 10.0, "dayHigh": 9.0, "yearHigh": 1.0,
        "yearLow": 1.0, "marketCap": 1.0, "priceAvg50": 1.0, "priceAvg200": 1.0,
        "exchange": "NASDAQ", "open": 1.0, "previousClose": 1.0, "timestamp": 1763758800,
    }]
    server.app.add_fault(r"^/fmp/stable/quote$", status=200, body=json.dumps(bad_quote), count=1)
    report = materialize("key:market/quotes", partition="2026-11-20")
    assert report.ok  # bad rows warn, they do not fail the run
    assert "market/quotes:valid_rows" in report.warned_checks
    rows = query("select provider, dataset, reason, record from ops.quarantine")
    assert len(rows) == 1
    provider, dataset, reason, record = rows[0]
    assert (provider, dataset) == ("fmp", "market.quotes")
    assert "price" in reason and "day_high_gte_day_low" in reason
    assert json.loads(record)["symbol"] == "AAPL"
    assert query("select symbol from market.quotes") == [("BRK.B",)]

    again = materialize("key:market/quotes", partition="2026-11-20")
    assert again.ok
    assert sorted(query("select symbol from market.quotes")) == [("AAPL",), ("BRK.B",)]
    assert len(query("select * from ops.quarantine")) == 1


def test_not_a_chase_export_is_moved_aside_with_its_reason(server: SandboxServer) -> None:
    inbox = load_settings().chase_inbox
    inbox.mkdir(parents=True)
    good = payload_path("chase_file/credit_card_personal_test_fixture_sample.csv")
    (inbox / "Chase1234_Activity_20240105.CSV").write_bytes(good.read_bytes())
    (inbox / "bank_of_elsewhere.csv").write_text("Date,Payee,Debit\n2024-01-01,Shop,12.00\n")
    report = materialize("key:brokerage/chase_file_transactions")
    assert report.ok
    assert "brokerage/chase_file_transactions:valid_rows" in report.warned_checks
    assert not (inbox / "bank_of_elsewhere.csv").exists()
    assert (inbox.parent / "quarantine" / "bank_of_elsewhere.csv").exists()
    (reason,) = query("select reason from ops.quarantine where provider = 'chase_file'")[0]
    assert "bank_of_elsewhere.csv" in reason
    landed = query("select count(*) from brokerage.transactions where provider = 'chase_file'")
    assert landed[0][0] > 0
    # the same export dropped again, under another name: no new rows
    (inbox / "Chase1234_Activity_20240106.CSV").write_bytes(good.read_bytes())
    assert materialize("key:brokerage/chase_file_transactions").ok
    assert query(
        "select count(*) from brokerage.transactions where provider = 'chase_file'"
    ) == landed


def test_missing_keys_skip_that_provider_only(server: SandboxServer, monkeypatch) -> None:
    monkeypatch.delenv("NEWS_API_KEY")
    monkeypatch.delenv("ALPACA_API_KEY_ID")
    report = materialize("group:news or group:brokerage")
    assert report.ok
    assert report.assets["news/articles"].status == "skipped"
    assert "NEWS_API_KEY" in report.assets["news/articles"].detail
    assert report.assets["brokerage/alpaca_positions"].status == "skipped"
    assert "ALPACA_API_KEY_ID" in report.assets["brokerage/alpaca_positions"].detail
    # never connected: Schwab is skipped with the command to run
    assert report.assets["brokerage/schwab_positions"].status == "skipped"
    assert "dashtam connect schwab" in report.assets["brokerage/schwab_positions"].detail
    assert report.assets["brokerage/chase_file_transactions"].status == "materialized"


def test_refused_key_revokes_the_connection_until_the_key_changes(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMP_API_KEY", "invalid")  # the sandbox answers FMP's real 401
    first = materialize("key:market/quotes", partition="2026-11-20")
    assert first.ok and query("select distinct provider from market.quotes") == [("polygon",)]
    fmp_calls = server.app.request_counts()["fmp"]
    assert fmp_calls >= 1

    # the refusal is on the connection: the next run does not even ask FMP
    (fmp,) = [connection_json(c) for c in list_connections(load_settings())
              if c.provider_slug == "fmp"]
    assert fmp["status"] == "REVOKED"
    second = materialize("key:market/quotes", partition="2026-11-19")
    assert second.ok
    assert server.app.request_counts()["fmp"] == fmp_calls
    # a new key makes it usable again
    monkeypatch.setenv("FMP_API_KEY", "fmp-key-rotated-51ab")
    assert materialize("key:market/quotes", partition="2026-11-18").ok
    assert server.app.request_counts()["fmp"] > fmp_calls
    (fmp,) = [connection_json(c) for c in list_connections(load_settings())
              if c.provider_slug == "fmp"]
    assert fmp["status"] == "ACTIVE" and fmp["last_sync_at"] is not None


def test_macro_backfill_then_nightly_costs_one_request_per_unchanged_series(
    server: SandboxServer,
) -> None:
    """The issue's "done when": from an empty data dir a backfill of the series fills
    every vintage (and their metadata, from the same /series answers); running it again
    changes nothing and asks FRED one page of /series/updates (what changed since the
    last check), nothing else."""
    first = materialize("group:macro")
    assert first.ok, {k: (a.status, a.detail) for k, a in first.assets.items()}
    fred = {k: v for k, v in server.app.request_counts().items() if k.startswith("fred ")}
    assert fred == {"fred /fred/series": 2, "fred /fred/series/observations": 2}
    table = "select * from macro.fred_observations order by all"
    stored = query(table)
    assert query("select series_id, frequency from macro.fred_series order by 1") == [
        ("GDP", "Quarterly"), ("UNRATE", "Monthly")]
    assert query("select count(*) > count(distinct (series_id, date)) "
                 "from macro.fred_observations") == [(True,)]  # revisions are kept

    server.app.reset()
    again = materialize("group:macro")

    assert again.ok, {k: (a.status, a.detail) for k, a in again.assets.items()}
    fred = {k: v for k, v in server.app.request_counts().items() if k.startswith("fred ")}
    assert fred == {"fred /fred/series/updates": 1}
    assert query(table) == stored


def test_a_backfill_of_observation_dates_lands_their_vintages_only(
    server: SandboxServer,
) -> None:
    report = materialize("group:macro", partition="GDP", start="2010-01-01", end="2011-12-31")

    assert report.ok, {k: (a.status, a.detail) for k, a in report.assets.items()}
    assert query(
        "select series_id, min(date), max(date), count(distinct realtime_start) > 1 "
        "from macro.fred_observations group by 1"
    ) == [("GDP", dt.date(2010, 1, 1), dt.date(2011, 10, 1), True)]
    assert query("select series_id from macro.fred_series") == [("GDP",)]
    run = next(iter(get_instance(load_settings()).get_runs(limit=1)))
    assert run.tags["dashtam/observation_start"] == "2010-01-01"


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"dashtam/observation_start": "2020-13-01"}, "is not a date (YYYY-MM-DD)"),
        ({"dashtam/observation_start": "2021-01-01", "dashtam/observation_end": "2020-01-01"},
         "is after dashtam/observation_end=2020-01-01"),
    ],
)
def test_a_bad_observation_window_tag_fails_the_run_by_name(
    server: SandboxServer, tags: dict[str, str], message: str
) -> None:
    """What the UI's backfill dialog lets anyone type is checked before FRED is asked."""
    keys = [AssetKey(["macro", "fred_observations"]), AssetKey(["macro", "fred_series"])]
    with get_instance(load_settings()) as instance:
        report = execute_plans(
            instance, [RunPlan(keys, {"dagster/partition": "GDP", **tags}, "bad window")],
            in_process=True,
        )
    assert {a.status for a in report.assets.values()} == {"failed"}
    assert message in report.assets["macro/fred_observations"].detail
    assert "fred" not in server.app.request_counts()
