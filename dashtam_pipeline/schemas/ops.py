"""Schema of ``ops.quarantine``: rows and files that failed validation, with the reason."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import ContractModel


class QuarantineSchema(ContractModel):
    quarantine_id: Series[str] = pa.Field(
        description='Unique id of the quarantined record.',
    )
    provider: Series[str] = pa.Field(
        description='Provider that sent the record.',
    )
    dataset: Series[str] = pa.Field(
        description='The table the record was meant for, e.g. market.quotes.',
    )
    partition_key: Series[str] = pa.Field(
        nullable=True,
        description='Partition of the run that received it, when partitioned.',
    )
    reason: Series[str] = pa.Field(
        description='Why it was rejected: the failed checks or the parse error.',
    )
    record: Series[str] = pa.Field(
        description='The raw row or line as JSON or text, secrets removed.',
    )
    quarantined_at: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs={"unit": "us", "tz": "UTC"},
        description='When it was quarantined, UTC.',
    )
    #: The owning user of a brokerage record (NULL for platform data): what lets
    #: ``dashtam forget`` find a user's quarantined rows without parsing ``record``.
    user_id: Series[str] = pa.Field(
        nullable=True,
        description="The owning user's id for brokerage records; NULL for platform data.",
    )
