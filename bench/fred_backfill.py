"""FRED full-vintage backfill: our pipeline vs the ``fredapi`` package, same server, same run.

The sandbox is served over loopback with an injected delay on every FRED request, so the
comparison is dominated by what real backfills are dominated by: round trips, parsing and
writing. Each side runs in its own subprocess so its peak RSS is its own.

``fredapi`` only speaks FRED's XML (it never sends ``file_type``) while the sandbox answers
JSON only, so the server wraps the sandbox in a small JSON→XML shim for requests without
``file_type=json``; that conversion is server-side work, as XML rendering is on real FRED.

Series: ``fred_data.benchmark_series_ids(N)``, the sandbox's own ids: its base series
(daily, weekly, monthly, quarterly) first, then their clones (``GDP_1``, ``DGS10_1``, ...),
which the sandbox serves like any series (``fred_data.series_spec``).

FRED refuses an observations request spanning more than 2,000 vintage dates (a daily
series' whole history). Our client splits such a history into real-time windows itself;
``fredapi`` has no such logic (``get_series_all_releases`` raises ``ValueError`` with
FRED's message), so the baseline does what a fredapi user has to: on that error, get the
vintage dates (``get_series_vintage_dates``), call ``get_series_all_releases`` per window of
2,000, and drop the pieces FRED clipped at each window start — the same rows.

    .venv/bin/python bench/fred_backfill.py [--series 8] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from _common import peak_rss_mib, print_table, write_result

HERE = Path(__file__).resolve()
#: FRED's most vintage dates per observations request (the baseline's window size).
MAX_VINTAGES = 2_000


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
    elif "seriess" in body:
        attrs = {k: str(v) for k, v in body.items() if not isinstance(v, list)}
        root = ET.Element("seriess", attrs)
        for item in body["seriess"]:
            ET.SubElement(root, "series", {k: str(v) for k, v in item.items()})
    elif "vintage_dates" in body:
        attrs = {k: str(v) for k, v in body.items() if not isinstance(v, list)}
        root = ET.Element("vintage_dates", attrs)
        for day in body["vintage_dates"]:
            ET.SubElement(root, "vintage_date").text = day
    else:
        root = ET.Element("unsupported")
    return ET.tostring(root, encoding="utf-8")


def warm(app: Any, ids: list[str]) -> None:
    """Build every series' vintages in the server before timing (the sandbox caches them
    per day), so neither side pays for data generation: one in-process ``/series`` each."""
    import httpx

    from dashtam_pipeline.clients.base import SANDBOX_ROOT, sandbox_base_url

    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=SANDBOX_ROOT) as http:
        for series_id in ids:
            http.get(
                sandbox_base_url("fred") + "/series",
                params={"series_id": series_id, "file_type": "json", "api_key": "bench"},
            ).raise_for_status()


#: The rate-limited mode's settings, passed to each side's subprocess: requests per window
#: and the window in seconds (120 per 60 s is FRED's published limit; a shorter window
#: scales it so a run takes minutes).
LIMIT_ENV: dict[str, str] = {}


def _limit() -> tuple[int, float] | None:
    if not os.environ.get("BENCH_FRED_LIMIT"):
        return None
    return int(os.environ["BENCH_FRED_LIMIT"]), float(os.environ["BENCH_FRED_WINDOW"])


#: Our limiter's window is this much longer than the server's: a request is counted
#: when it starts here and when it arrives there, and arrival jitter on a loaded machine
#: would otherwise let one more request into some server window (a 429).
ARRIVAL_MARGIN = 0.02


def run_side(side: str, base_url: str, ids: list[str], work: Path) -> dict[str, Any]:
    """One side in a fresh interpreter; its last stdout line is its JSON result."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE), "--side", side, "--base-url", base_url,
         "--work", str(work), "--ids", ",".join(ids)],
        capture_output=True, text=True, check=False, env={**os.environ, **LIMIT_ENV},
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{side} side failed ({done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


# -- the two sides (each in its own subprocess) --------------------------------------------
def ours(base_url: str, ids: list[str], work: Path, phases: dict[str, float]) -> int:
    """FredClient → validate → Lake.upsert → Warehouse.ensure_views, as the assets do."""
    from dashtam_pipeline.clients.base import FetchRequest
    from dashtam_pipeline.providers.fred.client import FredClient
    from dashtam_pipeline.registry import get_dataset_spec
    from dashtam_pipeline.schemas import SCHEMAS
    from dashtam_pipeline.settings import load_settings
    from dashtam_pipeline.storage.lake import Lake
    from dashtam_pipeline.storage.warehouse import Warehouse
    from dashtam_pipeline.validation import validate

    limit = _limit()
    settings = load_settings(
        fred_api_key="bench", fred_base_url=base_url, dashtam_data_dir=work,
        fred_requests_per_minute=limit[0] if limit else None,
    )
    spec = get_dataset_spec("fred_observations")
    model = SCHEMAS[spec.dataset]
    hooks = []
    if limit is not None:  # the production limiter: a sliding log in the state store
        from dashtam_pipeline.resilience.limits import RateLimiter
        from dashtam_pipeline.state.store import state_store

        per_window, window = limit
        hooks.append(RateLimiter(
            state_store(settings), "fred", per_minute=per_window, per_day=None, tier=None,
            window_seconds=window * (1 + ARRIVAL_MARGIN),
        ))
    client = FredClient(settings.provider("fred"), hooks=hooks)
    with _phase(phases, "fetch"):
        try:
            result = client.fetch_fred_observations(FetchRequest(series_ids=tuple(ids)))
        finally:
            client.close()
    with _phase(phases, "validate"):
        checked = validate(model, result.frame, provider="fred", table=spec.table)
    with _phase(phases, "upsert"):
        Lake(work / "lake").upsert(spec, checked.valid, model)
    with _phase(phases, "views"):
        Warehouse(work / "warehouse.duckdb", work / "lake").ensure_views()
    if checked.rows_quarantined:
        raise SystemExit(f"ours: {checked.rows_quarantined} rows quarantined")
    return checked.rows_valid


def baseline(base_url: str, ids: list[str], work: Path, phases: dict[str, float]) -> int:
    """fredapi's ``get_series_all_releases`` per series, written to DuckDB with pandas."""
    import duckdb
    import pandas as pd
    from fredapi import Fred

    fred = Fred(api_key="bench", api_key_file=None)
    fred.root_url = base_url
    if _limit() is not None:
        fred = _BackingOff(fred)  # type: ignore[assignment]
    con = duckdb.connect(str(work / "fredapi.duckdb"))
    rows = 0
    for series_id in ids:
        with _phase(phases, "fetch"):
            if _limit() is not None:  # the same two tables as ours: metadata too
                fred.get_series_info(series_id)
            frame = _all_releases(fred, series_id)
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


class _BackingOff:
    """fredapi as its users run it against a rate limit: every call retried after a
    sleep when FRED answers 429 (fredapi raises ``ValueError`` with FRED's message),
    the sleep doubling from 1 s up to the limit's window."""

    def __init__(self, fred: Any) -> None:
        self.fred = fred

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.fred, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            limit = _limit()
            wait = 1.0
            while True:
                try:
                    return method(*args, **kwargs)
                except ValueError as exc:
                    if "Too Many Requests" not in str(exc):
                        raise
                time.sleep(wait)
                wait = min(wait * 2, limit[1] if limit else 60.0)

        return call


def _all_releases(fred: Any, series_id: str) -> Any:
    """``get_series_all_releases``, in windows of 2,000 vintage dates when FRED refuses
    the whole history (fredapi does not split it itself). FRED clips each row to the
    window, so a vintage current across a window start comes back twice, the second piece
    starting on the window start with the same value: that piece is dropped."""
    import pandas as pd

    try:
        return fred.get_series_all_releases(series_id)
    except ValueError as exc:
        if "maximum number of vintage dates" not in str(exc):
            raise
    vintages = sorted(fred.get_series_vintage_dates(series_id))
    starts = vintages[MAX_VINTAGES::MAX_VINTAGES]
    windows = list(zip([None, *starts], [*(s - pd.Timedelta(days=1) for s in starts), None],
                       strict=True))
    frame = pd.concat(
        [
            fred.get_series_all_releases(
                series_id,
                realtime_start=None if start is None else f"{start:%Y-%m-%d}",
                realtime_end=None if end is None else f"{end:%Y-%m-%d}",
            )
            for start, end in windows
        ],
        ignore_index=True,
    )
    frame = frame.sort_values(["date", "realtime_start"], kind="stable", ignore_index=True)
    value = pd.to_numeric(frame["value"], errors="coerce")  # "." can come back as NaT
    same = (frame["date"] == frame["date"].shift()) & (
        (value == value.shift()) | (value.isna() & value.shift().isna())
    )
    clipped = same & frame["realtime_start"].isin(starts)
    return frame[~clipped].reset_index(drop=True)


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - started


#: What each side imports; loaded before its clock starts ("process s" includes them).
IMPORTS = {
    "ours": ("dashtam_pipeline.providers.fred.client", "dashtam_pipeline.registry",
             "dashtam_pipeline.schemas", "dashtam_pipeline.settings",
             "dashtam_pipeline.storage.lake", "dashtam_pipeline.storage.warehouse",
             "dashtam_pipeline.validation"),
    "fredapi": ("duckdb", "pandas", "fredapi"),
}


def child(side: str, base_url: str, ids: list[str], work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    for module in IMPORTS[side]:
        importlib.import_module(module)
    started = time.perf_counter()
    rows = (ours if side == "ours" else baseline)(base_url, ids, work, phases)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mib": peak_rss_mib(),
                      "phases": phases, "digest": digest(side, work)}))


def digest(side: str, work: Path) -> str:
    """What each side stored, as one order-independent checksum of (series_id, date,
    realtime_start, value): equal digests mean the same rows. Computed after the clock."""
    import duckdb

    if side == "ours":
        con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
        relation = "macro.fred_observations"
    else:
        con = duckdb.connect(str(work / "fredapi.duckdb"), read_only=True)
        relation = "obs"
    try:
        row = con.execute(
            "SELECT count(*), sum(hash(series_id, CAST(date AS DATE), "
            "CAST(realtime_start AS DATE), CASE WHEN value IS NULL OR isnan(value) THEN NULL "
            f"ELSE round(value, 6) END) % 1000000007) FROM {relation}"
        ).fetchone()
    finally:
        con.close()
    return f"{row[0]}:{row[1]}" if row else ""


# -- orchestration -------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=8,
                        help="series count (fred_data.benchmark_series_ids)")
    parser.add_argument("--delay", type=float, default=0.02, help="injected seconds/request")
    parser.add_argument("--rate-limit", type=int, default=None,
                        help="rate-limited mode: the sandbox answers 429 beyond this many "
                             "FRED requests per window (FRED: 120 a minute)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="the rate limit's window in seconds (scale it down to shorten "
                             "a run: 120 per 15 s runs 4x faster than FRED's 120 a minute)")
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
    from dashtam_pipeline.sandbox.fred_data import benchmark_series_ids
    from dashtam_pipeline.sandbox.server import SandboxServer, _make_server

    ids = benchmark_series_ids(args.series)
    app = SandboxApp()  # what `dashtam sandbox serve` serves: default seed, real clock
    shim = XmlShim(app)
    server = SandboxServer(_make_server("127.0.0.1", 0, shim), app).start()  # type: ignore[arg-type]
    base_url = sandbox_base_url("fred", server.url)
    results: dict[str, dict[str, Any]] = {}
    try:
        # warm the sandbox's vintage cache so neither side pays for data generation, and
        # each side's imports and files once
        warm(app, ids)
        for side in ("fredapi", "ours"):
            with tempfile.TemporaryDirectory(prefix="warm-") as tmp:
                run_side(side, base_url, ids[:1], Path(tmp))
        app.add_fault(r"^/fred/", delay_seconds=args.delay)
        if args.rate_limit:
            LIMIT_ENV.update(BENCH_FRED_LIMIT=str(args.rate_limit),
                             BENCH_FRED_WINDOW=str(args.window))
        for side in ("fredapi", "ours"):
            if args.rate_limit:  # a fresh window for each side
                app.set_rate_limit("fred", args.rate_limit, args.window)
            before, shim.seconds = app.request_counts().get("fred", 0), 0.0
            refused = app.request_counts().get("fred 429", 0)
            with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as tmp:
                results[side] = run_side(side, base_url, ids, Path(tmp))
            results[side]["requests"] = app.request_counts().get("fred", 0) - before
            results[side]["responses_429"] = app.request_counts().get("fred 429", 0) - refused
            if args.rate_limit:
                time.sleep(args.window)  # let the window empty before the other side
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
    same = results["fredapi"]["digest"] == results["ours"]["digest"]
    print(f"same rows on both sides (digest of series_id, date, realtime_start, value): {same}")
    for side, r in results.items():
        print(f"{side} phases (s): "
              + ", ".join(f"{name} {seconds:.2f}" for name, seconds in r["phases"].items()))
    extra: dict[str, Any] = {}
    name = f"fred_backfill_{len(ids)}" if len(ids) != 8 else "fred_backfill"
    if args.rate_limit:
        minimum = minimum_requests(app, ids)
        ideal = minimum / args.rate_limit * args.window
        ours_r, theirs = results["ours"], results["fredapi"]
        extra = {
            "rate_limit": args.rate_limit, "window_seconds": args.window,
            "minimum_requests": minimum, "ideal_seconds": ideal,
            "ours_vs_ideal": ours_r["seconds"] / ideal,
            "request_ratio": theirs["requests"] / ours_r["requests"],
        }
        print(f"rate limit {args.rate_limit} per {args.window:g} s; minimum requests "
              f"{minimum} -> ideal {ideal:.1f} s; ours {ours_r['seconds']:.1f} s = "
              f"{extra['ours_vs_ideal']:.3f}x ideal (target <= 1.1x); 429s ours "
              f"{ours_r['responses_429']}, fredapi {theirs['responses_429']}; request ratio "
              f"fredapi/ours {extra['request_ratio']:.2f}, time ratio {speedup:.2f}")
        name += f"_limited_{args.rate_limit}_per_{args.window:g}s"
    write_result(
        name,
        {"series": len(ids), "delay_seconds": args.delay, "results": results,
         "speedup": speedup, "target_speedup": 10, "same_rows": same, **extra},
    )


def minimum_requests(app: Any, ids: list[str]) -> int:
    """The fewest requests the data needs: per series its ``/series`` metadata and one
    observations request per 2,000 of its vintage dates (from the sandbox's own
    history, which the client never sees)."""
    from dashtam_pipeline.sandbox.common import CHICAGO
    from dashtam_pipeline.sandbox.fred_data import series_spec

    today = app.world.now().astimezone(CHICAGO).date()
    total = 0
    for series_id in ids:
        spec = series_spec(series_id)
        assert spec is not None
        vintages = {v.start for v in app.world.fred.vintages(spec, today)}
        total += 1 + -(-len(vintages) // 2000)
    return total


if __name__ == "__main__":
    main()
