"""Where data lives: the Parquet lake (the record) and the DuckDB warehouse (views over it).

``Lake`` upserts validated frames by key into ``<lake>/<schema>/<table>/<bucket>.parquet``
under a cross-process lock; ``Warehouse`` keeps schemas, views and macros over those files
and answers read-only SQL. See ``lake.py`` and ``warehouse.py`` for why it is split so.
"""

from __future__ import annotations

from dashtam_pipeline.storage.lake import (
    QUARANTINE_TABLE,
    TABLE_LAYOUTS,
    Lake,
    LakeError,
    TableLayout,
    WriteResult,
    table_layout,
)
from dashtam_pipeline.storage.locks import LockTimeout, exclusive_lock
from dashtam_pipeline.storage.warehouse import (
    Warehouse,
    WarehouseError,
    lake_connection,
    write_mart,
)

__all__ = [
    "QUARANTINE_TABLE",
    "TABLE_LAYOUTS",
    "Lake",
    "LakeError",
    "LockTimeout",
    "TableLayout",
    "Warehouse",
    "WarehouseError",
    "WriteResult",
    "exclusive_lock",
    "lake_connection",
    "table_layout",
    "write_mart",
]
