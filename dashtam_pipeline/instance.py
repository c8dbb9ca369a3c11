"""The Dagster instance: where ``DAGSTER_HOME`` is, and its default configuration.

This is the one place instance configuration lives. By default ``DAGSTER_HOME`` is
``$DASHTAM_DATA_DIR/dagster_home`` with SQLite storage; ``ensure_dagster_home`` writes a
``dagster.yaml`` there only when none exists, so a production ``dagster.yaml`` (PostgreSQL
storage: ``deploy/dagster.yaml``, see the README) replaces it without any code change.

Creating the instance is serialised across processes (``instance_init_lock``): on an empty
``DAGSTER_HOME``, Dagster's SQLite storages run their schema migrations when first opened,
and two ``dashtam materialize``/``demo`` started together would both migrate (alembic's
"expected to match one row") and both insert the provider pools
(``UNIQUE constraint failed: concurrency_limits.concurrency_key``). Under the lock the
first process creates everything and the others find it done.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance

from dashtam_pipeline.private_files import make_private_dirs
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


LOCK_FILE = ".dashtam-init.lock"


@contextmanager
def instance_init_lock(home: Path) -> Iterator[None]:
    """An exclusive inter-process lock (``flock`` on a file in ``DAGSTER_HOME``) held while
    the instance's storages are created and migrated. The kernel drops it when the
    holder exits, so a killed process never leaves it stuck."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def ensure_dagster_home(settings: Settings) -> Path:
    """Create ``DAGSTER_HOME`` (with a default ``dagster.yaml``) and export it.

    The default ``dagster.yaml`` is written to a temporary file and renamed into place, so a
    concurrent reader sees either no file or the whole file, never half of one."""
    # a blank DAGSTER_HOME is unset, as in the settings (never a folder named " ")
    home = Path(os.environ.get("DAGSTER_HOME", "").strip() or settings.dagster_home_dir).resolve()
    make_private_dirs(home)  # the run history; and, when made here, the data dir too
    config = home / "dagster.yaml"
    if not config.exists():
        partial = home / f".dagster.yaml.{os.getpid()}.tmp"
        partial.write_text(DEFAULT_DAGSTER_YAML)
        try:
            os.link(partial, config)  # fails if another process got there first: keep theirs
        except FileExistsError:
            pass
        finally:
            partial.unlink(missing_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    """The instance in ``DAGSTER_HOME`` (created on first use), with a pool per provider.

    Pool limits come from the registry the first time a pool is seen; an operator's own
    limit (``dagster instance concurrency set provider_fmp 4``) is never overwritten.
    Opening (and on first use, migrating) the storages happens under
    ``instance_init_lock``, so concurrent first runs on an empty data dir all succeed.
    """
    home = ensure_dagster_home(settings)
    with instance_init_lock(home):
        instance = DagsterInstance.from_config(str(home))
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
