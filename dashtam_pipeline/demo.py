"""What ``dashtam demo`` does before and after materializing against the sandbox.

The demo must fill every contract table from a fresh clone with no keys and no network:
it drops the sample Chase exports into the inbox and connects a sandbox Schwab account
through the sandbox's real OAuth flow (authorize redirect → code → token exchange), so
the brokerage assets have something to read. Both steps are idempotent.
"""

from __future__ import annotations

import datetime as dt
import shutil
from importlib import resources

import httpx

from dashtam_pipeline.clients.base import sandboxed
from dashtam_pipeline.connections import connect_oauth_provider, oauth_flow, token_source_for
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.private_files import make_private_dirs
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.storage.warehouse import Warehouse
from dashtam_pipeline.trading_calendar import (
    market_today,
    previous_trading_day,
    trading_day_on_or_after,
    why_no_session,
)

CONTRACT_TABLES = (
    "market.quotes",
    "market.daily_bars",
    "market.fundamentals",
    "market.earnings",
    "market.options_chain",
    "macro.fred_series",
    "macro.fred_observations",
    "macro.fred_latest",
    "news.articles",
    "brokerage.accounts",
    "brokerage.positions",
    "brokerage.transactions",
    "ops.quarantine",
    "marts.holdings",
    "marts.daily_portfolio_value",
    "marts.net_worth",
    "marts.macro_monthly_panel",
)


def drop_sample_chase_files(settings: Settings) -> list[str]:
    """Copy the bundled Chase exports into ``CHASE_IMPORT_DIR`` (existing files kept)."""
    inbox = settings.chase_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    copied = []
    samples = resources.files("dashtam_pipeline.sandbox") / "samples"
    for sample in samples.iterdir():
        if sample.name.lower().endswith(".csv") and not (inbox / sample.name).exists():
            with resources.as_file(sample) as path:
                shutil.copyfile(path, inbox / sample.name)
            copied.append(sample.name)
    return copied


def connect_sandbox_schwab(settings: Settings) -> None:
    """Log in to the sandbox's Schwab OAuth server, as a person would in a browser.

    An ACTIVE connection that still yields an access token is kept; one that cannot (never
    made, EXPIRED, or its refresh refused) is reconnected, which also shows the demo's
    reconnect path: EXPIRED → ACTIVE on the same connection.
    """
    try:
        token_source_for(ProviderSlug.SCHWAB, settings).access_token()
        return
    except ProviderError:  # not connected, expired, or unknown to this sandbox: log in
        pass
    _, transport = sandboxed(settings.provider(ProviderSlug.SCHWAB), None)
    with httpx.Client(transport=transport, follow_redirects=False) as browser:
        response = browser.get(oauth_flow(ProviderSlug.SCHWAB).authorize_url(settings))
    redirect = response.headers.get("location", "")
    connect_oauth_provider("schwab", settings, redirect_url=redirect)


def market_day_note(now: dt.datetime | None = None) -> str:
    """Which session the daily market assets take today, and why on a day without one
    (a weekend or an exchange holiday has no new quote: the demo says so and carries on
    with the last completed session)."""
    today = market_today(now)
    session = previous_trading_day(today)
    closed = why_no_session(today)
    if closed is None:
        return f"market data for the last completed session, {session:%A %Y-%m-%d}"
    return (f"no trading session today ({today:%Y-%m-%d}, {closed}); market data for the "
            f"last completed session, {session:%A %Y-%m-%d}")


#: Calendar days of daily-partitioned history the demo fills (one backfill run, the daily
#: assets' ``BackfillPolicy`` size), ending with the last completed session: with only the
#: latest day filled, a daily asset shows one partition in a thousand ("0% filled") and
#: the lineage looks broken after a good demo.
DEMO_WINDOW_DAYS = 31


def recent_window(now: dt.datetime | None = None) -> tuple[str, str, str]:
    """``(selection, first, last)``: the daily-partitioned assets and the window of days
    the demo fills for them (the last ``DEMO_WINDOW_DAYS`` days up to the last completed
    session, never before the partitions start)."""
    from dashtam_pipeline.assets.factory import ingestion_asset_specs
    from dashtam_pipeline.registry import Partitioning

    last = previous_trading_day(market_today(now))
    history_start = load_settings().dashtam_history_start
    # a partition key: the first session of the window
    first = trading_day_on_or_after(
        max(last - dt.timedelta(days=DEMO_WINDOW_DAYS - 1), history_start))
    keys = [
        s.key.to_user_string() for s in ingestion_asset_specs()
        if s.partitioning is Partitioning.TRADING_DAY
    ]
    return " or ".join(f"key:{k}" for k in keys), first.isoformat(), last.isoformat()


def prepare_demo() -> None:
    settings = load_settings()
    make_private_dirs(settings.data_dir)
    copied = drop_sample_chase_files(settings)
    if copied:
        print(f"demo: dropped {len(copied)} sample Chase export(s) into {settings.chase_inbox}")
    connect_sandbox_schwab(settings)
    print("demo: sandbox Schwab account connected")
    print(f"demo: {market_day_note()}")
    Warehouse(settings.warehouse_path, settings.lake_dir).ensure_views()


def print_row_counts() -> None:
    settings = load_settings()
    counts = Warehouse(settings.warehouse_path, settings.lake_dir).row_counts()
    width = max(len(t) for t in CONTRACT_TABLES)
    print("rows per table")
    for table in CONTRACT_TABLES:
        value = counts.get(table)
        print(f"  {table:<{width}}  {value if value is not None else 'n/a':>8}")
