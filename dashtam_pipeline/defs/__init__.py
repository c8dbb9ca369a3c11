"""The code location's Dagster objects, one folder per concern (a dg project's defs folder).

``definitions.py`` loads this folder with ``dagster.components.load_from_defs_folder``;
``dg check defs`` and ``dg list defs`` read it the same way. Each module only wires: the
objects are built by the factories beside the code they run (``assets/factory.py``,
``assets/marts.py``, ``jobs.py``, ``sensors/``).

- ``ingestion/``: the provider source assets and the registry-generated ingestion assets
- ``marts/``: the marts and the automation sensor that keeps them fresh
- ``schedules/``: the per-domain jobs and the nightly schedules
- ``recovery/``: the run-failure sensor and the DLQ replay sensor
- ``credentials/``: the credential expiry and catch-up sensors, the token refresh job
- ``inbox/``: the Chase inbox sensor
- ``connections/``: the connection partitions sensor (a partition per brokerage connection)
- ``resources.py``: storage, the state store, one resource per provider, the clock
- ``executor.py``: multiprocess or Celery (``DASHTAM_EXECUTOR``)

Every module exposes a ``@definitions`` function, so each load builds fresh objects from
the settings in force then (``settings_in_force``: symbols, FRED series).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from dashtam_pipeline.settings import Settings, load_settings


@dataclass(frozen=True)
class _Build:
    settings: Settings | None = None
    overridden_resources: frozenset[str] = field(default_factory=frozenset)


_BUILD: ContextVar[_Build | None] = ContextVar("dashtam_defs_build", default=None)


def _build() -> _Build:
    return _BUILD.get() or _Build()


def settings_in_force() -> Settings:
    """The settings the definitions are being built for: those given to
    ``load_definitions(settings=...)``, else the environment's."""
    return _build().settings or load_settings()


def overridden_resources() -> frozenset[str]:
    """Resource keys the caller of ``load_definitions(resources=...)`` supplies itself
    (``defs/resources.py`` leaves them out, so ``Definitions.merge`` sees one of each)."""
    return _build().overridden_resources


@contextmanager
def building_with(
    settings: Settings | None = None, resource_keys: Collection[str] = ()
) -> Iterator[None]:
    """Within the block, ``settings_in_force()`` is ``settings`` (None: the environment's)
    and ``overridden_resources()`` is ``resource_keys``."""
    token = _BUILD.set(_Build(settings, frozenset(resource_keys)))
    try:
        yield
    finally:
        _BUILD.reset(token)
