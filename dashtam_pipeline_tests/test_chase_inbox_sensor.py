"""The Chase inbox sensor over a real (temporary) Dagster instance: one partition and one
run per dropped export, nothing twice, files still being written wait; the requested runs
import every recorded layout and quarantine what is not a Chase export."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorDefinition, build_sensor_context

from dashtam_pipeline.assets.partitions import file_name_of, file_partition_key
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.providers.chase_file.client import parse_chase_csv
from dashtam_pipeline.resources import ClockResource
from dashtam_pipeline.runner import MaterializeReport, execute_plans, plan_runs
from dashtam_pipeline.sensors.chase_inbox import (
    PARTITIONS,
    chase_asset_key,
    chase_inbox_sensor,
)
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.warehouse import Warehouse
from dashtam_pipeline_tests.clocks import sensor_resources
from dashtam_pipeline_tests.payloads import all_payloads, payload_path
from dashtam_pipeline_tests.sensor_ticks import SensorTick

PROVIDER = "sandbox:chase_file"
NOT_CHASE = "bank_of_elsewhere.csv"


def inbox() -> Path:
    path = load_settings().chase_inbox
    path.mkdir(parents=True, exist_ok=True)
    return path


def drop(name: str, data: bytes, *, age_seconds: float = 60.0) -> Path:
    """Write a file into the inbox, last modified ``age_seconds`` ago (settled)."""
    target = inbox() / name
    target.write_bytes(data)
    stamp = time.time() - age_seconds
    os.utime(target, (stamp, stamp))
    return target


def drop_every_layout() -> dict[str, bytes]:
    """Every recorded Chase export, each under its own export name and account number."""
    dropped = {}
    for number, payload in enumerate(all_payloads("chase_file/"), start=1000):
        name = f"Chase{number}_Activity_{Path(payload).stem}.CSV"
        dropped[name] = payload_path(payload).read_bytes()
        drop(name, dropped[name])
    return dropped


def first_name_per_content(dropped: dict[str, bytes]) -> dict[str, bytes]:
    """The files the sensor should import: the first name (in order) of each content."""
    firsts: dict[bytes, str] = {}
    for name in sorted(dropped):
        firsts.setdefault(dropped[name], name)
    return {name: data for data, name in firsts.items()}


def epoch_clock(now: list[float]) -> ClockResource:
    """The ``clock`` resource reading ``now[0]`` (seconds since the epoch), which a test moves."""
    return ClockResource.following(lambda: dt.datetime.fromtimestamp(now[0], dt.UTC))


def tick(
    instance: DagsterInstance,
    cursor: str | None,
    sensor: SensorDefinition = chase_inbox_sensor,
    *,
    clock: ClockResource | None = None,
) -> SensorTick:
    """One evaluation (on the wall clock unless ``clock``), then what the daemon does with
    it: add the requested partitions."""
    # the daemon's context carries the instance's ref too: partition keys are checked
    # against the instance (with this tick's additions) only when it does
    context = build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor,
        definitions=build_definitions(load_settings()),
        resources={"clock": clock or ClockResource(), **sensor_resources()},
    )
    result = sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return result


def run_partition(instance: DagsterInstance, partition: str | None) -> MaterializeReport:
    """Materialize the Chase asset in-process, for one partition or (None) as the CLI does."""
    defs = build_definitions(load_settings())
    plans = plan_runs(defs, [chase_asset_key()], partition=partition, instance=instance)
    return execute_plans(instance, plans, in_process=True)


def query(sql: str) -> list[tuple]:
    settings = load_settings()
    return Warehouse(settings.warehouse_path, settings.lake_dir).query(sql)[1]


def landed_rows() -> int:
    return query(f"select count(*) from brokerage.transactions where provider = '{PROVIDER}'")[0][0]


def test_each_export_becomes_one_partition_and_one_run(instance: DagsterInstance) -> None:
    dropped = drop_every_layout()
    expected = first_name_per_content(dropped)
    assert len(expected) < len(dropped)  # the recordings hold identical exports: skipped

    first = tick(instance, None)
    requested = [r.partition_key for r in first.run_requests]
    assert sorted(file_name_of(key) for key in requested) == sorted(expected)
    assert [r.run_key for r in first.run_requests] == requested
    assert {file_partition_key(name, data) for name, data in expected.items()} == set(requested)
    assert sorted(instance.get_dynamic_partitions(PARTITIONS.name)) == sorted(requested)

    again = tick(instance, first.cursor)
    assert (again.run_requests, again.dynamic_partitions_requests) == ([], [])
    assert "no new file" in (again.skip_message or "")
    # a lost cursor costs hashing again, never a second partition or run
    assert tick(instance, None).run_requests == []


def test_a_file_still_being_written_waits_for_the_next_tick(instance: DagsterInstance) -> None:
    now = [time.time()]
    clock = epoch_clock(now)
    data = payload_path("chase_file/legacy_2013_credit_card_jdmullin_ledger.csv").read_bytes()
    path = drop("Chase9012_Activity_20130901.CSV", data[:40], age_seconds=1)

    writing = tick(instance, None, clock=clock)  # modified a second ago
    assert writing.run_requests == []
    now[0] += 30
    path.write_bytes(data)  # the copy goes on, keeping the source's old mtime
    os.utime(path, (now[0] - 600, now[0] - 600))
    grown = tick(instance, writing.cursor, clock=clock)  # size changed since the last tick
    assert grown.run_requests == []
    assert instance.get_dynamic_partitions(PARTITIONS.name) == []

    now[0] += 30
    settled = tick(instance, grown.cursor, clock=clock)
    assert [r.partition_key for r in settled.run_requests] == [
        file_partition_key(path.name, data)]


def test_the_same_bytes_under_another_name_are_not_imported_again(
    instance: DagsterInstance,
) -> None:
    data = payload_path("chase_file/credit_card_personal_code_comment_excerpt.csv").read_bytes()
    drop("Chase5678_Activity_20231215.CSV", data)
    first = tick(instance, None)
    assert len(first.run_requests) == 1

    drop("Chase5678_Activity_20231215 (1).CSV", data)  # downloaded twice
    drop("Chase5678_Activity_20231215.CSV", data, age_seconds=30)  # copied over itself
    second = tick(instance, first.cursor)
    assert (second.run_requests, second.dynamic_partitions_requests) == ([], [])
    assert len(instance.get_dynamic_partitions(PARTITIONS.name)) == 1


@pytest.mark.integration
def test_requested_runs_import_every_layout_and_quarantine_a_stranger(
    instance: DagsterInstance,
) -> None:
    dropped = drop_every_layout()
    drop(NOT_CHASE, b"Date,Payee,Debit\n2024-01-01,Shop,12.00\n")
    result = tick(instance, None)
    assert len(result.run_requests) == len(first_name_per_content(dropped)) + 1

    for request in result.run_requests:
        report = run_partition(instance, request.partition_key)
        assert report.ok, (request.partition_key, report.assets)

    imported = first_name_per_content(dropped)
    per_file = dict(query(
        "select source_file, count(*) from brokerage.transactions "
        f"where provider = '{PROVIDER}' group by 1"))
    assert per_file == {name: len(parse_chase_csv(data, name).rows)
                        for name, data in imported.items()}
    assert {parse_chase_csv(data, name).layout for name, data in imported.items()} == {
        "checking", "card", "legacy_checking_2009", "legacy_card_2013"}

    assert not (inbox() / NOT_CHASE).exists()
    quarantine = inbox().parent / "quarantine"
    assert (quarantine / NOT_CHASE).exists()
    assert "not a Chase export" in (quarantine / f"{NOT_CHASE}.reason.txt").read_text()
    ((reason, record),) = query(
        f"select reason, record from ops.quarantine where provider = '{PROVIDER}'")
    assert NOT_CHASE in reason and "2024-01-01,Shop,12.00" in record

    # dropped twice (again, and under another name): no partition, no run, no row
    landed = landed_rows()
    name, data = next(iter(imported.items()))
    drop(name, data, age_seconds=10)
    drop(f"copy of {name}", data)
    assert tick(instance, result.cursor).run_requests == []
    # and `dashtam materialize` re-running every file partition adds nothing either
    assert run_partition(instance, None).ok
    assert landed_rows() == landed
