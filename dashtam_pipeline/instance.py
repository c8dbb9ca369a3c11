"""The Dagster instance: where ``DAGSTER_HOME`` is, and its default configuration.

This is the one place instance configuration lives. By default ``DAGSTER_HOME`` is
``$DASHTAM_DATA_DIR/dagster_home`` with SQLite storage; ``ensure_dagster_home`` writes a
``dagster.yaml`` there only when none exists, so a production ``dagster.yaml`` (PostgreSQL
storage: ``deploy/dagster.yaml``, see the README) replaces it without any code change.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

from dashtam_pipeline.registry import PROVIDER_REGISTRY
from dashtam_pipeline.settings import Settings

DEFAULT_DAGSTER_YAML = """\
# Written by dashtam_pipeline (instance.py) because no dagster.yaml existed here.
# SQLite storage under this directory. For production, replace this file with the
# PostgreSQL instance in deploy/dagster.yaml (README); nothing else needs to change.
telemetry:
  enabled: false
# Run retries re-launch, from failure and at once, a run that died outside the asset code
# (a killed process, a lost worker). A step that failed on a provider is not retried here:
# the HTTP layer already retried its calls, so an immediate re-run would meet the same open
# breaker or spent quota. The run-failure and DLQ replay sensors replay those partitions
# once the provider is healthy, and skip runs tagged dagster/will_retry=true.
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
concurrency:
  pools:
    default_limit: 4
# No daemon runs beside `make demo`: runs start when they are submitted (the CLI's runs
# go through this coordinator too, see runner.launch_runs). deploy/dagster.yaml queues
# them for dagster-daemon instead.
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
"""


def ensure_dagster_home(settings: Settings) -> Path:
    """Create ``DAGSTER_HOME`` (with a default ``dagster.yaml``) and export it."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home_dir).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DEFAULT_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    """The instance in ``DAGSTER_HOME`` (created on first use), with a pool per provider.

    Pool limits come from the registry the first time a pool is seen; an operator's own
    limit (``dagster instance concurrency set provider_fmp 4``) is never overwritten.
    """
    instance = DagsterInstance.from_config(str(ensure_dagster_home(settings)))
    ensure_provider_pools(instance)
    return instance


def ensure_provider_pools(instance: DagsterInstance) -> None:
    storage = instance.event_log_storage
    known = storage.get_concurrency_keys()
    for meta in PROVIDER_REGISTRY:
        if meta.pool not in known:
            storage.set_concurrency_slots(meta.pool, meta.pool_limit)


if __name__ == "__main__":
    # `python -m dashtam_pipeline.instance` prints DAGSTER_HOME (make ui) after setting the
    # provider pools' limits, which a fresh production instance needs before the daemon
    # launches anything (README, "Running in production").
    from dashtam_pipeline.settings import load_settings

    _settings = load_settings()
    with get_instance(_settings):
        pass
    print(ensure_dagster_home(_settings))
