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

(The tier used libfaketime before: it moved those too, but made every clock call of every
thread pay for it, ran the tier three times slower, and crashed a threaded sandbox server
once in CI.)
"""

from __future__ import annotations

import os

_offset = os.environ.get("SHIFTED_CLOCK_OFFSET_SECONDS")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
