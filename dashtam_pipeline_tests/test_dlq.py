"""The dead-letter queue on both state-store backends: one pending entry per partition,
attempts counted across processes, replay bookkeeping, and no secret ever stored."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.resilience.dlq import (
    ABANDONED,
    PENDING,
    REPLAYED,
    DeadLetter,
    DeadLetterError,
    DeadLetterQueue,
)
from dashtam_pipeline.state.store import StateStore

BARS = {"asset_key": "market/daily_bars", "dataset": "market.daily_bars", "provider": "fmp"}


def outage(message: str = "HTTP 503 from the server") -> ProviderError:
    return ProviderError("fmp", ErrorKind.UNAVAILABLE, message, status_code=503)


def record(
    queue: DeadLetterQueue, partition: str | None = "2026-11-20", **overrides: Any
) -> DeadLetter:
    fields: dict[str, Any] = {
        **BARS,
        "partition_key": partition,
        "request": {"symbols": ["AAPL"], "window": [partition, partition]},
        "error": outage(),
        **overrides,
    }
    return queue.record_failure(**fields)


@pytest.fixture
def queue(state_url: str) -> DeadLetterQueue:
    return DeadLetterQueue(StateStore(state_url))


def test_repeated_failures_of_one_partition_share_a_pending_entry(queue: DeadLetterQueue) -> None:
    first = record(queue, run_id="run-1")
    again = record(queue, run_id="run-2", error=outage("still down"))
    other_day = record(queue, "2026-11-19")
    unpartitioned = record(queue, None, asset_key="market/quotes", dataset="market.quotes")
    unpartitioned_again = record(queue, None, asset_key="market/quotes", dataset="market.quotes")

    assert again.id == first.id and first.attempts == 1 and again.attempts == 2
    assert again.first_failed_at == first.first_failed_at
    assert again.last_failed_at > first.last_failed_at
    assert again.error.endswith("still down; a retry may help") and again.run_id == "run-2"
    assert again.error_kind == "unavailable" and again.status == PENDING
    assert again.request == {"symbols": ["AAPL"], "window": ["2026-11-20", "2026-11-20"]}
    assert other_day.id != first.id and other_day.attempts == 1
    assert unpartitioned_again.id == unpartitioned.id and unpartitioned_again.attempts == 2
    assert [e.id for e in queue.list()] == [first.id, other_day.id, unpartitioned.id]
    assert [e.id for e in queue.pending_for_provider("fmp")] == [
        first.id,
        other_day.id,
        unpartitioned.id,
    ]
    assert queue.pending_for_provider("polygon") == []


def test_a_replayed_entry_is_closed_and_the_next_failure_opens_a_new_one(
    queue: DeadLetterQueue,
) -> None:
    entry = record(queue)
    (replayed,) = queue.mark_replayed([entry.id], "run-9")
    assert replayed.status == REPLAYED and replayed.run_id == "run-9"
    assert replayed.replayed_at is not None and replayed.attempts == 1

    fresh = record(queue, error="plain text failure")
    assert fresh.id != entry.id and fresh.status == PENDING and fresh.attempts == 1
    assert fresh.error == "plain text failure" and fresh.error_kind is None
    assert [e.id for e in queue.list(status=REPLAYED)] == [entry.id]
    assert [e.id for e in queue.list(status=PENDING)] == [fresh.id]
    # marking again changes nothing: a replayed entry keeps its first replay's run
    assert queue.mark_replayed([entry.id], "run-10")[0].run_id == "run-9"


def test_failed_replays_count_up_then_abandon_with_the_reason(queue: DeadLetterQueue) -> None:
    entry = record(queue)
    once = queue.record_replay_failure(entry.id, "failed: no provider could serve it", 3)
    assert (once.status, once.replay_count) == (PENDING, 1)
    assert once.last_replay_error == "failed: no provider could serve it"
    assert once.attempts == 1  # attempts count recorded failures, replays are counted apart
    twice = queue.record_replay_failure(entry.id, "failed: still down", 3)
    assert (twice.status, twice.replay_count, twice.abandoned_reason) == (PENDING, 2, None)
    thrice = queue.record_replay_failure(entry.id, "failed: down for good", 3)
    assert (thrice.status, thrice.replay_count) == (ABANDONED, 3)
    assert thrice.abandoned_reason == "not landed after 3 replays: failed: down for good"

    with pytest.raises(DeadLetterError, match=f"entry {entry.id} is abandoned, not pending"):
        queue.record_replay_failure(entry.id, "again", 3)
    with pytest.raises(DeadLetterError, match="no dead-letter entry 999"):
        queue.record_replay_failure(999, "again", 3)
    # an abandoned partition that fails again is a new case for a person to look at
    assert record(queue).id != entry.id


def test_get_names_unknown_ids_and_list_refuses_unknown_status(queue: DeadLetterQueue) -> None:
    entry = record(queue)
    assert [e.id for e in queue.get([entry.id])] == [entry.id]
    with pytest.raises(DeadLetterError, match=r"with id 404, 405 \(see `dashtam dlq list`\)"):
        queue.get([entry.id, 405, 404])
    with pytest.raises(DeadLetterError, match="unknown dead-letter status 'done'"):
        queue.list(status="done")


def test_no_secret_is_stored_in_the_request_or_the_error(state_url: str) -> None:
    key = "fmp-key-7f3a9c2e41"
    queue = DeadLetterQueue(StateStore(state_url), secrets=[key])
    error = ProviderError(
        "fmp",
        ErrorKind.UNAVAILABLE,
        f"GET https://fmp.example/stable/quote?symbol=AAPL&apikey={key} returned 503 for {key}",
    )
    request = {
        "url": f"https://fmp.example/stable/quote?symbol=AAPL&apikey={key}",
        "headers": {"apiKey": key, "Accept": "application/json"},
        "note": f"sent with {key}",
        "symbols": ["AAPL"],
    }
    entry = record(queue, request=request, error=error)
    # a secret only the caller knows is removed too
    record(queue, "2026-11-19", error="token other-secret-99 refused", secrets=["other-secret-99"])
    queue.record_replay_failure(entry.id, f"failed with {key}", 3)

    stored = StateStore(state_url).query("SELECT * FROM dead_letters")
    dump = repr(stored)
    assert key not in dump and "other-secret-99" not in dump
    assert entry.request["symbols"] == ["AAPL"]
    assert entry.request["headers"] == {"apiKey": "***", "Accept": "application/json"}
    assert entry.request["url"] == "https://fmp.example/stable/quote?symbol=AAPL&apikey=***"
    assert "apikey=***" in entry.error and "returned 503" in entry.error


def _record_many(url: str, times: int) -> None:
    queue = DeadLetterQueue(StateStore(url))
    for _ in range(times):
        record(queue)


def test_concurrent_failures_from_several_processes_make_one_entry(state_url: str) -> None:
    queue = DeadLetterQueue(StateStore(state_url))  # the table exists before the workers
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_many, args=(state_url, 10)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    (entry,) = queue.list()
    assert entry.attempts == 40 and entry.status == PENDING
