"""The loopback sandbox set-up shared by integration tests: the sandbox served on real
sockets and the pipeline configured as in production (base URLs, keys, no
DASHTAM_SANDBOX), plus helpers to materialize and query the warehouse.

A test module declares its own fixture over ``configured_sandbox`` (pytest fixtures
imported from another module trip linters), e.g.::

    @pytest.fixture
    def server(data_dir, monkeypatch):
        with configured_sandbox(monkeypatch) as running:
            yield running
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from dashtam_pipeline.connections import connect_oauth_provider
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.providers.schwab import client as schwab
from dashtam_pipeline.runner import MaterializeReport, execute_plans, plan_runs, resolve_selection
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.server import SandboxServer, environment_lines, serve
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.warehouse import Warehouse

#: Provider keys as production would have them: distinctive, so a leak is easy to find.
KEYS = {
    "FMP_API_KEY": "fmp-key-7f3a9c2e41",
    "POLYGON_API_KEY": "polygon-key-0b8d5e",
    "FRED_API_KEY": "fred-key-5c1e2d9a",
    "NEWS_API_KEY": "news-key-a4f09b7c",
    "ALPACA_API_KEY_ID": "alpaca-id-62ce1d",
    "ALPACA_API_SECRET_KEY": "alpaca-secret-9d3b77f1",
    "SCHWAB_APP_KEY": "schwab-app-key-1e4f",
    "SCHWAB_APP_SECRET": "schwab-app-secret-88a2",
}


@contextmanager
def configured_sandbox(
    monkeypatch: pytest.MonkeyPatch, app: SandboxApp | None = None
) -> Iterator[SandboxServer]:
    """Serve the sandbox (``app``: one with its own clock) and point every provider
    setting at it (needs ``data_dir``)."""
    with serve(app=app) as running:
        for line in environment_lines(running.url):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
        for name, value in KEYS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DASHTAM_SANDBOX", "false")
        # the served sandbox is treated like the real APIs, free-tier limits included:
        # lift the per-minute ones so tests do not wait on Polygon's 5 requests a minute
        for provider in ("FMP", "POLYGON", "NEWS"):
            monkeypatch.setenv(f"{provider}_REQUESTS_PER_MINUTE", "100000")
        monkeypatch.setenv("DASHTAM_SYMBOLS", "AAPL,BRK.B")
        monkeypatch.setenv("DASHTAM_FRED_SERIES", "GDP,UNRATE")
        monkeypatch.setenv("DASHTAM_NEWS_QUERIES", "AAPL,inflation")
        yield running


def materialize(
    selection: str | None = None,
    partition: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> MaterializeReport:
    """Materialize in-process through the instance in DAGSTER_HOME, as the CLI would."""
    settings = load_settings()
    defs = build_definitions(settings)
    plans = plan_runs(
        defs, resolve_selection(defs, selection), partition=partition, start=start, end=end
    )
    with get_instance(settings) as instance:
        return execute_plans(instance, plans, in_process=True)


def query(sql: str) -> list[tuple]:
    settings = load_settings()
    return Warehouse(settings.warehouse_path, settings.lake_dir).query(sql)[1]


def connect_schwab_like_a_user() -> None:
    """Follow the authorize redirect (the browser's part) and hand the URL to connect."""
    settings = load_settings()
    with httpx.Client(follow_redirects=False) as browser:
        response = browser.get(schwab.authorize_url(settings))
    assert response.status_code in (302, 303)
    connect_oauth_provider("schwab", settings, redirect_url=response.headers["location"])


def connect_schwab_with_cli(capsys: pytest.CaptureFixture[str]) -> str:
    """Follow the authorize redirect, then `dashtam connect schwab --redirect-url ...`;
    returns what the command printed."""
    from dashtam_pipeline.cli import main

    with httpx.Client(follow_redirects=False) as browser:
        response = browser.get(schwab.authorize_url(load_settings()))
    assert response.status_code in (302, 303)
    status = main(["connect", "schwab", "--redirect-url", response.headers["location"]])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out
