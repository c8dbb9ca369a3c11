"""What hashing FRED series into 16 files costs on the write side, and what it buys.

``macro.fred_observations`` hashes ``series_id`` into 16 bucket files
(``lake_buckets=16``), where earlier versions kept one file per series. Hashing makes an
analyst's scan of 1,000 series open 16 files instead of 1,000 (issue 14: reads within 1.5x
of native DuckDB). The cost is write amplification. A nightly run that re-pulls 20 changed
series rewrites every hash file one of them falls in: up to 16 files holding everything.
One file per series rewrites 20 small files.

The two layouts run on the same rows, in one process each, on a fresh lake:

* backfill: every series, 25 series per upsert (as the backfill policy's ranged runs
  land them);
* nightly: 20 series changed (a new observation and a revised last value each);
* read: the latest value of every series (``fred_latest``'s shape) and a count, in DuckDB.

Bytes rewritten come from the files' sizes before and after.

    .venv/bin/python bench/hash_buckets.py [--series 1000] [--obs 2500]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import peak_rss_mib, print_table, write_result

HERE = Path(__file__).resolve()
TABLE = "macro.fred_observations"
CHANGED = 20
#: Series per backfill run: the FRED assets' backfill policy (``assets/partitions.py``).
CHUNK_SERIES = 25


def observations(series: list[str], obs: int, *, seed: int, shift: int = 0) -> pd.DataFrame:
    """``obs`` monthly observations per series (one open-ended vintage each)."""
    rng = np.random.default_rng(seed)
    months = np.arange(np.datetime64("1990-01"), np.datetime64("1990-01") + obs + shift)
    months = months[shift:]
    dates = months.astype("datetime64[D]")
    n = len(series) * len(dates)
    return pd.DataFrame({
        "series_id": np.repeat(np.array(series, dtype=object), len(dates)),
        "date": np.tile(dates, len(series)).astype("datetime64[s]"),
        "value": rng.normal(100, 10, n),
        "realtime_start": np.tile(dates + 35, len(series)).astype("datetime64[s]"),
        "realtime_end": np.datetime64("9999-12-31", "s"),
    })


def sizes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*.parquet")}


def run(layout_name: str, n_series: int, obs: int, root: Path) -> dict[str, Any]:
    import duckdb

    from dashtam_pipeline.storage import lake as lake_module
    from dashtam_pipeline.storage.lake import Lake

    layout = lake_module.table_layout(TABLE)
    if layout_name == "per-series":
        layout = dataclasses.replace(layout, buckets=None)
    lake = Lake(root / "lake")
    series = [f"S{i:05d}" for i in range(n_series)]
    chunks = [observations(series[i:i + CHUNK_SERIES], obs, seed=i)
              for i in range(0, n_series, CHUNK_SERIES)]
    changed = series[:: max(1, n_series // CHANGED)][:CHANGED]
    nightly = observations(changed, 2, seed=99, shift=obs - 1)  # last value revised + a new one

    start = time.perf_counter()
    for chunk in chunks:
        lake.upsert(layout, chunk)
    backfill_s = time.perf_counter() - start
    before = sizes(root)
    start = time.perf_counter()
    result = lake.upsert(layout, nightly)
    nightly_s = time.perf_counter() - start
    after = sizes(root)
    rewritten = [path for path in after if before.get(path) != after[path] or path in result.files]
    con = duckdb.connect()
    source = f"read_parquet('{lake.glob(layout)}')"
    latest = (f"select series_id, arg_max(value, date) from {source} "
              "where realtime_end = DATE '9999-12-31' group by series_id")
    start = time.perf_counter()
    got = con.execute(latest).fetchall()
    read_s = time.perf_counter() - start
    rows = con.execute(f"select count(*) from {source}").fetchone()[0]
    assert len(got) == n_series, len(got)
    return {
        "layout": layout_name, "rows": rows, "files": len(after),
        "backfill_s": round(backfill_s, 3), "nightly_s": round(nightly_s, 4),
        "nightly_files_rewritten": len(rewritten),
        "nightly_mib_rewritten": round(sum(after[p] for p in rewritten) / 2**20, 2),
        "table_mib": round(sum(after.values()) / 2**20, 2),
        "read_latest_s": round(read_s, 4), "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--obs", type=int, default=2500)
    parser.add_argument("--layout", choices=("hashed", "per-series"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layout:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run(args.layout, args.series, args.obs, Path(tmp))))
        return
    results = []
    for layout in ("hashed", "per-series"):
        done = subprocess.run([sys.executable, str(HERE), "--layout", layout, "--series",
                               str(args.series), "--obs", str(args.obs)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{layout} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print_table(list(results[0]), [list(r.values()) for r in results])
    default = (args.series, args.obs) == (1000, 2500)
    name = "hash_buckets" if default else f"hash_buckets_{args.series}x{args.obs}"
    write_result(name, {"series": args.series, "obs": args.obs, "results": results})


if __name__ == "__main__":
    main()
