"""Run a command, and every Python process it starts, at another date: ``python -m
dashtam_pipeline_tests.at_date 2026-12-05T15:00:00Z -- pytest -m dates``.

Why: a test that passes only in the week it was written is a time bomb (a fixed date
that the sandbox's wall clock walks away from, a token expiry computed from today, a
partition that does not exist yet). Running the date-sensitive tier under several dates
makes such a test fail the day it is written.

How: the environment carries a *relative* offset (``SHIFTED_CLOCK_OFFSET_SECONDS``) and
puts ``shifted_clock_site`` first on PYTHONPATH, whose ``sitecustomize`` moves the wall
clock of each Python process by that offset as it starts (``time-machine``), so the whole
tree — pytest, its workers, the sandbox server, Dagster's step processes, the CLI — shares
one clock that keeps running from the chosen instant. (An absolute start time would
restart at that instant in every child process.) Monotonic clocks stay real: timeouts
and rate-limit pacing measure durations, not dates.

``FROZEN_DATES`` is the set CI runs: a weekend, a US market holiday, a month and year end
that is already the next day in UTC, the spring daylight-saving change in New York, and
a date years ahead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: name -> the instant (UTC) the clock starts at.
FROZEN_DATES: dict[str, str] = {
    # Saturday morning in New York: no session today, the last one was Friday.
    "weekend": "2026-12-05T15:00:00Z",
    # Thanksgiving (NYSE closed), in the afternoon: the nightly ran for Wednesday.
    "holiday": "2026-11-26T19:00:00Z",
    # The day after Thanksgiving at 02:30 New York: the previous trading day skips the
    # holiday (Wednesday), and UTC is already at 07:30.
    "after_holiday": "2026-11-27T07:30:00Z",
    # 22:30 on 31 December in New York is already 1 January in UTC: month, quarter and
    # year end, with the calendar date differing between the two zones.
    "year_end": "2027-01-01T03:30:00Z",
    # Sunday 14 March 2027, 03:30 EDT: New York's clocks just jumped from 02:00 to 03:00,
    # so the nightly schedule's 02:00 did not exist that night.
    "dst_spring": "2027-03-14T07:30:00Z",
    # Years ahead: nothing may assume "the data starts near today".
    "years_ahead": "2031-07-15T14:00:00Z",
}

def parse_instant(text: str) -> dt.datetime:
    """A name from ``FROZEN_DATES`` or an ISO instant (a naive one is taken as UTC)."""
    text = FROZEN_DATES.get(text, text)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def environment_at(moment: dt.datetime, name: str | None = None) -> dict[str, str]:
    """The environment that makes a Python process tree see ``moment`` as now (``name``:
    the instant's name in ``FROZEN_DATES``, which picks the ``dates`` tests run there)."""
    offset = (moment - dt.datetime.now(dt.UTC)).total_seconds()
    env = dict(os.environ)
    env["SHIFTED_CLOCK_OFFSET_SECONDS"] = f"{offset:+.3f}"
    env["DASHTAM_TEST_AT"] = moment.isoformat()
    env.pop("DASHTAM_TEST_AT_NAME", None)
    if name in FROZEN_DATES:
        env["DASHTAM_TEST_AT_NAME"] = name
    site = str(Path(__file__).with_name("shifted_clock_site"))
    env["PYTHONPATH"] = os.pathsep.join(
        [site, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != site]]
    )
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashtam_pipeline_tests.at_date",
        description="Run a command with the clock set to another instant.",
    )
    parser.add_argument("when", help=f"an ISO instant or one of {', '.join(FROZEN_DATES)}")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command and arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the command to run after --")
    try:
        moment = parse_instant(args.when)
    except ValueError:
        print(f"at_date: {args.when!r} is neither an ISO instant nor one of "
              f"{', '.join(FROZEN_DATES)}", file=sys.stderr)
        return 2
    print(f"at_date: running at {moment.isoformat()} ({args.when})", file=sys.stderr)
    return subprocess.call(command, env=environment_at(moment, args.when))


if __name__ == "__main__":
    raise SystemExit(main())
