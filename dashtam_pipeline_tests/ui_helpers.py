"""What the UI tests share: a demo instance, a real ``dagster-webserver`` over it, and the
GraphQL questions an analyst's pages are built from.

Both UI tiers ask the same questions: ``test_ui_graphql.py`` through the webserver's
``/graphql`` endpoint (fast, no browser), ``test_ui_browser.py`` by reading the pages in
Chromium. The webserver is the one ``make ui`` runs, loading ``workspace.yaml`` from the
repository root, so what is checked is what analysts get.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: The FRED series and symbols of the UI tests' demo: few, so the fixtures stay cheap.
UI_ENV = {
    "DASHTAM_FRED_SERIES": "GDP,UNRATE,DGS10",
    "DASHTAM_SYMBOLS": "AAPL,MSFT,BRK.B",
    "DASHTAM_RIGHTS_PROFILE": "basic",
}
WEBSERVER_START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    """A console script of the running interpreter's environment (``.venv/bin/...``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def ui_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the demo and of the webserver: one data dir, one instance, and
    the worktree's package first on the path (so subprocesses run the code under test)."""
    env = {
        **os.environ,
        **UI_ENV,
        "DASHTAM_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **(extra or {}),
    }
    env.pop("DASHTAM_SANDBOX", None)  # the demo sets it itself; the UI runs as `make ui`
    return env


def run_demo(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``dashtam demo`` into ``data_dir`` (what ``make demo`` runs)."""
    (data_dir / "dagster_home").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [bin_path("dashtam"), "demo"], cwd=data_dir, env=ui_env(data_dir),
        capture_output=True, text=True, timeout=1500,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"dashtam demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


class Webserver:
    """A running ``dagster-webserver`` and its GraphQL endpoint."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})},
            timeout=120,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]


@contextmanager
def webserver(data_dir: Path) -> Iterator[Webserver]:
    """``dagster-webserver -w workspace.yaml`` on a free loopback port over ``data_dir``'s
    instance, until its code location has loaded."""
    port = free_port()
    log = data_dir / f"webserver-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [bin_path("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=ROOT, env=ui_env(data_dir), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Webserver(f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_loaded(server, process)
        # the UI's first-visit "join the community" dialog would cover every page
        server.graphql("mutation { setNuxSeen }")
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_until_loaded(server: Webserver, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WEBSERVER_START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster-webserver exited:\n{server.log.read_text()[-3000:]}")
        try:
            data = server.graphql(LOCATIONS)
            entries = data["workspaceOrError"]["locationEntries"]
            states = [e["loadStatus"] for e in entries]
            errors = [e["locationOrLoadError"] for e in entries
                      if e["locationOrLoadError"]
                      and e["locationOrLoadError"]["__typename"] == "PythonError"]
            if errors:
                raise AssertionError(f"code location failed to load: {errors}")
            if entries and all(s == "LOADED" for s in states):
                return
            last = str(states)
        except (httpx.HTTPError, KeyError, TypeError) as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"dagster-webserver did not load in time ({last})")


LOCATIONS = """
query { workspaceOrError { ... on Workspace { locationEntries {
  loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

ASSET_NODES = """
query { assetNodes { assetKey { path } groupName isMaterializable isPartitioned
  dependencyKeys { path } description
  partitionStats { numMaterialized numPartitions }
  metadataEntries { label ... on TextMetadataEntry { text }
    ... on TableSchemaMetadataEntry { schema { columns { name type description
      constraints { nullable other } } } } } } }
"""

PARTITION_MATERIALIZATION = """
query ($path: [String!]!, $partition: String!) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetMaterializations(partitions: [$partition], limit: 1) { partition
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } }
"""

LATEST_OBSERVATION = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetMaterializations(limit: 1) { runId }
    assetObservations(limit: 1) { runId description
      metadataEntries { label ... on TextMetadataEntry { text }
        ... on IntMetadataEntry { intValue } } } } }
"""

RUNS_TAGGED = """
query ($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId status tags { key value } } } } }
"""


def entries(metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """GraphQL metadata entries as ``label -> value`` (int, text or table schema)."""
    out: dict[str, Any] = {}
    for entry in metadata:
        for field in ("intValue", "text", "schema"):
            if field in entry:
                out[entry["label"]] = entry[field]
                break
    return out


def warehouse_count(data_dir: Path, sql: str) -> int:
    """One number from the demo's warehouse, through ``dashtam query``."""
    import json

    result = subprocess.run(
        [bin_path("dashtam"), "query", sql, "--format", "json"], cwd=data_dir,
        env=ui_env(data_dir), capture_output=True, text=True, timeout=120, check=True,
    )
    (row,) = json.loads(result.stdout)
    return int(next(iter(row.values())))


#: What the fast tier materializes (in-process, a few assets): a month of daily market
#: history, every FRED series with its companion, options (skipped under ``basic``), and
#: the macro mart over FRED.
SMALL_DEMO_SELECTIONS = (
    "key:macro/fred_observations or key:macro/fred_series or key:market/options_chain",
    "key:marts/macro_monthly_panel",
)


def small_demo() -> None:
    """The demo's steps for a few assets, in one process (run by ``run_small_demo`` in a
    subprocess, so its environment is the UI's and not the test process's)."""
    os.environ["DASHTAM_SANDBOX"] = "true"
    from dashtam_pipeline.definitions import build_definitions
    from dashtam_pipeline.demo import prepare_demo, recent_window
    from dashtam_pipeline.instance import get_instance
    from dashtam_pipeline.runner import execute_plans, plan_runs, resolve_selection
    from dashtam_pipeline.settings import load_settings

    prepare_demo()
    settings = load_settings()
    defs = build_definitions(settings)
    _, first, last = recent_window()
    daily = resolve_selection(defs, "key:market/quotes or key:market/daily_bars")
    plans = plan_runs(defs, daily, start=first, end=last)
    for selection in SMALL_DEMO_SELECTIONS:
        plans += plan_runs(defs, resolve_selection(defs, selection))
    with get_instance(settings) as instance:
        report = execute_plans(instance, plans, in_process=True)
    bad = {
        k: a.detail for k, a in report.assets.items()
        if a.status not in ("materialized", "skipped")
    }
    if bad or not report.ok:
        raise SystemExit(f"small demo failed: {bad} {report.failed_checks}")


def run_small_demo(data_dir: Path) -> None:
    (data_dir / "dagster_home").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "dashtam_pipeline_tests.ui_helpers"], cwd=data_dir,
        env=ui_env(data_dir), capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"small demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


if __name__ == "__main__":
    small_demo()
