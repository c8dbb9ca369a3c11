"""What ``dashtam demo`` does before and after materializing against the sandbox.

The demo must fill every contract table from a fresh clone with no keys and no network:
it drops the sample Chase exports into the inbox and connects sandbox Schwab accounts
through the sandbox's real OAuth flow (authorize redirect → code → token exchange), so
the brokerage assets have something to read. Every step is idempotent.

It shows three users (``DEMO_USERS``), each a sandbox user with their own accounts: the
operator (Schwab, the environment's Alpaca keys, Chase files in the inbox), a second
user with Schwab, and a third with their own Alpaca keys and their own Chase folder, so
the brokerage tables and the marts hold several portfolios.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

# first: the sandbox app loads every provider's sandbox routes, which import the sandbox
# core; importing a provider's sandbox module before the core would be an import cycle
import dashtam_pipeline.sandbox  # noqa: F401
from dashtam_pipeline.clients.base import sandboxed
from dashtam_pipeline.connections import (
    connect_oauth_provider,
    connect_user_keys,
    current_connection,
    oauth_flow,
    token_source_for,
)
from dashtam_pipeline.domain.provider_connection import OPERATOR_USER_ID, PROVIDER_NAMESPACE
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.private_files import make_private_dirs
from dashtam_pipeline.providers.alpaca.sandbox import sandbox_keys
from dashtam_pipeline.providers.schwab.sandbox import LOGIN_HINT, login_hint
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.warehouse import Warehouse
from dashtam_pipeline.trading_calendar import (
    market_today,
    previous_trading_day,
    trading_day_on_or_after,
    why_no_session,
)

if TYPE_CHECKING:
    from dagster import Definitions

    from dashtam_pipeline.runner import RunPlan

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


#: The bundled export the third demo user finds in their own Chase folder; the operator's
#: inbox gets the others (an export's bytes import once per inbox, so none is in both).
USER_CHASE_SAMPLE = "Chase5678_Activity_20260430.CSV"


@dataclass(frozen=True)
class DemoUser:
    """One person of the demo: their Dashtam user, the sandbox user whose accounts they
    hold, and which connections the demo makes for them."""

    label: str
    user_id: uuid.UUID
    sandbox_user: int
    schwab: bool = False
    own_alpaca_keys: bool = False
    chase_folder: bool = False


def demo_user_id(number: int) -> uuid.UUID:
    """A demo user's id: fixed, so a second demo finds the same users."""
    return uuid.uuid5(PROVIDER_NAMESPACE, f"demo-user:{number}")


DEMO_USERS = (
    DemoUser("the operator (Schwab, the ALPACA_* keys, Chase files in the inbox)",
             OPERATOR_USER_ID, 1, schwab=True),
    DemoUser("a second user (Schwab)", demo_user_id(2), 2, schwab=True),
    DemoUser("a third user (their own Alpaca keys, their own Chase folder)", demo_user_id(3),
             3, own_alpaca_keys=True, chase_folder=True),
)


def _copy_samples(folder: Path, wanted: Callable[[str], bool]) -> list[str]:
    """Copy the bundled Chase exports that ``wanted(name)`` picks into ``folder``
    (existing files kept)."""
    make_private_dirs(folder)
    copied = []
    samples = resources.files("dashtam_pipeline.sandbox") / "samples"
    for sample in samples.iterdir():
        name = sample.name
        if name.lower().endswith(".csv") and wanted(name) and not (folder / name).exists():
            with resources.as_file(sample) as path:
                shutil.copyfile(path, folder / name)
            copied.append(name)
    return copied


def drop_sample_chase_files(settings: Settings, user_id: uuid.UUID | None = None) -> list[str]:
    """Copy bundled Chase exports into ``CHASE_IMPORT_DIR`` (the operator's) or into
    ``CHASE_IMPORT_DIR/<user_id>/`` (that user's folder): the user's sample there, the
    others to the operator. Existing files are kept."""
    if user_id is None or user_id == OPERATOR_USER_ID:
        return _copy_samples(settings.chase_inbox, lambda name: name != USER_CHASE_SAMPLE)
    return _copy_samples(settings.chase_inbox / str(user_id),
                         lambda name: name == USER_CHASE_SAMPLE)


def connect_sandbox_schwab(
    settings: Settings, user_id: uuid.UUID = OPERATOR_USER_ID, sandbox_user: int = 1
) -> None:
    """Log in to the sandbox's Schwab OAuth server as sandbox user ``sandbox_user``, as a
    person would in a browser, and keep the connection as ``user_id``'s.

    An ACTIVE connection that still yields an access token is kept; one that cannot (never
    made, EXPIRED, or its refresh refused) is reconnected, which also shows the demo's
    reconnect path: EXPIRED → ACTIVE on the same connection.
    """
    existing = current_connection(ConnectionRepository.from_settings(settings),
                                  ProviderSlug.SCHWAB, user_id)
    if existing is not None:
        try:
            token_source_for(ProviderSlug.SCHWAB, settings,
                             connection_id=existing.id).access_token()
            return
        except ProviderError:  # expired, or unknown to this sandbox: log in again
            pass
    _, transport = sandboxed(settings.provider(ProviderSlug.SCHWAB), None)
    login = oauth_flow(ProviderSlug.SCHWAB).authorize_url(settings)
    login += "&" + urlencode({LOGIN_HINT: login_hint(sandbox_user)})
    with httpx.Client(transport=transport, follow_redirects=False) as browser:
        response = browser.get(login)
    redirect = response.headers.get("location", "")
    connect_oauth_provider("schwab", settings, redirect_url=redirect, user_id=user_id)


def connect_sandbox_alpaca_keys(settings: Settings, user: DemoUser) -> None:
    """Store sandbox user ``user.sandbox_user``'s own Alpaca keys, encrypted, as
    ``user``'s connection (the same connection again on a second demo)."""
    key_id, secret = sandbox_keys(settings.sandbox_data_seed, user.sandbox_user)
    connect_user_keys(settings, ProviderSlug.ALPACA, user_id=user.user_id, alias="sandbox",
                      key_id=key_id, secret_key=secret)


def prepare_demo_users(settings: Settings) -> list[DemoUser]:
    """Connect every demo user the sandbox has (``DASHTAM_SANDBOX_USERS`` may be fewer
    than three); returns those connected."""
    users = [u for u in DEMO_USERS if u.sandbox_user <= settings.dashtam_sandbox_users]
    for user in users:
        if user.schwab:
            connect_sandbox_schwab(settings, user.user_id, user.sandbox_user)
        if user.own_alpaca_keys:
            connect_sandbox_alpaca_keys(settings, user)
        if user.chase_folder:
            drop_sample_chase_files(settings, user.user_id)
    return users


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


def demo_plans(
    defs: Definitions, window: tuple[str, str, str] | None = None
) -> list[RunPlan]:
    """The demo's runs, launched together: the daily assets over ``window`` (default:
    ``recent_window()``; their latest session included, so they are not run a second time
    for it) and every other asset's default partitions, the marts last."""
    from dashtam_pipeline.runner import plan_runs, resolve_selection

    selection, first, last = window or recent_window()
    daily = resolve_selection(defs, selection)
    in_window = set(daily)
    rest = [key for key in resolve_selection(defs, None) if key not in in_window]
    return plan_runs(defs, daily, start=first, end=last) + plan_runs(defs, rest)


def prepare_demo() -> None:
    settings = load_settings()
    make_private_dirs(settings.data_dir)
    copied = drop_sample_chase_files(settings)
    if copied:
        print(f"demo: dropped {len(copied)} sample Chase export(s) into {settings.chase_inbox}")
    for user in prepare_demo_users(settings):
        print(f"demo: user {user.user_id} is {user.label}")
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
