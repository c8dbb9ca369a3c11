"""What a planning sensor returns: its run requests, or the reason it has none.

The sensors plan a tick as plain data (runs, notes for a person, the new cursor) so tests
can evaluate them without a daemon; this turns that plan into Dagster's ``SensorResult``
the same way for each of them: the notes become the skip reason the UI shows when no run
is requested, ``idle`` when there is nothing to say.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AddDynamicPartitionsRequest, RunRequest, SensorResult


def sensor_result(
    run_requests: Sequence[RunRequest],
    notes: Sequence[str],
    cursor: str | None,
    idle: str,
    *,
    partitions: Sequence[AddDynamicPartitionsRequest] = (),
) -> SensorResult:
    """``partitions``: dynamic partitions the runs need, added by Dagster before them."""
    if run_requests:
        return SensorResult(run_requests=list(run_requests), cursor=cursor,
                            dynamic_partitions_requests=list(partitions) or None)
    return SensorResult(skip_reason="; ".join(notes) or idle, cursor=cursor)
