"""Nightly brokerage sync of many connections: Schwab and Alpaca users over loopback.

A fresh data dir and the sandbox on loopback with ``--schwab`` + ``--alpaca`` sandbox
users, each connected as the app would connect them (Schwab through the OAuth
authorization-code flow with the user's login hint, Alpaca with the user's own keys);
then every request is answered ``--latency`` seconds late and the timed part runs the
nightly sync as an operator would, ``dashtam materialize`` over every Schwab and Alpaca
brokerage asset: a partition per connection, ``CONNECTIONS_PER_RUN`` to a run, each run
syncing ``CONNECTIONS_AT_ONCE`` connections at a time and landing them with one upsert
per table.

Reported: wall time, runs, provider requests, peak RSS (the largest single process, the
launcher's children included), and the floor the wall time is compared with, per
provider the larger of

* the rate floor: requests / the provider's rate limit (Schwab's 120/min is one budget
  for the whole app; Alpaca's 200/min is per key, so one connection's few requests never
  approach it), and
* the latency floor: requests * latency / the concurrency the deployment allows (the
  provider's pool slots * ``CONNECTIONS_AT_ONCE``),

the two providers running side by side. Not a test (pytest collects nothing here).
Writes ``bench/results/connections.json``
(the machine and commit with it) and prints the table bench/README.md keeps.

    .venv/bin/python bench/connections.py                         # 500 + 500, 50 ms
    .venv/bin/python bench/connections.py --schwab 50 --alpaca 50   # quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import print_table, write_result  # noqa: E402

BIN = Path(sys.executable).parent
#: The reference run (``bench/results/connections.json``); other sizes write
#: ``connections_<N>.json``.
DEFAULT_CONNECTIONS = 1000
SELECTION = "key:brokerage/schwab_* or key:brokerage/alpaca_*"


def connect_everyone(app: Any, schwab: int, alpaca: int) -> None:
    """Schwab users 1..schwab through the OAuth flow, Alpaca users 1..alpaca with their
    own sandbox keys: each a user of Dashtam with one connection (untimed)."""
    import httpx

    from dashtam_pipeline.connections import connect_oauth_provider, connect_user_keys
    from dashtam_pipeline.providers.alpaca.sandbox import sandbox_keys
    from dashtam_pipeline.providers.schwab import client as schwab_client
    from dashtam_pipeline.providers.schwab.sandbox import LOGIN_HINT, login_hint
    from dashtam_pipeline.settings import load_settings

    settings = load_settings()
    seed = app.world.seed
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        for user in range(1, schwab + 1):
            url = schwab_client.authorize_url(settings)
            page = browser.get(f"{url}&{urlencode({LOGIN_HINT: login_hint(user)})}")
            connect_oauth_provider("schwab", settings, redirect_url=page.headers["location"],
                                   user_id=uuid.UUID(int=user), alias="brokerage")
    for user in range(1, alpaca + 1):
        key_id, secret = sandbox_keys(seed, user)
        connect_user_keys(settings, "alpaca", user_id=uuid.UUID(int=100_000 + user),
                          alias="paper", key_id=key_id, secret_key=secret)


def runs_of(env: dict[str, str]) -> dict[str, int]:
    """Runs in the instance by status."""
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with DagsterInstance.get() as instance:
        counts: dict[str, int] = {}
        for run in instance.get_runs():
            counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return counts


def floors(requests: dict[str, int], latency: float) -> dict[str, float]:
    """Each provider's floor (see the module doc) and the run's: the larger, as both
    providers sync side by side."""
    from dashtam_pipeline.ingest import CONNECTIONS_AT_ONCE
    from dashtam_pipeline.registry import LimitScope, get_provider_metadata

    out: dict[str, float] = {}
    for slug, count in requests.items():
        meta = get_provider_metadata(slug)
        limit = meta.rate_limits[meta.default_tier]
        concurrency = (meta.pool_limit or 1) * CONNECTIONS_AT_ONCE
        latency_floor = count * latency / concurrency
        rate_floor = count / (limit.requests_per_minute / 60) if limit.per is LimitScope.APP \
            else 0.0
        out[slug] = max(latency_floor, rate_floor)
    out["run"] = max(out.values(), default=0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schwab", type=int, default=DEFAULT_CONNECTIONS // 2)
    parser.add_argument("--alpaca", type=int, default=DEFAULT_CONNECTIONS // 2)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    from dashtam_pipeline.sandbox.app import SandboxApp
    from dashtam_pipeline.sandbox.server import environment_lines, serve

    with tempfile.TemporaryDirectory(prefix="dashtam-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        app = SandboxApp(users=max(args.schwab, args.alpaca, 1))
        with serve(app=app) as sandbox:
            env = {
                **os.environ,
                "DASHTAM_DATA_DIR": str(data),
                "DAGSTER_HOME": str(data / "dagster_home"),
                "DASHTAM_SANDBOX": "false",
                "DASHTAM_SANDBOX_USERS": str(max(args.schwab, args.alpaca, 1)),
                "DASHTAM_SECRET_KEY": Fernet.generate_key().decode(),
                **dict(line.split("=", 1) for line in environment_lines(sandbox.url)),
            }
            os.environ.update(env)
            started = time.monotonic()
            connect_everyone(app, args.schwab, args.alpaca)
            setup = time.monotonic() - started
            before = dict(app.request_counts())
            app.add_fault(r".", delay_seconds=args.latency)
            started = time.monotonic()
            done = subprocess.run(
                [str(BIN / "dashtam"), "materialize", "--select", SELECTION],
                env=env, cwd=data, capture_output=True, text=True, check=False,
            )
            wall = time.monotonic() - started
            after = dict(app.request_counts())
        requests = {p: after.get(p, 0) - before.get(p, 0) for p in ("schwab", "alpaca")}
        runs = runs_of(env)
    floor = floors(requests, args.latency)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row: dict[str, Any] = {
        "connections": args.schwab + args.alpaca,
        "schwab": args.schwab, "alpaca": args.alpaca, "latency_s": args.latency,
        "wall_s": round(wall, 1), "setup_s": round(setup, 1),
        "runs": sum(runs.values()), "run_statuses": runs,
        "requests": requests, "floor_s": {k: round(v, 1) for k, v in floor.items()},
        "ratio_to_floor": round(wall / floor["run"], 2) if floor["run"] else None,
        "peak_rss_mib_largest_process": round(peak, 1),
        "exit_code": done.returncode,
    }
    if done.returncode != 0:
        row["output_tail"] = (done.stdout + done.stderr)[-2000:]
    print_table(list(row), [list(row.values())])
    total = args.schwab + args.alpaca
    name = "connections" if total == DEFAULT_CONNECTIONS else f"connections_{total}"
    write_result(name, {"result": row, "date": dt.date.today().isoformat()})


if __name__ == "__main__":
    main()
