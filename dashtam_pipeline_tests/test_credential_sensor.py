"""The credential sensors evaluated with ``build_sensor_context`` over the test instance
and an injected clock: a token refreshed (by a refresh run) before it expires, the re-login
announced a day ahead, a connection EXPIRED after a refused refresh (its assets skipped)
or once its refresh token lapsed, and a catch-up run after a reconnect, for Schwab's
unpartitioned snapshots and, by the general rule, for daily and per-series partitions.

Schwab's OAuth server is the sandbox on loopback, on the same clock as the sensors.
"""

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    RepositoryDefinition,
    build_sensor_context,
)

from dashtam_pipeline import connections
from dashtam_pipeline.assets.partitions import MARKET_TZ
from dashtam_pipeline.connections import StoredTokens, current_connection, load_cipher
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.domain import ConnectionStatus
from dashtam_pipeline.domain.provider_connection import ProviderConnection
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.providers.schwab import client as schwab
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.sensors.credentials import (
    CATCH_UP_OF_TAG,
    CATCH_UP_REASON_TAG,
    CATCH_UP_SENSOR_NAME,
    CONNECTION_TAG,
    EXPIRY_SENSOR_NAME,
    REFRESH_JOB_NAME,
    RELOGIN_WARNING_TAG,
)
from dashtam_pipeline.sensors.dlq_replay import LAUNCHED_BY_TAG, PROVIDER_TAG
from dashtam_pipeline.settings import Settings, load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.trading_calendar import (
    is_trading_day,
    previous_trading_day,
    trading_day_on_or_before,
)
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.loopback import configured_sandbox, materialize
from dashtam_pipeline_tests.sensor_ticks import SensorTick

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: catch-up skips a holiday, crosses a year end;
#: expiries across New York's DST jump
pytestmark = pytest.mark.dates(at=("after_holiday", "year_end", "dst_spring"))

SCHWAB = ProviderSlug.SCHWAB
SCHWAB_ASSETS = [
    "brokerage/schwab_accounts",
    "brokerage/schwab_positions",
    "brokerage/schwab_transactions",
]


class Sensors:
    """Both credential sensors ticked as the daemon would (cursors kept), and the refresh
    job run in-process on the test instance."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.defs = build_definitions(load_settings(), resources=clock.resources())
        self.repository: RepositoryDefinition = self.defs.get_repository_def()
        self.cursors: dict[str, str | None] = {}

    def tick(self, name: str) -> SensorTick:
        with get_instance(load_settings()) as instance:
            context = build_sensor_context(
                instance=instance,
                instance_ref=instance.get_ref(),  # as the daemon: partition keys checked
                cursor=self.cursors.get(name),
                repository_def=self.repository,
                resources=self.clock.resources(),
            )
            result = self.repository.get_sensor_def(name).evaluate_tick(context)
        self.cursors[name] = result.cursor
        return result

    def expiry(self) -> SensorTick:
        return self.tick(EXPIRY_SENSOR_NAME)

    def catch_up(self) -> SensorTick:
        return self.tick(CATCH_UP_SENSOR_NAME)

    def run_refresh(self, tick: SensorTick) -> tuple[bool, str]:
        """Execute the tick's one refresh request; (success, failure description)."""
        (request,) = tick.run_requests or []
        job = self.repository.get_job(REFRESH_JOB_NAME)
        with get_instance(load_settings()) as instance:
            result = job.execute_in_process(
                run_config=request.run_config,
                tags=dict(request.tags),
                instance=instance,
                raise_on_error=False,
            )
        failures = [e for e in result.all_events if e.is_step_failure]
        description = ""
        if failures:
            user = failures[0].step_failure_data.user_failure_data
            description = user.description or "" if user else ""
        return result.success, description


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One clock for the sandbox, the pipeline (``connections.utcnow``) and the sensors."""
    fake = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    monkeypatch.setattr(connections, "utcnow", fake)
    return fake


@pytest.fixture
def sandbox_app(clock: FakeClock) -> SandboxApp:
    return SandboxApp(clock=clock)


@pytest.fixture
def server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, sandbox_app: SandboxApp
) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch, app=sandbox_app) as running:
        yield running


def connect_schwab(clock: FakeClock) -> ProviderConnection:
    """The browser's part of the login, then the code exchange (as `dashtam connect`)."""
    with httpx.Client(follow_redirects=False) as browser:
        response = browser.get(schwab.authorize_url(load_settings()))
    return connections.connect_oauth_provider(
        "schwab", load_settings(), redirect_url=response.headers["location"], now=clock()
    )


def schwab_connection() -> ProviderConnection:
    found = current_connection(ConnectionRepository.from_settings(load_settings()), SCHWAB)
    assert found is not None
    return found


def schwab_tokens() -> StoredTokens:
    creds = schwab_connection().credentials
    assert creds is not None
    return StoredTokens.unseal(load_cipher(load_settings()), creds, "schwab")


def test_token_refreshed_by_a_refresh_run_before_it_expires(
    server: SandboxServer, clock: FakeClock
) -> None:
    connection = connect_schwab(clock)
    before = schwab_tokens()
    sensors = Sensors(clock)

    clock.advance(minutes=15)  # 15 minutes left: not yet
    tick = sensors.expiry()
    assert not tick.run_requests
    assert tick.skip_message == "every OAuth connection is ACTIVE and its token fresh"

    clock.advance(minutes=6)  # 9 minutes left: inside REFRESH_AHEAD
    tick = sensors.expiry()
    (request,) = tick.run_requests or []
    assert request.tags[PROVIDER_TAG] == "schwab"
    assert request.tags[CONNECTION_TAG] == str(connection.id)
    assert request.tags[LAUNCHED_BY_TAG] == EXPIRY_SENSOR_NAME
    assert RELOGIN_WARNING_TAG not in request.tags  # the re-login is 7 days away
    assert request.run_key == (f"refresh-{connection.id}-{before.expires_at:%Y%m%dT%H%M%SZ}#1")
    assert sensors.run_refresh(tick) == (True, "")

    after = schwab_tokens()
    assert after.access_token != before.access_token
    assert after.expires_at == clock() + dt.timedelta(minutes=30)
    assert after.refresh_expires_at == before.refresh_expires_at
    assert schwab_connection().status is ConnectionStatus.ACTIVE
    assert not sensors.expiry().run_requests  # the new token is fresh


def test_relogin_announced_a_day_ahead_then_the_lapsed_login_expired_without_a_run(
    server: SandboxServer, clock: FakeClock
) -> None:
    connect_schwab(clock)
    relogin = schwab_tokens().refresh_expires_at
    sensors = Sensors(clock)

    clock.advance(days=6, hours=1, minutes=30)  # 22 h 30 min before the re-login
    tick = sensors.expiry()
    (request,) = tick.run_requests or []
    warning = (
        f"Charles Schwab login expires on {relogin:%Y-%m-%d %H:%M} UTC (in 22 h 30 min): "
        "run `dashtam connect schwab` before then, or its assets are skipped from that moment"
    )
    assert request.tags[RELOGIN_WARNING_TAG] == warning
    assert sensors.run_refresh(tick) == (True, "")
    # with a fresh access token the tick has nothing to run, and says why a person acts
    tick = sensors.expiry()
    assert not tick.run_requests
    assert tick.skip_message == warning

    # the refresh token lapses: no call can help, the tick marks the connection EXPIRED
    clock.advance(hours=22, minutes=31)
    tick = sensors.expiry()
    assert not tick.run_requests
    assert tick.skip_message == (
        f"Schwab login expired on {relogin:%Y-%m-%d %H:%M} UTC: run `dashtam connect schwab` "
        "(marked EXPIRED)"
    )
    connection = schwab_connection()
    assert connection.status is ConnectionStatus.EXPIRED
    assert connection.status_reason == "the refresh token expired"


def test_refused_refresh_expires_the_connection_and_its_assets_are_skipped(
    server: SandboxServer, clock: FakeClock, sandbox_app: SandboxApp
) -> None:
    connect_schwab(clock)
    sandbox_app.world.oauth.revoke(schwab_tokens().refresh_token)  # Schwab refuses it
    sensors = Sensors(clock)

    clock.advance(minutes=25)
    tick = sensors.expiry()
    success, description = sensors.run_refresh(tick)
    refused_at = clock()
    expected = (
        f"Schwab login expired on {refused_at:%Y-%m-%d %H:%M} UTC: run `dashtam connect schwab`"
    )
    assert (success, description) == (False, expected)
    connection = schwab_connection()
    assert connection.status is ConnectionStatus.EXPIRED
    assert connection.status_reason == "the provider refused the refresh token"

    clock.advance(minutes=3)
    tick = sensors.expiry()
    assert not tick.run_requests
    assert tick.skip_message == f"{expected} (schwab's assets are skipped until then)"

    report = materialize("key:brokerage/schwab_accounts")
    asset = report.assets["brokerage/schwab_accounts"]
    assert (asset.status, report.ok) == ("skipped", True), asset.detail
    assert expected in asset.detail


def test_one_catch_up_run_of_schwab_assets_after_a_reconnect(
    server: SandboxServer, clock: FakeClock
) -> None:
    connection = connect_schwab(clock)
    sensors = Sensors(clock)
    assert sensors.catch_up().skip_message == "no connection came back"

    clock.advance(days=7, minutes=1)
    sensors.expiry()  # the refresh token lapsed: EXPIRED
    down_at = schwab_connection().updated_at
    tick = sensors.catch_up()
    assert not tick.run_requests
    assert f"schwab is EXPIRED since {down_at.isoformat(timespec='microseconds')}" in (
        tick.skip_message or ""
    )

    clock.advance(hours=5)
    assert not sensors.catch_up().run_requests  # still down: nothing, the moment is kept
    clock.advance(minutes=2)
    connect_schwab(clock)  # reconnect: the same connection, ACTIVE again
    back = schwab_connection()
    tick = sensors.catch_up()
    (request,) = tick.run_requests or []
    assert request.run_key == f"catchup-{connection.id}-{back.updated_at:%Y%m%dT%H%M%S%fZ}"
    assert [k.to_user_string() for k in request.asset_selection or []] == SCHWAB_ASSETS
    assert request.partition_key == str(connection.id)  # that connection's partition only
    assert request.tags[CATCH_UP_OF_TAG] == str(connection.id)
    assert request.tags[LAUNCHED_BY_TAG] == CATCH_UP_SENSOR_NAME
    assert not sensors.catch_up().run_requests  # one catch-up per return, never two


@pytest.fixture
def api_key_providers(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """NewsAPI (daily partitions) and FRED (one partition per series) with keys set. The
    clock stays a minute behind the system's: materializations are stamped by the system
    clock, and must come after the moment the connections go down."""
    monkeypatch.setenv("DASHTAM_SANDBOX", "false")
    monkeypatch.setenv("NEWS_API_KEY", "news-key-test")
    monkeypatch.setenv("FRED_API_KEY", "fred-key-test")
    monkeypatch.setenv("DASHTAM_FRED_SERIES", "GDP,UNRATE")
    return FakeClock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))


def landed(asset: str, partition: str) -> None:
    with get_instance(load_settings()) as instance:
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key=AssetKey.from_user_string(asset), partition=partition)
        )


def sessions_after(first: dt.date, last: dt.date) -> list[dt.date]:
    """The trading days after ``first`` up to ``last``: the daily partitions between."""
    days = (first + dt.timedelta(days=n) for n in range(1, (last - first).days + 1))
    return [day for day in days if is_trading_day(day)]


def test_catch_up_covers_the_partitions_missed_while_down(api_key_providers: FakeClock) -> None:
    clock = api_key_providers
    last_complete_day = previous_trading_day(clock().astimezone(MARKET_TZ).date())
    settings = load_settings()
    connections.ensure_api_key_connections(settings, clock())
    before_outage = trading_day_on_or_before(last_complete_day - dt.timedelta(days=4))
    landed("news/articles", before_outage.isoformat())  # the last daily partition that landed
    sensors = Sensors(clock)
    assert not sensors.catch_up().run_requests

    for slug in ("newsapi", "fred"):
        assert connections.mark_auth_failure(settings, slug, "401 Unauthorized", clock())
    assert not sensors.catch_up().run_requests
    landed("macro/fred_observations", "GDP")  # landed after the outage began (a replay)
    landed("macro/fred_series", "GDP")
    for slug in ("newsapi", "fred"):
        connections.reconnect_api_key_provider(settings, slug, clock())

    requests = {r.tags[PROVIDER_TAG]: r for r in sensors.catch_up().run_requests or []}
    news, fred = requests["newsapi"], requests["fred"]
    # daily: from the session after the last materialized one up to the last complete one
    assert [k.to_user_string() for k in news.asset_selection or []] == ["news/articles"]
    assert (news.tags[PARTITION_RANGE_START], news.tags[PARTITION_RANGE_END]) == (
        sessions_after(before_outage, last_complete_day)[0].isoformat(),
        last_complete_day.isoformat(),
    )
    # per series: only what has not landed since the connection went down
    assert [k.to_user_string() for k in fred.asset_selection or []] == [
        "macro/fred_observations",
        "macro/fred_series",
    ]
    assert fred.partition_key == "UNRATE"
    assert PARTITION_RANGE_START not in fred.tags
    assert not sensors.catch_up().run_requests


def news_landed_sessions_before_yesterday(
    clock: FakeClock, days: int
) -> tuple[Settings, list[dt.date], Sensors]:
    """API-key connections made, news landed up to the session ``days`` sessions before
    the last complete one, and one catch-up tick that finds nothing to do (the sensor has
    seen them ACTIVE). Returns the sessions a catch-up must fill."""
    last_complete_day = previous_trading_day(clock().astimezone(MARKET_TZ).date())
    settings = load_settings()
    connections.ensure_api_key_connections(settings, clock())
    landed_day = last_complete_day
    for _ in range(days):
        landed_day = previous_trading_day(landed_day)
    landed("news/articles", landed_day.isoformat())
    sensors = Sensors(clock)
    assert not sensors.catch_up().run_requests
    return settings, sessions_after(landed_day, last_complete_day), sensors


def test_a_long_outage_is_caught_up_in_runs_the_backfill_policy_allows(
    api_key_providers: FakeClock,
) -> None:
    """70 missed sessions of a daily asset (at most 31 per run) are three catch-up runs,
    back to back, each with its own run key."""
    clock = api_key_providers
    settings, missed, sensors = news_landed_sessions_before_yesterday(clock, 70)
    assert connections.mark_auth_failure(settings, "newsapi", "401 Unauthorized", clock())
    assert not sensors.catch_up().run_requests
    connections.reconnect_api_key_provider(settings, "newsapi", clock())

    runs = [r for r in sensors.catch_up().run_requests or [] if r.tags[PROVIDER_TAG] == "newsapi"]

    ranges = [
        (dt.date.fromisoformat(r.tags[PARTITION_RANGE_START]),
         dt.date.fromisoformat(r.tags[PARTITION_RANGE_END]))
        for r in runs
    ]
    assert len(missed) == 70
    assert ranges == [(missed[0], missed[30]), (missed[31], missed[61]), (missed[62], missed[69])]
    assert len({r.run_key for r in runs}) == 3


def test_a_drop_and_return_between_two_ticks_is_still_caught_up(
    api_key_providers: FakeClock,
) -> None:
    """The sensor saw ACTIVE, the key was refused and replaced before its next tick (or
    the daemon was stopped meanwhile): the connection's status history shows the outage,
    and its partitions are caught up once."""
    clock = api_key_providers
    settings, missed, sensors = news_landed_sessions_before_yesterday(clock, 3)

    clock.advance(minutes=1)
    assert connections.mark_auth_failure(settings, "newsapi", "401 Unauthorized", clock())
    down_at = clock()
    clock.advance(minutes=1)
    connections.reconnect_api_key_provider(settings, "newsapi", clock())
    clock.advance(seconds=30)

    tick = sensors.catch_up()
    (request,) = [r for r in tick.run_requests or [] if r.tags[PROVIDER_TAG] == "newsapi"]
    assert (request.tags[PARTITION_RANGE_START], request.tags[PARTITION_RANGE_END]) == (
        missed[0].isoformat(), missed[-1].isoformat())
    assert len(missed) == 3
    assert f"since {down_at.isoformat(timespec='microseconds')}" in request.tags[
        CATCH_UP_REASON_TAG]
    clock.advance(seconds=30)
    assert not sensors.catch_up().run_requests  # once, not at every tick after
    history = ConnectionRepository.from_settings(settings).status_changes(
        uuid.UUID(request.tags[CATCH_UP_OF_TAG]), after=down_at - dt.timedelta(seconds=1))
    assert [c.status for c in history] == [ConnectionStatus.REVOKED, ConnectionStatus.ACTIVE]
