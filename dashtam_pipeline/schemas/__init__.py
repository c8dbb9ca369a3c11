"""One pandera model per dataset; ``SCHEMAS`` is how the rest of the pipeline finds them."""

from __future__ import annotations

import pandera.pandas as pa

from dashtam_pipeline.registry import Dataset
from dashtam_pipeline.schemas.brokerage import AccountSchema, PositionSchema, TransactionSchema
from dashtam_pipeline.schemas.macro import FredObservationSchema, FredSeriesSchema
from dashtam_pipeline.schemas.market import (
    DailyBarSchema,
    EarningsSchema,
    FundamentalsSchema,
    OptionContractSchema,
    QuoteSchema,
)
from dashtam_pipeline.schemas.news import NewsArticleSchema
from dashtam_pipeline.schemas.ops import QuarantineSchema

SCHEMAS: dict[Dataset, type[pa.DataFrameModel]] = {
    Dataset.QUOTES: QuoteSchema,
    Dataset.DAILY_BARS: DailyBarSchema,
    Dataset.FUNDAMENTALS: FundamentalsSchema,
    Dataset.EARNINGS: EarningsSchema,
    Dataset.OPTIONS_CHAIN: OptionContractSchema,
    Dataset.FRED_SERIES: FredSeriesSchema,
    Dataset.FRED_OBSERVATIONS: FredObservationSchema,
    Dataset.NEWS_ARTICLES: NewsArticleSchema,
    Dataset.ACCOUNTS: AccountSchema,
    Dataset.POSITIONS: PositionSchema,
    Dataset.TRANSACTIONS: TransactionSchema,
}

__all__ = ["SCHEMAS", "QuarantineSchema"]
