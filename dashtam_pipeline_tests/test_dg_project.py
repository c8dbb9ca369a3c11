"""The code location is a dg project: ``dg check defs`` and ``dagster definitions validate``
load it as the daemon and the webserver would, each concern has its folder under
``dashtam_pipeline/defs/``, and those folders only wire what the factories build.

(No Dagster private import anywhere: ``test_public_api.py``.)
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Definitions

from dashtam_pipeline.definitions import build_definitions, load_definitions
from dashtam_pipeline.resources import ClockResource
from dashtam_pipeline_tests.clocks import FakeClock

ROOT = Path(__file__).resolve().parents[1]
DEFS = ROOT / "dashtam_pipeline" / "defs"
BIN = Path(sys.executable).parent


def run_cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DASHTAM_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "VIRTUAL_ENV": sys.prefix,  # the project's .venv: dg warns when another is active
    }
    (data_dir / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_dg_check_defs(data_dir: Path) -> None:
    done = run_cli([str(BIN / "dg"), "check", "defs"], data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_dagster_definitions_validate_the_workspace(data_dir: Path) -> None:
    done = run_cli(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], data_dir
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful for code location dashtam_pipeline" in done.stdout + done.stderr


#: What each folder of defs/ holds (by name), as the README's layout says.
LAYOUT: dict[str, dict[str, set[str]]] = {
    "recovery": {"sensors": {"run_failure_recovery_sensor", "dlq_replay_sensor"}},
    "credentials": {
        "sensors": {"credential_expiry_sensor", "connection_catch_up_sensor"},
        "jobs": {"credential_refresh_job"},
    },
    "inbox": {"sensors": {"chase_inbox_sensor"}},
    "connections": {"sensors": {"connection_partitions_sensor"}},
    "marts": {"sensors": {"marts_automation"}},
    "schedules": {
        "schedules": {"nightly_daily", "nightly_fred", "nightly_snapshots",
                      "nightly_schwab_connections", "nightly_alpaca_connections"},
        "jobs": {"market_job", "macro_job", "news_job", "marts_job", "brokerage_alpaca_job",
                 "brokerage_chase_file_job", "brokerage_schwab_job"},
    },
}


#: The ``@definitions`` function of each folder of defs/.
FOLDERS = {
    "ingestion": "dashtam_pipeline.defs.ingestion.assets:ingestion",
    "marts": "dashtam_pipeline.defs.marts.assets:marts",
    "schedules": "dashtam_pipeline.defs.schedules.nightly:schedules",
    "recovery": "dashtam_pipeline.defs.recovery.sensors:recovery",
    "credentials": "dashtam_pipeline.defs.credentials.sensors:credentials",
    "inbox": "dashtam_pipeline.defs.inbox.sensors:inbox",
    "connections": "dashtam_pipeline.defs.connections.sensors:connection_partitions",
    "resources": "dashtam_pipeline.defs.resources:resources",
    "executor": "dashtam_pipeline.defs.executor:executor",
}


def _folder_defs(folder: str) -> Definitions:
    """What one folder of defs/ contributes (its ``@definitions`` function, called as
    ``load_from_defs_folder`` calls it)."""
    module, name = FOLDERS[folder].split(":")
    return getattr(importlib.import_module(module), name)()


def test_every_defs_module_is_a_known_folder() -> None:
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in DEFS.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules == {target.split(":")[0] for target in FOLDERS.values()}


@pytest.mark.parametrize("folder", sorted(LAYOUT))
def test_each_concern_has_its_folder(data_dir: Path, folder: str) -> None:
    defs = _folder_defs(folder)
    held = {
        "sensors": {s.name for s in defs.sensors or []},
        "jobs": {j.name for j in defs.jobs or []},
        "schedules": {s.name for s in defs.schedules or []},
    }
    for kind, names in LAYOUT[folder].items():
        assert held[kind] == names, f"defs/{folder}/ {kind}"


def test_ingestion_and_marts_folders_hold_the_assets(data_dir: Path) -> None:
    graph = build_definitions().resolve_asset_graph()
    resources = _folder_defs("resources")
    ingestion = Definitions.merge(_folder_defs("ingestion"), resources).resolve_asset_graph()
    marts = Definitions.merge(_folder_defs("marts"), resources).resolve_asset_graph()
    assert {k.path[0] for k in marts.materializable_asset_keys} == {"marts"}
    assert "marts" not in {k.path[0] for k in ingestion.materializable_asset_keys}
    assert ingestion.materializable_asset_keys | marts.materializable_asset_keys == (
        graph.materializable_asset_keys
    )


def test_resources_are_overridden_by_key(data_dir: Path) -> None:
    """The clock a test gives replaces the wall clock; the other resources stay."""
    fake = FakeClock(dt.datetime(2030, 2, 28, 23, 30, tzinfo=dt.UTC))
    clock = fake.resource()
    defs = load_definitions(resources={"clock": clock})
    assert defs.resources is not None
    assert defs.resources["clock"] is clock
    assert {"storage", "provider_fmp"} <= set(defs.resources)
    assert type(_folder_defs("resources").resources["clock"]) is ClockResource  # type: ignore[index]
    assert clock.now() == fake.now
    fake.advance(minutes=5)
    assert clock.now() == dt.datetime(2030, 2, 28, 23, 35, tzinfo=dt.UTC)


def test_defs_only_wire() -> None:
    """A defs module builds nothing itself: it imports Dagster's public API and the
    project's factories, and declares no asset, sensor, job or schedule of its own."""
    decorators = {"asset", "multi_asset", "sensor", "job", "schedule", "op", "asset_check"}
    problems = []
    for path in sorted(DEFS.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top not in {"__future__", "collections", "contextlib", "contextvars",
                               "dataclasses", "dagster", "dashtam_pipeline"}:
                    problems.append(f"{rel}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = getattr(target, "id", getattr(target, "attr", ""))
                    if name in decorators:
                        problems.append(f"{rel}:{node.lineno} declares @{name} {node.name}")
    assert problems == []


def test_every_job_runs_on_the_executor_the_setting_names(data_dir: Path) -> None:
    from dashtam_pipeline.settings import load_settings

    assert build_definitions().resolve_job_def("market_job").executor_def.name == "multiprocess"
    celery = load_settings(dashtam_executor="celery", dashtam_celery_broker="redis://h:6379/0")
    defs = build_definitions(celery)
    assert {defs.resolve_job_def(name).executor_def.name
            for name in ("market_job", "nightly_daily_job")} == {"celery"}
