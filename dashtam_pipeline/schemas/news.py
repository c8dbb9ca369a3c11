"""Schema of ``news.articles``."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import ContractModel


class NewsArticleSchema(ContractModel):
    """One row per article and the symbol it was found for (NULL for non-symbol queries)."""

    article_id: Series[str] = pa.Field(
        str_matches=r"^[0-9a-f]{16,64}$",
        description="Stable hash of the article's URL (the same article found twice has one id).",
    )
    symbol: Series[str] = pa.Field(
        nullable=True,
        description='Ticker the article was found for; NULL when its query was not a symbol.',
    )
    query: Series[str] = pa.Field(
        description='The NewsAPI query that found the article (`q`).',
    )
    published_at: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs={"unit": "us", "tz": "UTC"},
        description=(
            'Publication time, UTC; its New York date is the partition. NewsAPI '
            '`publishedAt`.'
        ),
    )
    source_name: Series[str] = pa.Field(
        nullable=True,
        description='Publisher name. NewsAPI `source.name`.',
    )
    author: Series[str] = pa.Field(
        nullable=True,
        description='Byline. NewsAPI `author`.',
    )
    title: Series[str] = pa.Field(
        description='Headline. NewsAPI `title`.',
    )
    description: Series[str] = pa.Field(
        nullable=True,
        description='Summary. NewsAPI `description`.',
    )
    url: Series[str] = pa.Field(
        str_matches=r"^https?://",
        description='Link to the article. NewsAPI `url`.',
    )
    content: Series[str] = pa.Field(
        nullable=True,
        description=(
            'Truncated body as NewsAPI serves it (about 200 characters). NewsAPI `content`.'
        ),
    )
    sentiment: Series[float] = pa.Field(
        ge=-1, le=1,
        description=(
            'Finance-tuned VADER score of title, description and content: -1 most negative, '
            '+1 most positive.'
        ),
    )
    provider: Series[str] = pa.Field(
        description='Registry slug that served the row (newsapi or sandbox:newsapi).',
    )
