"""Schwab end to end over the sandbox's OAuth server on loopback, driven by the credential
sensors as the daemon would tick them: connect with the CLI, a refresh run before the
access token lapses, the login lapsing after 7 days (the connection EXPIRED by the
sensor; its assets are skipped meanwhile, see ``test_credential_sensor.py``), a reconnect
with the CLI, and the one catch-up run that re-materializes Schwab's assets. One clock
drives the sandbox, the pipeline and the sensors, so nothing waits."""

import datetime as dt

import pytest
from dagster import AssetKey, build_sensor_context

from dashtam_pipeline.connections import StoredTokens, current_connection, load_cipher
from dashtam_pipeline.dagster_names import PARTITION_TAG
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.domain import ConnectionStatus
from dashtam_pipeline.instance import get_instance
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.runner import RunPlan, execute_plans
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.sensors.credentials import (
    CATCH_UP_OF_TAG,
    CATCH_UP_SENSOR_NAME,
    EXPIRY_SENSOR_NAME,
    REFRESH_JOB_NAME,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline_tests.clocks import FakeClock
from dashtam_pipeline_tests.loopback import connect_schwab_with_cli
from dashtam_pipeline_tests.sensor_ticks import SensorTick

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
#: the frozen instants (``at_date``) it runs at: the sessions missed skip a holiday, cross a
#: year end
pytestmark = [pytest.mark.integration,
              pytest.mark.dates(at=("after_holiday", "year_end"))]

SCHWAB_ASSETS = [
    "brokerage/schwab_accounts",
    "brokerage/schwab_positions",
    "brokerage/schwab_transactions",
]


def schwab_tokens() -> tuple[ConnectionStatus, StoredTokens]:
    settings = load_settings()
    found = current_connection(ConnectionRepository.from_settings(settings), ProviderSlug.SCHWAB)
    assert found is not None and found.credentials is not None
    return found.status, StoredTokens.unseal(load_cipher(settings), found.credentials, "schwab")


def test_connect_refresh_expire_reconnect_catch_up(
    clocked_sandbox: SandboxServer, connections_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = build_definitions(load_settings(), resources=connections_clock.resources())
    repository = defs.get_repository_def()
    cursors: dict[str, str | None] = {}

    def tick(name: str) -> SensorTick:
        with get_instance(load_settings()) as instance:
            context = build_sensor_context(
                instance=instance,
                instance_ref=instance.get_ref(),  # as the daemon: partition keys checked
                cursor=cursors.get(name),
                repository_def=repository,
                resources=connections_clock.resources(),
            )
            result = repository.get_sensor_def(name).evaluate_tick(context)
            for request in result.dynamic_partitions_requests or []:  # as the daemon does
                instance.add_dynamic_partitions(request.partitions_def_name,
                                                request.partition_keys)
        cursors[name] = result.cursor
        return result

    def both() -> tuple[SensorTick, SensorTick]:
        return tick(EXPIRY_SENSOR_NAME), tick(CATCH_UP_SENSOR_NAME)

    # connect
    connect_schwab_with_cli(capsys)
    expiry, catch_up = both()
    assert not expiry.run_requests and not catch_up.run_requests
    _, first = schwab_tokens()

    # refresh: 21 minutes on, the sensor asks for a refresh run, which renews the token
    connections_clock.advance(minutes=21)
    expiry, _ = both()
    (request,) = expiry.run_requests or []
    with get_instance(load_settings()) as instance:
        run = repository.get_job(REFRESH_JOB_NAME).execute_in_process(
            run_config=request.run_config, tags=dict(request.tags), instance=instance
        )
    assert run.success
    status, renewed = schwab_tokens()
    assert status is ConnectionStatus.ACTIVE and renewed.access_token != first.access_token
    assert renewed.expires_at == connections_clock() + dt.timedelta(minutes=30)

    # refresh-token expiry: a week on, the sensor expires the connection and says what to do
    connections_clock.advance(days=7)
    expiry, catch_up = both()
    relogin = f"{first.refresh_expires_at:%Y-%m-%d %H:%M} UTC"
    assert expiry.skip_message == (
        f"Schwab login expired on {relogin}: run `dashtam connect schwab` (marked EXPIRED)"
    )
    assert schwab_tokens()[0] is ConnectionStatus.EXPIRED
    assert not catch_up.run_requests

    # reconnect: ACTIVE again, and one catch-up run of every Schwab asset
    connections_clock.advance(hours=3)
    connect_schwab_with_cli(capsys)
    assert schwab_tokens()[0] is ConnectionStatus.ACTIVE
    expiry, catch_up = both()
    assert not expiry.run_requests
    (request,) = catch_up.run_requests or []
    keys = list(request.asset_selection or [])
    assert [k.to_user_string() for k in keys] == SCHWAB_ASSETS
    assert str(request.run_key).startswith(f"catchup-{request.tags[CATCH_UP_OF_TAG]}-")
    # that connection's own partition (registered by the tick if the connection
    # partitions sensor has not yet)
    connection = request.tags[CATCH_UP_OF_TAG]
    assert request.partition_key == connection

    with get_instance(load_settings()) as instance:
        assert connection in instance.get_dynamic_partitions("schwab_connections")
        plan = RunPlan(keys, {**request.tags, PARTITION_TAG: connection}, "catch-up",
                       partitions=[connection])
        report = execute_plans(instance, [plan], in_process=True)
        assert {report.assets[k].status for k in SCHWAB_ASSETS} == {"materialized"}
        for key in SCHWAB_ASSETS:
            event = instance.get_latest_materialization_event(AssetKey.from_user_string(key))
            assert event is not None and event.run_id == report.runs[0]
    # the next ticks launch nothing more
    expiry, catch_up = both()
    assert not expiry.run_requests and not catch_up.run_requests
