"""Schema of ``news.articles``."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import ContractModel


class NewsArticleSchema(ContractModel):
    """One row per article and the symbol it was found for (NULL for non-symbol queries)."""

    article_id: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16,64}$")
    symbol: Series[str] = pa.Field(nullable=True)
    query: Series[str] = pa.Field()
    published_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    source_name: Series[str] = pa.Field(nullable=True)
    author: Series[str] = pa.Field(nullable=True)
    title: Series[str] = pa.Field()
    description: Series[str] = pa.Field(nullable=True)
    url: Series[str] = pa.Field(str_matches=r"^https?://")
    content: Series[str] = pa.Field(nullable=True)
    sentiment: Series[float] = pa.Field(ge=-1, le=1)
    provider: Series[str] = pa.Field()
