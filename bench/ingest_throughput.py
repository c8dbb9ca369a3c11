"""Ingest throughput: synthetic daily bars through validate + Lake.upsert + DuckDB, against a
bare ``pyarrow.parquet.write_table`` of the same rows, each side in its own subprocess.

Rows are 2,000 symbols x ``rows / 2,000`` business days from 1990, generated with numpy in
chunks of whole calendar months (about 500k rows each), so memory stays flat however many
rows there are and each chunk touches only its own month buckets (``market.daily_bars`` is
bucketed by month) — the streaming shape a backfill has. Generation is excluded from both
timings; the bare side's time includes pandas → Arrow conversion, which ours also pays.

    .venv/bin/python bench/ingest_throughput.py [--rows 10000000] [--symbols 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import peak_rss_mib, print_table, write_result

HERE = Path(__file__).resolve()
START = np.datetime64("1990-01-01")
CHUNK_ROWS = 500_000


def chunks(rows: int, symbols: int, seed: int = 7) -> Iterator[pd.DataFrame]:
    """Daily bars in date order, one frame per run of whole months (~``CHUNK_ROWS`` rows)."""
    days_needed = -(-rows // symbols)
    days = np.busday_offset(START, np.arange(days_needed), roll="forward")
    months = days.astype("datetime64[M]")
    boundaries = np.flatnonzero(np.diff(months.astype(np.int64))) + 1
    month_starts = np.concatenate([[0], boundaries])
    per_month = max(1, CHUNK_ROWS // (symbols * 21))
    names = np.array([f"S{i:05d}" for i in range(symbols)], dtype=object)
    rng = np.random.default_rng(seed)
    emitted = 0
    for first in range(0, len(month_starts), per_month):
        lo = month_starts[first]
        hi = month_starts[first + per_month] if first + per_month < len(month_starts) else len(days)
        n = min((hi - lo) * symbols, rows - emitted)
        if n <= 0:
            return
        chunk_days = np.repeat(days[lo:hi], symbols)[:n]
        close = 20 + 180 * rng.random(n)
        open_ = close * (1 + rng.normal(0, 0.01, n))
        spread = np.abs(rng.normal(0, 0.01, n))
        high = np.maximum(open_, close) * (1 + spread)
        low = np.minimum(open_, close) * (1 - spread)
        yield pd.DataFrame(
            {
                "symbol": np.tile(names, hi - lo)[:n],
                "date": chunk_days.astype("datetime64[s]"),
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": rng.integers(1_000, 5_000_000, n).astype("float64"),
                "vwap": (high + low + close) / 3,
                "provider": "bench",
            }
        )
        emitted += n


# -- the two sides (each in its own subprocess) --------------------------------------------
def ours(rows: int, symbols: int, work: Path) -> dict[str, Any]:
    """validate → Lake.upsert per chunk, then one ensure_views and a DuckDB count."""
    import duckdb

    from dashtam_pipeline.registry import get_dataset_spec
    from dashtam_pipeline.schemas import SCHEMAS
    from dashtam_pipeline.storage.lake import Lake
    from dashtam_pipeline.storage.warehouse import Warehouse
    from dashtam_pipeline.validation import validate

    spec = get_dataset_spec("daily_bars")
    model = SCHEMAS[spec.dataset]
    lake = Lake(work / "lake")
    spent = {"validate": 0.0, "upsert": 0.0}
    quarantined = 0
    for frame in chunks(rows, symbols):
        started = time.perf_counter()
        checked = validate(model, frame, provider="bench", table=spec.table)
        spent["validate"] += time.perf_counter() - started
        quarantined += checked.rows_quarantined
        started = time.perf_counter()
        lake.upsert(spec, checked.valid, model)
        spent["upsert"] += time.perf_counter() - started
        del frame, checked
    started = time.perf_counter()
    Warehouse(work / "warehouse.duckdb", work / "lake").ensure_views()
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM market.daily_bars").fetchone()
    spent["views_and_count"] = time.perf_counter() - started
    return {"rows": int(row[0]) if row else 0, "quarantined": quarantined, "phases": spent}


def bare(rows: int, symbols: int, work: Path) -> dict[str, Any]:
    """``pa.Table.from_pandas`` + ``pq.write_table`` of each chunk, nothing else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = 0
    spent = 0.0
    for i, frame in enumerate(chunks(rows, symbols)):
        started = time.perf_counter()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), work / f"{i:05d}.parquet")
        spent += time.perf_counter() - started
        written += len(frame)
    return {"rows": written, "phases": {"write": spent}}


def child(side: str, rows: int, symbols: int, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = (ours if side == "ours" else bare)(rows, symbols, work)
    total = time.perf_counter() - started
    timed = sum(result["phases"].values())
    print(json.dumps({**result, "seconds": timed, "seconds_with_generation": total,
                      "peak_rss_mib": peak_rss_mib()}))


def run_side(side: str, rows: int, symbols: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"ingest-{side}-") as tmp:
        done = subprocess.run(
            [sys.executable, str(HERE), "--side", side, "--rows", str(rows),
             "--symbols", str(symbols), "--work", tmp],
            capture_output=True, text=True, check=False,
        )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{side} side failed ({done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows_per_second"] = result["rows"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=2_000)
    parser.add_argument("--side", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args.side, args.rows, args.symbols, args.work)
        return

    results = {side: run_side(side, args.rows, args.symbols) for side in ("bare", "ours")}
    ratio = results["ours"]["seconds"] / results["bare"]["seconds"]
    print_table(
        ["side", "rows", "seconds", "rows/s", "peak RSS MiB", "phases (s)"],
        [
            [side, r["rows"], r["seconds"], r["rows_per_second"], r["peak_rss_mib"],
             ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())]
            for side, r in results.items()
        ],
    )
    print(f"ours / bare time: {ratio:.2f}x (target <= 3x); "
          f"ours peak RSS {results['ours']['peak_rss_mib']:.0f} MiB (target < 1536 at 25M rows)")
    write_result(
        "ingest_throughput" if args.rows == 10_000_000 else f"ingest_throughput_{args.rows}",
        {"rows": args.rows, "symbols": args.symbols, "results": results, "ratio": ratio,
         "target_ratio": 3, "target_peak_rss_mib_at_25m": 1536},
    )


if __name__ == "__main__":
    main()
