"""Scaling out: the same backfill with the multiprocess executor, 1 Celery worker and 2.

Each mode gets a fresh deployment from ``test_celery_deployment.celery_cluster`` (real
PostgreSQL, Redis, ``dagster-daemon``, workers started with the README's command, the
loopback sandbox answering every request after ``--latency`` seconds) and runs one backfill:
``--fred`` FRED series (observations of half a year) and ``--days`` days of daily bars,
launched together with ``dashtam materialize``. Measured: wall time, partitions per second,
provider requests, peak RSS per kind of process (sampled from /proc every 0.5 s), and where
a step's time goes, from the event log:

* run queue: a run's creation to its start (the daemon's queue and the run worker's start);
* step queue (Celery): "Submitting celery task" to "Executing steps ... in celery worker";
* step start-up: the worker (or multiprocess child) starting the step to ``STEP_START``
  (loading the code location);
* step body: ``STEP_START`` to ``STEP_SUCCESS`` (provider waits, validation, lake writes).

Not a test (nothing here is collected by pytest). Appends its table to bench/README.md.

    .venv/bin/python bench/scale.py                    # 50 series + 50 days, 50 ms latency
    .venv/bin/python bench/scale.py --fred 10 --days 10  # quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, print_table, write_result

from dashtam_pipeline_tests.test_celery_deployment import (
    FRED_FROM,
    FRED_TO,
    _instance,
    _materialize_at_once,
    celery_cluster,
)

MODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "multiprocess": ("multiprocess", ()),
    "celery-1-worker": ("celery", ("worker-a",)),
    "celery-2-workers": ("celery", ("worker-a", "worker-b")),
}
ROLES = (
    ("celery worker", ("celery", " worker")),
    ("daemon", ("dagster-daemon",)),
    # the code server starts each run in a child by multiprocessing's spawn (its command
    # line names spawn_main, not the run); multiprocess steps fork from a forkserver
    ("run worker", ("spawn_main",)),
    ("step forkserver", ("forkserver",)),
    ("code server", ("api grpc",)),
    ("launcher (dashtam)", ("dashtam materialize",)),
    ("launcher (dagster-graphql)", ("dagster_graphql",)),
    ("redis", ("redis-server",)),
)


class RssSampler:
    """Peak RSS (MiB) of this process's descendants, by kind of process."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self.peak_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import os

        me = os.getpid()
        while not self._stop.wait(0.5):
            parents: dict[int, int] = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    parents[int(stat.parent.name)] = int(fields[1])
                except (OSError, ValueError, IndexError):
                    continue
            total = 0.0
            for pid in parents:
                ancestor, hops = parents.get(pid), 0
                while ancestor not in (None, 0, 1, me) and hops < 20:
                    ancestor, hops = parents.get(ancestor), hops + 1
                if ancestor != me:
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                rss = next((int(line.split()[1]) / 1024 for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0.0)
                total += rss
                role = next((name for name, needles in ROLES
                             if all(n in cmd for n in needles)), None)
                if role:
                    self.peak[role] = max(self.peak.get(role, 0.0), rss)
            self.peak_total = max(self.peak_total, total)


def _timings(instance: Any) -> dict[str, float]:
    """Median seconds of each phase over the runs and steps of the backfill."""
    run_queue, step_queue, startup, body = [], [], [], []
    for run in instance.get_runs():
        record = instance.get_run_record_by_id(run.run_id)
        if record and record.start_time:
            run_queue.append(record.start_time - record.create_timestamp.timestamp())
        submitted: dict[str, float] = {}
        started: dict[str, float] = {}
        began: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event, key, at = entry.dagster_event, entry.step_key, entry.timestamp
            if event is None or key is None:
                continue
            kind = event.event_type_value
            message = entry.message or ""
            if kind == "ENGINE_EVENT" and message.startswith("Submitting celery task"):
                submitted[key] = at
            elif kind == "ENGINE_EVENT" and "in celery worker" in message:
                started[key] = at
                if key in submitted:
                    step_queue.append(at - submitted.pop(key))
            elif kind == "STEP_WORKER_STARTING":
                started[key] = at
            elif kind == "STEP_START":
                began[key] = at
                if key in started:
                    startup.append(at - started.pop(key))
            elif kind == "STEP_SUCCESS" and key in began:
                body.append(at - began.pop(key))

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return {"run queue s": median(run_queue), "step queue s": median(step_queue),
            "step start-up s": median(startup), "step body s": median(body),
            "steps": float(len(body))}


def run_mode(name: str, fred: int, days: int, latency: float) -> dict[str, Any]:
    executor, workers = MODES[name]
    first = dt.date(2024, 2, 1)
    last = first + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="dashtam-scale-") as tmp, celery_cluster(
        Path(tmp), workers=workers, executor=executor, fred_count=fred,
        latency_seconds=latency, connections=0,
    ) as (deployment, app), RssSampler() as rss:
        before = app.request_counts()
        started = time.monotonic()
        _materialize_at_once(deployment, [
            ("--select", "group:macro", "--from", FRED_FROM, "--to", FRED_TO),
            ("--select", "key:market/daily_bars", "--from", first.isoformat(),
             "--to", last.isoformat()),
        ])
        wall = time.monotonic() - started
        after = app.request_counts()
        requests = sum(v - before.get(k, 0) for k, v in after.items() if " " not in k)
        with _instance(deployment) as instance:
            timings = _timings(instance)
    partitions = fred + days
    return {"mode": name, "wall_s": wall, "partitions": partitions,
            "partitions_per_s": partitions / wall, "requests": requests,
            "provider_wait_s": requests * latency, **timings,
            "peak_rss_mib": dict(rss.peak), "peak_rss_total_mib": rss.peak_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fred", type=int, default=50)
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    results = [run_mode(m.strip(), args.fred, args.days, args.latency)
               for m in args.modes.split(",")]
    headers = ["mode", "wall s", "partitions/s", "requests", "run queue s", "step queue s",
               "step start-up s", "step body s", "peak RSS total MiB"]
    rows = [[r["mode"], r["wall_s"], r["partitions_per_s"], r["requests"], r["run queue s"],
             r["step queue s"], r["step start-up s"], r["step body s"],
             r["peak_rss_total_mib"]] for r in results]
    print_table(headers, rows)
    by_mode = {r["mode"]: r for r in results}
    ratio = None
    if {"celery-1-worker", "celery-2-workers"} <= set(by_mode):
        ratio = (by_mode["celery-2-workers"]["partitions_per_s"]
                 / by_mode["celery-1-worker"]["partitions_per_s"])
        print(f"2 workers / 1 worker throughput: {ratio:.2f}x")
    size = "" if (args.fred, args.days) == (50, 50) else f"_{args.fred}_{args.days}"
    write_result(f"scale{size}", {"args": vars(args), "results": results, "ratio": ratio})
    _append_to_readme(args, headers, rows, results, ratio)


def _append_to_readme(args: argparse.Namespace, headers: list[str], rows: list[list[Any]],
                      results: list[dict[str, Any]], ratio: float | None) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    info = machine()
    lines = [
        "", f"### Scaling out (`bench/scale.py --fred {args.fred} --days {args.days} "
        f"--latency {args.latency}`), commit {commit}, {dt.date.today().isoformat()}", "",
        f"Machine: nproc {info['nproc']}, {info['platform']}, Python {info['python']} "
        "(shared with other work while measured: see load below).", "",
        "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
    ]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else str(v)
                                       for v in row) + " |")
    lines.append("")
    for r in results:
        peaks = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["peak_rss_mib"].items()))
        lines.append(f"- {r['mode']}: peak RSS per process (MiB): {peaks}")
    if ratio is not None:
        lines.append(f"- 2 workers / 1 worker throughput: {ratio:.2f}x")
    lines.append(f"- load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
    readme = Path(__file__).resolve().parent / "README.md"
    readme.write_text(readme.read_text() + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
