"""FRED full-vintage backfill: our pipeline vs the ``fredapi`` package, same server, same run.

The sandbox is served over loopback with an injected delay on every FRED request, so the
comparison is dominated by what real backfills are dominated by: round trips, parsing and
writing. Each side runs in its own subprocess so its peak RSS is its own.

``fredapi`` only speaks FRED's XML (it never sends ``file_type``) while the sandbox answers
JSON only, so the server wraps the sandbox in a small JSON→XML shim for requests without
``file_type=json``; that conversion is server-side work, as XML rendering is on real FRED.

The sandbox knows 8 series. ``--series N`` above 8 registers clones (``GDP_2``, ...) of
them in this (the server's) process only — a bench-side shim; see bench/README.md.

    .venv/bin/python bench/fred_backfill.py [--series 8] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from _common import peak_rss_mib, print_table, write_result

HERE = Path(__file__).resolve()


# -- server side -------------------------------------------------------------------------
class XmlShim:
    """WSGI wrapper: FRED requests without ``file_type=json`` get the JSON answer as XML."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.seconds = 0.0  # spent converting, reported so it can be subtracted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if not environ.get("PATH_INFO", "").startswith("/fred/") or query.get("file_type"):
            return self.app(environ, start_response)
        environ["QUERY_STRING"] = urlencode({**query, "file_type": "json"})
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            captured["status"] = status

        raw = b"".join(self.app(environ, capture))
        started = time.perf_counter()
        xml = _to_xml(json.loads(raw))
        self.seconds += time.perf_counter() - started
        start_response(
            captured["status"],
            [("Content-Type", "text/xml; charset=UTF-8"), ("Content-Length", str(len(xml)))],
        )
        return [xml]


def _to_xml(body: dict[str, Any]) -> bytes:
    """FRED's XML shapes: ``<observations ...><observation .../>``, ``<error .../>``."""
    if "error_message" in body:
        root = ET.Element("error", code=str(body["error_code"]), message=body["error_message"])
    elif "observations" in body:
        attrs = {k: str(v) for k, v in body.items() if not isinstance(v, list)}
        root = ET.Element("observations", attrs)
        for row in body["observations"]:
            ET.SubElement(root, "observation", row)
    else:
        root = ET.Element("unsupported")
    return ET.tostring(root, encoding="utf-8")


def series_ids(count: int) -> list[str]:
    """The sandbox's series, then clones registered in this process to reach ``count``."""
    from dashtam_pipeline.sandbox.fred_data import SERIES

    base = list(SERIES.values())[:8]
    ids = []
    for i in range(count):
        spec = base[i % len(base)]
        if i < len(base):
            ids.append(spec.id)
            continue
        clone = replace(spec, id=f"{spec.id}_{i // len(base) + 1}")
        SERIES[clone.id] = clone
        ids.append(clone.id)
    return ids


def run_side(side: str, base_url: str, ids: list[str], work: Path) -> dict[str, Any]:
    """One side in a fresh interpreter; its last stdout line is its JSON result."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE), "--side", side, "--base-url", base_url,
         "--work", str(work), "--ids", ",".join(ids)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{side} side failed ({done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


# -- the two sides (each in its own subprocess) --------------------------------------------
def ours(base_url: str, ids: list[str], work: Path) -> int:
    """FredClient → validate → Lake.upsert → Warehouse.ensure_views, as the assets do."""
    from dashtam_pipeline.clients.base import FetchRequest
    from dashtam_pipeline.clients.fred import FredClient
    from dashtam_pipeline.registry import get_dataset_spec
    from dashtam_pipeline.schemas import SCHEMAS
    from dashtam_pipeline.settings import load_settings
    from dashtam_pipeline.storage.lake import Lake
    from dashtam_pipeline.storage.warehouse import Warehouse
    from dashtam_pipeline.validation import validate

    settings = load_settings(fred_api_key="bench", fred_base_url=base_url, dashtam_data_dir=work)
    spec = get_dataset_spec("fred_observations")
    model = SCHEMAS[spec.dataset]
    client = FredClient(settings.provider("fred"))
    try:
        result = client.fetch_fred_observations(FetchRequest(series_ids=tuple(ids)))
    finally:
        client.close()
    checked = validate(model, result.frame, provider="fred", table=spec.table)
    lake = Lake(work / "lake")
    lake.upsert(spec, checked.valid, model)
    Warehouse(work / "warehouse.duckdb", work / "lake").ensure_views()
    return checked.rows_valid


def baseline(base_url: str, ids: list[str], work: Path) -> int:
    """fredapi's ``get_series_all_releases`` per series, written to DuckDB with pandas."""
    import duckdb
    import pandas as pd
    from fredapi import Fred

    fred = Fred(api_key="bench", api_key_file=None)
    fred.root_url = base_url
    con = duckdb.connect(str(work / "fredapi.duckdb"))
    rows = 0
    for series_id in ids:
        frame = fred.get_series_all_releases(series_id)
        frame.insert(0, "series_id", series_id)
        # fredapi's transposed frame is all-object (a missing value can come back as NaT)
        frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
        for column in ("date", "realtime_start"):
            frame[column] = pd.to_datetime(frame[column])
        con.register("frame", frame)
        con.execute("CREATE TABLE IF NOT EXISTS obs AS SELECT * FROM frame LIMIT 0")
        con.execute("INSERT INTO obs SELECT * FROM frame")
        con.unregister("frame")
        rows += len(frame)
    con.close()
    return rows


def child(side: str, base_url: str, ids: list[str], work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = (ours if side == "ours" else baseline)(base_url, ids, work)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


# -- orchestration -------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=8, help="series count (8 = sandbox's)")
    parser.add_argument("--delay", type=float, default=0.02, help="injected seconds/request")
    parser.add_argument("--side", choices=["ours", "fredapi"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args.side, args.base_url, args.ids.split(","), args.work)
        return

    from dashtam_pipeline.clients.base import sandbox_base_url
    from dashtam_pipeline.sandbox.app import SandboxApp
    from dashtam_pipeline.sandbox.server import SandboxServer, _make_server

    ids = series_ids(args.series)
    app = SandboxApp()
    shim = XmlShim(app)
    server = SandboxServer(_make_server("127.0.0.1", 0, shim), app).start()  # type: ignore[arg-type]
    base_url = sandbox_base_url("fred", server.url)
    results: dict[str, dict[str, Any]] = {}
    try:
        # warm the sandbox's vintage cache so neither side pays for data generation
        for side in ("fredapi", "ours"):
            with tempfile.TemporaryDirectory(prefix="warm-") as tmp:
                run_side(side, base_url, ids[:1], Path(tmp))
        app.add_fault(r"^/fred/", delay_seconds=args.delay)
        for side in ("fredapi", "ours"):
            before, shim.seconds = app.request_counts().get("fred", 0), 0.0
            with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as tmp:
                results[side] = run_side(side, base_url, ids, Path(tmp))
            results[side]["requests"] = app.request_counts().get("fred", 0) - before
            results[side]["rows_per_second"] = results[side]["rows"] / results[side]["seconds"]
            results[side]["server_xml_seconds"] = shim.seconds
    finally:
        server.stop()

    speedup = results["fredapi"]["seconds"] / results["ours"]["seconds"]
    print_table(
        ["side", "series", "requests", "rows", "seconds", "rows/s", "peak RSS MiB", "process s"],
        [
            [side, len(ids), r["requests"], r["rows"], r["seconds"], r["rows_per_second"],
             r["peak_rss_mib"], r["process_seconds"]]
            for side, r in results.items()
        ],
    )
    print(f"speedup (fredapi seconds / ours seconds): {speedup:.2f}x  (target >= 10x); "
          f"fredapi's time includes {results['fredapi']['server_xml_seconds']:.2f}s of the "
          "server's JSON->XML shim")
    write_result(
        f"fred_backfill_{len(ids)}" if len(ids) != 8 else "fred_backfill",
        {"series": len(ids), "delay_seconds": args.delay, "results": results,
         "speedup": speedup, "target_speedup": 10},
    )


if __name__ == "__main__":
    main()
