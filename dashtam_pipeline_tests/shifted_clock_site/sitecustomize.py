"""Loaded by every Python process that ``at_date`` starts (this folder is put first on
PYTHONPATH there, and nowhere else): it moves the process's wall clock by
``SHIFTED_CLOCK_OFFSET_SECONDS`` before any other code runs.

Why here: the frozen-date tier must move the clock of the whole process tree (pytest, its
xdist workers, the sandbox server, Dagster's step and run processes, the CLI), and every
one of those is a Python process that reads this file at start-up.

How: ``time_machine.travel(now + offset, tick=True)`` swaps CPython's own clock functions
(``time.time``, ``time.time_ns``, ``time.localtime``/``gmtime``/``strftime``,
``time.clock_gettime(CLOCK_REALTIME)``, ``datetime.now``/``utcnow``/``today``,
``date.today``) so the clock keeps running from the shifted instant. Monotonic clocks and
``time.sleep`` stay real: timeouts, retries and rate-limit pacing measure durations, not
dates. What it does not move: clocks read outside Python (a database's ``now()``, file
modification times); the project's logic never takes "today" from those.

Dagster's gRPC processes (the code server ``dagster api grpc`` and the ``dagster-graphql``
client that launches runs through it) keep the real clock: gRPC's Python layer turns
timeouts into deadlines with ``time.time()`` and hands them to its C core, which compares
them with the real clock, so a shifted ``time.time()`` there makes a deadline days early or
late and the code server starves of heartbeats. Those processes only relay; the run and
step processes they start are shifted again here.

(The tier used libfaketime before: it moved those too, but made every clock call of every
thread pay for it, ran the tier three times slower, and crashed a threaded sandbox server
once in CI.)
"""

from __future__ import annotations

import os
import sys


def _speaks_grpc(argv: list[str]) -> bool:
    """Whether this process is a Dagster gRPC server or client (see the module docstring)."""
    command = " ".join(argv)
    return "dagster_graphql" in command or " api grpc" in command


_offset = os.environ.get("SHIFTED_CLOCK_OFFSET_SECONDS")
if _offset and not _speaks_grpc(sys.orig_argv):
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
