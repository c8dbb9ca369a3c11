"""FRED nightly check: 1,000 configured series, 20 changed since the last run.

The sandbox runs on a frozen clock (so no scheduled release lands between the runs),
served over loopback. An untimed first run pulls every series' whole history into a
fresh data dir and records the sync marks, exactly as the assets do (``ingest_dataset``:
validation, lake upsert, then the marks). Two hours later (same FRED day) the sandbox
publishes a revision of 20 of the series (``FredData.revise``: evenly spread over the
list, so every frequency is among them) and the timed nightly run pulls again. Reported:
the FRED requests of the nightly by endpoint, its wall time, and whether the lake then
holds exactly the sandbox's history of the changed series. Target: ≤ 25 requests.

    python bench/fred_nightly.py                # 1,000 series, 20 changed
    python bench/fred_nightly.py --series 200 --changed 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import peak_rss_mib, print_table, write_result

START = dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)


class FrozenClock:
    """The sandbox's and the sync store's "now": still until moved."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=20)
    args = parser.parse_args()

    from dashtam_pipeline.clients.base import FetchRequest, sandbox_base_url
    from dashtam_pipeline.fred_sync import FredSync
    from dashtam_pipeline.ingest import ingest_dataset
    from dashtam_pipeline.providers.fred.client import FredClient
    from dashtam_pipeline.registry import Dataset, get_dataset_spec, providers_serving
    from dashtam_pipeline.sandbox.app import SandboxApp
    from dashtam_pipeline.sandbox.common import CHICAGO
    from dashtam_pipeline.sandbox.fred_data import benchmark_series_ids, series_spec
    from dashtam_pipeline.sandbox.server import SandboxServer, _make_server
    from dashtam_pipeline.settings import load_settings
    from dashtam_pipeline.state.store import state_store
    from dashtam_pipeline.storage.lake import Lake

    ids = tuple(benchmark_series_ids(args.series))
    step = max(1, len(ids) // max(1, args.changed))
    # one every ``step`` ids, shifted by one each time so the benchmark order's ten
    # base series (every frequency, fred_data.benchmark_series_ids) are all among them
    changed = tuple(dict.fromkeys(ids[(i * step + i) % len(ids)]
                                  for i in range(args.changed)))
    clock = FrozenClock(START)
    app = SandboxApp(clock=clock)
    server = SandboxServer(_make_server("127.0.0.1", 0, app), app).start()  # type: ignore[arg-type]
    spec = get_dataset_spec(Dataset.FRED_OBSERVATIONS)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        os.environ["DASHTAM_STATE_URL"] = f"sqlite:///{tmp}/state.db"
        settings = load_settings(
            fred_api_key="bench", fred_base_url=sandbox_base_url("fred", server.url),
            dashtam_data_dir=Path(tmp),
        )
        lake = Lake(settings.lake_dir)

        def run() -> Any:
            return ingest_dataset(
                spec, providers_serving(Dataset.FRED_OBSERVATIONS),
                FetchRequest(series_ids=ids), settings, lake,
                client_factory=lambda _slug, _s: FredClient(
                    settings.provider("fred"),
                    sync=FredSync(state_store(settings), clock=clock)),
                companions=[get_dataset_spec(Dataset.FRED_SERIES)],
            )

        try:
            started = time.perf_counter()
            run()
            first_seconds = time.perf_counter() - started
            first_requests = app.request_counts().get("fred", 0)
            clock.now += dt.timedelta(hours=2)
            for series_id in changed:
                app.world.fred.revise(series_id, clock.now)
            clock.now += dt.timedelta(minutes=30)
            app.reset()
            started = time.perf_counter()
            outcome = run()
            seconds = time.perf_counter() - started
            counts = {k: v for k, v in app.request_counts().items() if k.startswith("fred ")}
            today = clock.now.astimezone(CHICAGO).date()
            frame = lake.read_frame(spec.table)
            stored = frame[frame["series_id"].isin(changed)]
            got = set(zip(stored["series_id"], stored["date"], stored["realtime_start"],
                          stored["realtime_end"], strict=True))
            truth = {(s, v.date, v.start, v.end) for s in changed
                     for v in app.world.fred.vintages(series_spec(s), today)}  # type: ignore[arg-type]
        finally:
            server.stop()
    requests = sum(counts.values())
    print_table(
        ["run", "series", "changed", "requests", "seconds"],
        [["first (untimed setup)", len(ids), len(ids), first_requests, first_seconds],
         ["nightly", len(ids), len(changed), requests, seconds]],
    )
    print("nightly requests by endpoint:", counts)
    print(f"target <= 25 requests: {'met' if requests <= 25 else 'missed'}; changed series "
          f"exactly as FRED has them: {got == truth}; peak RSS {peak_rss_mib():.0f} MiB")
    notes = [n for n in outcome.notes if n.startswith("fred updates")]
    print("\n".join(notes))
    result = {
        "series": len(ids), "changed": list(changed), "requests": requests,
        "requests_by_endpoint": counts, "seconds": seconds, "first_run_requests":
        first_requests, "first_run_seconds": first_seconds, "exact": got == truth,
        "peak_rss_mib": peak_rss_mib(), "notes": notes, "target_requests": 25,
    }
    name = "fred_nightly" if (args.series, args.changed) == (1000, 20) else (
        f"fred_nightly_{args.series}_{args.changed}")
    write_result(name, result)


if __name__ == "__main__":
    main()
