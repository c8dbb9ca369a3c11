"""Loaded by every Python process that ``at_date`` starts (this folder is put first on
PYTHONPATH there, and nowhere else).

libfaketime 0.9.10 shifts the real-time clock for the whole process tree, but with
``FAKETIME_DONT_FAKE_MONOTONIC`` (needed so condition variables, queues and socket
timeouts keep working) its ``clock_nanosleep`` wrapper turns CPython's absolute monotonic
deadline into an invalid one: ``time.sleep`` raises ``OSError: [Errno 22]``. A sleep that
waits on ``select`` with a relative timeout measures the same duration and is not touched.
"""

from __future__ import annotations

import os
import select
import time

if os.environ.get("FAKETIME"):
    _monotonic = time.monotonic

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = _monotonic() + seconds
        while (left := deadline - _monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
