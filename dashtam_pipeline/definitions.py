"""The Dagster code location: everything the UI, the daemon and the CLI load.

A dg project (``[tool.dg]`` in pyproject.toml): the Dagster objects are wired in
``defs/``, one folder per concern (ingestion, marts, schedules, recovery, credentials,
inbox, resources), and built by the factories beside the code they run
(``assets/factory.py``, ``assets/marts.py``, ``jobs.py``, ``sensors/``). This module only
loads that folder (``load_from_defs_folder``) and merges the caller's resource overrides
(``Definitions.merge``); tests replace the ``clock`` resource that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Definitions
from dagster.components import load_from_defs_folder

from dashtam_pipeline.defs import building_with
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.settings import Settings, load_settings

#: Inside the project whose pyproject.toml holds ``[tool.dg]``.
PROJECT_PATH = Path(__file__).resolve().parent


def load_definitions(
    *, resources: Mapping[str, Any] | None = None, settings: Settings | None = None
) -> Definitions:
    """The definitions for the settings in force now (what every run and step process,
    the daemon and ``dashtam materialize`` load afresh from their environment).

    ``resources`` replaces resources by key (``{"clock": ClockResource.following(fake)}``);
    ``settings`` replaces the environment's settings (symbols, FRED series).

    A bad setting stops the load with ``load_settings``'s one sentence, not with the
    folder loader's report around it (``dagster dev`` and the daemon show that sentence)."""
    settings = settings or load_settings()
    overrides = dict(resources or {})
    try:
        with building_with(settings, overrides.keys()):
            loaded = load_from_defs_folder(path_within_project=PROJECT_PATH)
    except Exception as error:
        cause = _configuration_error(error)
        if cause is None:
            raise
        raise cause from None
    return Definitions.merge(loaded, Definitions(resources=overrides)) if overrides else loaded


def _configuration_error(error: BaseException) -> ConfigurationError | None:
    """The ``ConfigurationError`` behind ``error`` (the loader wraps what a module raised)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigurationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def build_definitions(
    settings: Settings | None = None, *, resources: Mapping[str, Any] | None = None
) -> Definitions:
    """``load_definitions`` for ``settings`` (the environment's when None)."""
    return load_definitions(resources=resources, settings=settings)


defs = load_definitions()
