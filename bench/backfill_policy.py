"""Backfill policy: 240 monthly partitions x 20 series as one run vs one run per partition.

Our FRED assets are partitioned by series (static), not by month, so the comparison uses a
small standalone asset defined here: monthly partitions over 240 months, a body that
validates and upserts 20 series' daily rows for its partition range into
``macro.fred_observations`` via ``Lake.upsert``. Both modes run on the same kind of
temporary (sqlite) Dagster instance with ``materialize``: one run carrying the
``dagster/asset_partition_range_start/end`` tags (what a single-run ``BackfillPolicy``
launches) vs one run per partition (what a backfill without a policy launches). The
difference is the per-run overhead: run/event storage, process setup, and re-reading and
rewriting the same 20 lake files 240 times instead of once.

    .venv/bin/python bench/backfill_policy.py [--months 240] [--series 20]
"""

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from _common import peak_rss_mib, print_table, write_result
from dagster import AssetExecutionContext

START = dt.date(2000, 1, 1)
OPEN_END = np.datetime64("9999-12-31", "s")


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def rows_for(series: int, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Every series' business-day rows in ``[start, end)``, one current vintage each."""
    days = np.arange(np.datetime64(start), np.datetime64(end), dtype="datetime64[D]")
    days = days[np.is_busday(days)].astype("datetime64[s]")
    ids = np.repeat([f"BENCH{i:03d}" for i in range(series)], len(days))
    dates = np.tile(days, series)
    return pd.DataFrame(
        {
            "series_id": ids,
            "date": dates,
            "value": np.random.default_rng(len(dates)).random(len(dates)),
            "realtime_start": dates,
            "realtime_end": np.full(len(dates), OPEN_END),
        }
    )


def make_asset(months: int, series: int, lake_root: Path) -> dg.AssetsDefinition:
    partitions = dg.MonthlyPartitionsDefinition(
        start_date=START.isoformat(), end_date=add_months(START, months).isoformat()
    )

    @dg.asset(
        name="bench_fred_monthly",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def bench_fred_monthly(context: AssetExecutionContext) -> None:
        """The partition range's rows for every series: validated, then upserted."""
        from dashtam_pipeline.registry import get_dataset_spec
        from dashtam_pipeline.schemas import SCHEMAS
        from dashtam_pipeline.storage.lake import Lake
        from dashtam_pipeline.validation import validate

        window = context.partition_time_window
        spec = get_dataset_spec("fred_observations")
        model = SCHEMAS[spec.dataset]
        frame = rows_for(series, window.start.date(), window.end.date())
        checked = validate(model, frame, provider="bench", table=spec.table)
        Lake(lake_root).upsert(spec, checked.valid, model)
        context.add_output_metadata({"rows": checked.rows_valid})

    return bench_fred_monthly


def run_mode(mode: str, months: int, series: int) -> dict[str, Any]:
    """Materialize every partition as one ranged run, or as one run per partition."""
    with tempfile.TemporaryDirectory(prefix=f"policy-{mode}-") as tmp:
        root = Path(tmp)
        asset = make_asset(months, series, root / "lake")
        keys = asset.partitions_def.get_partition_keys()  # type: ignore[union-attr]
        (root / "instance").mkdir()
        with dg.DagsterInstance.local_temp(str(root / "instance")) as instance:
            started = time.perf_counter()
            if mode == "one run":
                tags = {"dagster/asset_partition_range_start": keys[0],
                        "dagster/asset_partition_range_end": keys[-1]}
                results = [dg.materialize([asset], instance=instance, tags=tags)]
            else:
                results = [
                    dg.materialize([asset], instance=instance, partition_key=key) for key in keys
                ]
            seconds = time.perf_counter() - started
            runs = len(instance.get_run_records())
        from dashtam_pipeline.storage.lake import Lake

        rows = Lake(root / "lake").read("fred_observations").num_rows
    assert all(r.success for r in results)
    return {"partitions": len(keys), "runs": runs, "rows": rows, "seconds": seconds,
            "seconds_per_partition": seconds / len(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--months", type=int, default=240)
    parser.add_argument("--series", type=int, default=20)
    args = parser.parse_args()
    results = {mode: run_mode(mode, args.months, args.series)
               for mode in ("one run", "run per partition")}
    ratio = results["run per partition"]["seconds"] / results["one run"]["seconds"]
    print_table(
        ["mode", "partitions", "runs", "rows", "seconds", "s/partition"],
        [[mode, r["partitions"], r["runs"], r["rows"], r["seconds"], r["seconds_per_partition"]]
         for mode, r in results.items()],
    )
    print(f"one run is {ratio:.1f}x faster than one run per partition; "
          f"peak RSS {peak_rss_mib():.0f} MiB")
    write_result(
        "backfill_policy" if args.months == 240 else f"backfill_policy_{args.months}",
        {"months": args.months, "series": args.series, "results": results,
         "speedup": ratio, "peak_rss_mib": peak_rss_mib(), "dagster": dg.__version__},
    )


if __name__ == "__main__":
    main()
