"""Schema of ``ops.quarantine``: rows and files that failed validation, with the reason."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import ContractModel


class QuarantineSchema(ContractModel):
    quarantine_id: Series[str] = pa.Field()
    provider: Series[str] = pa.Field()
    dataset: Series[str] = pa.Field()
    partition_key: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field()
    record: Series[str] = pa.Field()
    quarantined_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    #: The owning user of a brokerage record (NULL for platform data): what lets
    #: ``dashtam forget`` find a user's quarantined rows without parsing ``record``.
    user_id: Series[str] = pa.Field(nullable=True)
