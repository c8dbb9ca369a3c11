"""Brokerage assets partitioned by connection, over a real (temporary) Dagster instance and
the in-process sandbox: the sensor keeps each provider's partitions in step with the
connection repository and asks a first sync of new ACTIVE connections; a run of one
connection's partition lands that connection's rows only; the nightly run and a backfill
batch ``CONNECTIONS_PER_RUN`` connections to a run."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from dagster import DagsterInstance, build_sensor_context

from dashtam_pipeline.assets.partitions import CONNECTIONS_PER_RUN
from dashtam_pipeline.connections import utcnow
from dashtam_pipeline.dagster_names import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.domain.provider_connection import OPERATOR_USER_ID
from dashtam_pipeline.erasure import forget_user
from dashtam_pipeline.jobs import nightly_connection_requests
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.runner import execute_plans, plan_runs
from dashtam_pipeline.sensors.connection_partitions import (
    FIRST_SYNC_TAG,
    build_connection_partitions_sensor,
    connection_assets,
    contiguous_chunks,
    read_requested,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline_tests.clocks import sensor_resources
from dashtam_pipeline_tests.sensor_ticks import SensorTick
from dashtam_pipeline_tests.user_helpers import ALICE, BOB, connect_schwab

SCHWAB = "schwab_connections"


def tick(instance: DagsterInstance, cursor: str | None) -> SensorTick:
    """One evaluation, then what the daemon does with it: apply the partition requests."""
    with build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor,
        definitions=build_definitions(load_settings()), resources=sensor_resources(),
    ) as context:
        result = build_connection_partitions_sensor().evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if type(request).__name__.startswith("Add"):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def test_contiguous_chunks_cover_exactly_the_wanted_keys() -> None:
    order = [f"c{i}" for i in range(10)]
    assert contiguous_chunks(["c1", "c2", "c3", "c7", "c9"], order) == [
        ["c1", "c2", "c3"], ["c7"], ["c9"]]
    many = [f"k{i:04d}" for i in range(2 * CONNECTIONS_PER_RUN + 5)]
    chunks = contiguous_chunks(many, many)
    assert [len(c) for c in chunks] == [CONNECTIONS_PER_RUN, CONNECTIONS_PER_RUN, 5]
    assert [k for c in chunks for k in c] == many
    assert contiguous_chunks([], order) == []


def test_the_nightly_run_batches_connections() -> None:
    ids = [str(uuid.UUID(int=i)) for i in range(2 * CONNECTIONS_PER_RUN + 1)]
    at = dt.datetime(2026, 12, 3, 2, tzinfo=dt.UTC)
    requests = nightly_connection_requests(SCHWAB, at, ids)
    assert len(requests) == 3
    first, second, last = requests
    assert (first.tags[PARTITION_RANGE_START], first.tags[PARTITION_RANGE_END]) == (
        ids[0], ids[CONNECTIONS_PER_RUN - 1])
    assert second.tags[PARTITION_RANGE_START] == ids[CONNECTIONS_PER_RUN]
    assert last.partition_key == ids[-1]  # one connection left: a plain partition
    assert len({r.run_key for r in requests}) == 3
    assert nightly_connection_requests(SCHWAB, at, []) == []


def test_the_sensor_follows_the_repository(instance: DagsterInstance) -> None:
    assert set(connection_assets()) == {ProviderSlug.SCHWAB, ProviderSlug.ALPACA}
    alice = connect_schwab(ALICE, "ira")
    bob = connect_schwab(BOB, "brokerage")

    first = tick(instance, None)
    assert instance.get_dynamic_partitions(SCHWAB) == [str(alice.id), str(bob.id)]
    schwab_runs = [r for r in first.run_requests if r.tags.get("dashtam/provider") == "schwab"]
    assert len(schwab_runs) == 1  # both new connections in one first-sync run
    (run,) = schwab_runs
    assert (run.tags[PARTITION_RANGE_START], run.tags[PARTITION_RANGE_END]) == (
        str(alice.id), str(bob.id))
    assert run.tags[FIRST_SYNC_TAG] == "2"
    assert {k.to_user_string() for k in run.asset_selection or []} == {
        "brokerage/schwab_accounts", "brokerage/schwab_positions",
        "brokerage/schwab_transactions"}
    # the operator's own Alpaca connection (keys from the environment) is one too
    alpaca = instance.get_dynamic_partitions("alpaca_connections")
    (operator,) = ConnectionRepository.from_settings(load_settings()).find_by_provider("alpaca")
    assert operator.user_id == OPERATOR_USER_ID and alpaca == [str(operator.id)]
    assert {str(alice.id), str(bob.id)} <= read_requested(first.cursor)

    # nothing changed: nothing to do, and the first syncs are not asked twice
    again = tick(instance, first.cursor)
    assert (again.run_requests, again.dynamic_partitions_requests) == ([], [])
    assert "in step" in (again.skip_message or "")

    # Bob disconnects: his partition leaves; a new connection of Alice's joins, alone
    repo = ConnectionRepository.from_settings(load_settings())
    leaving = repo.find_by_id(bob.id)
    assert leaving is not None
    leaving.mark_disconnected(now=utcnow())
    repo.save(leaving)  # as the Dashtam app does when Bob removes his connection
    roth = connect_schwab(ALICE, "roth")
    third = tick(instance, again.cursor)
    assert instance.get_dynamic_partitions(SCHWAB) == [str(alice.id), str(roth.id)]
    (new_run,) = [r for r in third.run_requests if r.tags.get("dashtam/provider") == "schwab"]
    assert new_run.partition_key == str(roth.id)
    assert str(bob.id) not in read_requested(third.cursor)

    # Alice is forgotten: her partitions leave too, and no run is asked for
    forget_user(load_settings(), ALICE)
    fourth = tick(instance, third.cursor)
    assert instance.get_dynamic_partitions(SCHWAB) == []
    assert [r for r in fourth.run_requests if r.tags.get("dashtam/provider") == "schwab"] == []


def test_a_connection_partition_lands_only_its_connections_rows(
    instance: DagsterInstance,
) -> None:
    alice = connect_schwab(ALICE, "ira")
    bob = connect_schwab(BOB, "brokerage")
    tick(instance, None)
    settings = load_settings()
    defs = build_definitions(settings)
    keys = connection_assets()[ProviderSlug.SCHWAB]

    plans = plan_runs(defs, keys, partition=str(alice.id), instance=instance)
    assert [p.partitions for p in plans] == [[str(alice.id)]]
    report = execute_plans(instance, plans, in_process=True)
    assert report.ok, report
    lake = Lake(settings.lake_dir)
    for table in ("brokerage.accounts", "brokerage.positions"):
        assert set(lake.read_frame(table)["connection_id"]) == {str(alice.id)}, table
    assert str(alice.id) in instance.get_materialized_partitions(keys[0])
    assert str(bob.id) not in instance.get_materialized_partitions(keys[0])

    # without --partition: every connection, in runs of CONNECTIONS_PER_RUN
    plans = plan_runs(defs, keys, instance=instance)
    assert [p.partitions for p in plans] == [[str(alice.id), str(bob.id)]]
    assert execute_plans(instance, plans, in_process=True).ok
    owners = set(lake.read_frame("brokerage.accounts")["connection_id"])
    assert owners == {str(alice.id), str(bob.id)}
    # a connection that is not a partition is one sentence naming what to use
    with pytest.raises(Exception, match="connection ids"):
        plan_runs(defs, keys, partition=str(uuid.uuid4()), instance=instance)


def test_a_failing_connection_gets_the_only_dead_letter_and_the_others_land(
    instance: DagsterInstance,
) -> None:
    """Two users' Schwab connections synced in one run; Schwab refuses Bob's account's
    transactions for good: Alice's rows land, the run fails by name, and only Bob's
    partition waits in the dead-letter queue (a replay re-runs his connection alone)."""
    from dashtam_pipeline.providers.schwab.sandbox import account_hash
    from dashtam_pipeline.resilience.dlq import DeadLetterQueue
    from dashtam_pipeline.sandbox.app import SandboxApp

    alice = connect_schwab(ALICE, "ira", sandbox_user=1)
    bob = connect_schwab(BOB, "brokerage", sandbox_user=2)
    tick(instance, None)
    sandbox = SandboxApp.shared()
    bobs_account = account_hash(sandbox.world, 2)
    sandbox.add_fault(rf"/accounts/{bobs_account}/transactions", status=400)
    settings = load_settings()
    key = next(k for k in connection_assets()[ProviderSlug.SCHWAB]
               if k.path[-1] == "schwab_transactions")

    plans = plan_runs(build_definitions(settings), [key], instance=instance)
    assert [p.partitions for p in plans] == [[str(alice.id), str(bob.id)]]
    report = execute_plans(instance, plans, in_process=True)
    asset = report.assets[key.to_user_string()]
    assert asset.status == "failed" and "schwab" in asset.detail, asset
    letters = DeadLetterQueue.from_settings(settings).list()
    assert [(e.asset_key, e.partition_key) for e in letters] == [
        (key.to_user_string(), str(bob.id))]
    landed = Lake(settings.lake_dir).read_frame("brokerage.transactions")
    assert set(landed["connection_id"]) == {str(alice.id)}
