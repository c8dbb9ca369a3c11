"""Dagster's tag names and the asset-graph shape this project relies on, without
importing ``dagster._core``.

Dagster documents these tags (they show in the UI and are set by its daemon) but exports
their constants only from private modules, which change between releases. Naming the
strings here keeps every private import out of the project (``test_public_api.py``
enforces it) and puts the one place to update in sight if Dagster ever renames a tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from dagster import AssetKey, AssetsDefinition, BackfillPolicy, PartitionsDefinition

#: The partition of a single-partition run (``RunRequest(partition_key=...)`` sets it).
PARTITION_TAG = "dagster/partition"
#: The first and last partition of a ranged run (a backfill policy's multi-partition run).
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"
#: Set to "true" on a failed run that the daemon's run retries will re-launch.
WILL_RETRY_TAG = "dagster/will_retry"
#: The run a retry or re-execution was made from, and the first run of that chain.
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
ROOT_RUN_ID_TAG = "dagster/root_run_id"
#: The number of the automatic retry a run is (absent on a first attempt).
RETRY_NUMBER_TAG = "dagster/retry_number"


class AssetNode(Protocol):
    """What the sensors read of one asset in the graph."""

    @property
    def partitions_def(self) -> PartitionsDefinition | None: ...

    @property
    def backfill_policy(self) -> BackfillPolicy | None: ...

    @property
    def tags(self) -> Mapping[str, str]: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...


class AssetGraph(Protocol):
    """The code location's asset graph as the sensors use it: the structural type of
    ``Definitions.resolve_asset_graph()`` and ``RepositoryDefinition.asset_graph``, whose
    class Dagster does not export."""

    @property
    def materializable_asset_keys(self) -> Iterable[AssetKey]: ...

    @property
    def assets_defs(self) -> Iterable[AssetsDefinition]: ...

    def get(self, key: AssetKey) -> AssetNode: ...
