"""Replaying dead letters over the loopback sandbox: a partition that still cannot be
fetched stays pending (then is abandoned), one that can lands exactly once, and the
``dashtam dlq`` commands report both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashtam_pipeline import cli
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.resilience.dlq import (
    ABANDONED,
    PENDING,
    REPLAYED,
    DeadLetter,
    DeadLetterError,
    DeadLetterQueue,
)
from dashtam_pipeline.resilience.replay import replay
from dashtam_pipeline.sandbox.server import SandboxServer
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.loopback import KEYS, configured_sandbox, query

pytestmark = pytest.mark.integration

DAY = "2026-11-20"  # a Friday: the sandbox has bars for it
BARS_ON_DAY = f"select count(*) from market.daily_bars where date = DATE '{DAY}'"


@pytest.fixture
def server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with configured_sandbox(monkeypatch) as running:
        yield running


def queue() -> DeadLetterQueue:
    return DeadLetterQueue.from_settings(load_settings())


def failed_bars(partition: str = DAY) -> DeadLetter:
    """What the asset factory will record when market/daily_bars fails for a day."""
    error = ProviderError(
        "fmp", ErrorKind.UNAVAILABLE, "no provider could serve market.daily_bars", status_code=503
    )
    return queue().record_failure(
        "market/daily_bars",
        "market.daily_bars",
        "fmp",
        partition,
        {"symbols": ["AAPL", "BRK.B"], "window": [partition, partition]},
        error,
        run_id="nightly-run",
    )


def test_a_replay_that_cannot_land_stays_pending_then_is_abandoned(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DASHTAM_DLQ_MAX_REPLAYS", "2")
    entry = failed_bars()
    server.app.add_fault(r"^/(fmp|polygon)/", status=503)

    report = replay(load_settings(), in_process=True)
    assert not report.ok and len(report.runs) == 1
    (outcome,) = report.outcomes
    assert not outcome.landed and outcome.run_id == report.runs[0]
    stored = outcome.entry
    assert (stored.id, stored.status, stored.replay_count) == (entry.id, PENDING, 1)
    assert stored.last_replay_error is not None
    assert stored.last_replay_error.startswith("failed: ")
    assert "no provider could serve market.daily_bars" in stored.last_replay_error

    # the second failed replay reaches DASHTAM_DLQ_MAX_REPLAYS=2: abandoned, through the CLI
    capsys.readouterr()
    assert cli.main(["dlq", "replay", str(entry.id)]) == cli.EXIT_FAILED
    printed = capsys.readouterr()
    assert f"#{entry.id}" in printed.out and "abandoned" in printed.out
    assert "1 of 1 entries did not land" in printed.err
    (abandoned,) = queue().get([entry.id])
    assert (abandoned.status, abandoned.replay_count) == (ABANDONED, 2)
    assert abandoned.abandoned_reason is not None
    assert abandoned.abandoned_reason.startswith("not landed after 2 replays: failed: ")
    assert "no provider could serve market.daily_bars" in abandoned.abandoned_reason
    for value in KEYS.values():
        assert value not in printed.out + printed.err
        assert value not in repr(abandoned)


def test_a_replay_lands_the_partition_once_and_the_cli_reports_it(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = failed_bars()
    other = failed_bars("2026-11-19")

    assert cli.main(["dlq", "list", "--json"]) == cli.EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in listed] == [entry.id, other.id]
    assert set(listed[0]) >= {
        "id", "provider", "dataset", "partition_key", "error", "attempts", "status",
        "first_failed_at", "last_failed_at",
    }
    assert listed[0]["dataset"] == "market.daily_bars" and listed[0]["partition_key"] == DAY
    assert listed[0]["status"] == PENDING and listed[0]["attempts"] == 1
    assert "no provider could serve market.daily_bars" in listed[0]["error"]

    assert cli.main(["dlq", "replay", str(entry.id)]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"ok    #{entry.id}" in printed and f"market/daily_bars [{DAY}]" in printed
    (landed,) = queue().get([entry.id])
    assert landed.status == REPLAYED and landed.replay_count == 0 and landed.run_id
    assert queue().get([other.id])[0].status == PENDING  # only the named entry was replayed
    (rows,) = query(BARS_ON_DAY)[0]
    assert rows == 2  # AAPL and BRK.B

    # the same partition failing and replayed again: no duplicate rows
    again = failed_bars()
    assert again.id not in (entry.id, other.id)
    report = replay(load_settings(), [again.id], in_process=True)
    assert report.ok and [o.entry.status for o in report.outcomes] == [REPLAYED]
    assert query(BARS_ON_DAY) == [(rows,)]

    assert cli.main(["dlq", "list", "--status", "replayed"]) == cli.EXIT_OK
    table = capsys.readouterr().out
    assert str(entry.id) in table and str(again.id) in table and "2026-11-19" not in table


def test_replay_refuses_unknown_and_settled_ids_by_name(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = failed_bars()
    queue().mark_replayed([entry.id], "run-1")
    with pytest.raises(DeadLetterError, match=rf"not pending: {entry.id} \(replayed\)"):
        replay(load_settings(), [entry.id])
    assert cli.main(["dlq", "replay", "4242"]) == cli.EXIT_FAILED
    assert "no dead-letter entry with id 4242" in capsys.readouterr().err
    assert replay(load_settings()).outcomes == []  # nothing pending: nothing runs
