"""Schemas of the market datasets: quotes, daily bars, fundamentals, earnings, options."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import CalendarDate, ContractModel, dates_in_range

FISCAL_PERIODS = ["FY", "Q1", "Q2", "Q3", "Q4"]
OCC_SYMBOL = r"^[A-Z][A-Z0-9.]{0,5}\d{6}[CP]\d{8}$"
TIMESTAMP = {"unit": "us", "tz": "UTC"}


class QuoteSchema(ContractModel):
    """``market.quotes``: one end-of-day quote per symbol and exchange trading date."""

    symbol: Series[str] = pa.Field(str_matches=r"^[A-Z0-9.\-^]+$")
    quote_date: Series[CalendarDate] = pa.Field()
    price: Series[float] = pa.Field(gt=0)
    open: Series[float] = pa.Field(gt=0, nullable=True)
    day_high: Series[float] = pa.Field(gt=0, nullable=True)
    day_low: Series[float] = pa.Field(gt=0, nullable=True)
    previous_close: Series[float] = pa.Field(gt=0, nullable=True)
    change: Series[float] = pa.Field(nullable=True)
    change_pct: Series[float] = pa.Field(nullable=True)
    volume: Series[pd.Int64Dtype] = pa.Field(ge=0, nullable=True)
    market_cap: Series[float] = pa.Field(ge=0, nullable=True)
    exchange: Series[str] = pa.Field(nullable=True)
    quoted_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=TIMESTAMP)
    provider: Series[str] = pa.Field()
    is_stale: Series[bool] = pa.Field()

    @pa.check("quote_date", name="quote_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.dataframe_check(name="day_high_gte_day_low")
    def _high_low(cls, df: pd.DataFrame) -> Series[bool]:
        return df["day_high"].isna() | df["day_low"].isna() | (df["day_high"] >= df["day_low"])


class DailyBarSchema(ContractModel):
    """``market.daily_bars``: daily OHLCV per symbol."""

    symbol: Series[str] = pa.Field(str_matches=r"^[A-Z0-9.\-^]+$")
    date: Series[CalendarDate] = pa.Field()
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    volume: Series[float] = pa.Field(ge=0, nullable=True)
    vwap: Series[float] = pa.Field(gt=0, nullable=True)
    provider: Series[str] = pa.Field()

    @pa.check("date", name="date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.dataframe_check(name="high_gte_low")
    def _high_low(cls, df: pd.DataFrame) -> Series[bool]:
        return df["high"] >= df["low"]


class FundamentalsSchema(ContractModel):
    """``market.fundamentals``: income statement and balance sheet lines per period."""

    symbol: Series[str] = pa.Field()
    period_end: Series[CalendarDate] = pa.Field()
    period: Series[str] = pa.Field(isin=FISCAL_PERIODS)
    fiscal_year: Series[pd.Int32Dtype] = pa.Field(ge=1900, le=2200, nullable=True)
    reported_currency: Series[str] = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$")
    filing_date: Series[CalendarDate] = pa.Field(nullable=True)
    revenue: Series[float] = pa.Field(nullable=True)
    gross_profit: Series[float] = pa.Field(nullable=True)
    operating_income: Series[float] = pa.Field(nullable=True)
    net_income: Series[float] = pa.Field(nullable=True)
    eps: Series[float] = pa.Field(nullable=True)
    eps_diluted: Series[float] = pa.Field(nullable=True)
    weighted_shares_diluted: Series[float] = pa.Field(ge=0, nullable=True)
    total_assets: Series[float] = pa.Field(ge=0, nullable=True)
    total_liabilities: Series[float] = pa.Field(nullable=True)
    total_equity: Series[float] = pa.Field(nullable=True)
    cash_and_equivalents: Series[float] = pa.Field(ge=0, nullable=True)
    provider: Series[str] = pa.Field()

    @pa.check("period_end", name="period_end_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class EarningsSchema(ContractModel):
    """``market.earnings``: one earnings report per symbol and report date."""

    symbol: Series[str] = pa.Field()
    report_date: Series[CalendarDate] = pa.Field()
    eps_actual: Series[float] = pa.Field(nullable=True)
    eps_estimate: Series[float] = pa.Field(nullable=True)
    revenue_actual: Series[float] = pa.Field(nullable=True, ge=0)
    revenue_estimate: Series[float] = pa.Field(nullable=True, ge=0)
    provider: Series[str] = pa.Field()

    @pa.check("report_date", name="report_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class OptionContractSchema(ContractModel):
    """``market.options_chain``: one snapshot row per OCC contract and day."""

    contract: Series[str] = pa.Field(str_matches=OCC_SYMBOL)
    underlying: Series[str] = pa.Field()
    contract_type: Series[str] = pa.Field(isin=["call", "put"])
    strike: Series[float] = pa.Field(gt=0)
    expiration: Series[CalendarDate] = pa.Field()
    as_of_date: Series[CalendarDate] = pa.Field()
    volume: Series[float] = pa.Field(ge=0, nullable=True)
    open_interest: Series[float] = pa.Field(ge=0, nullable=True)
    implied_volatility: Series[float] = pa.Field(ge=0, nullable=True)
    delta: Series[float] = pa.Field(ge=-1, le=1, nullable=True)
    gamma: Series[float] = pa.Field(nullable=True)
    theta: Series[float] = pa.Field(nullable=True)
    vega: Series[float] = pa.Field(nullable=True)
    last_price: Series[float] = pa.Field(ge=0, nullable=True)
    provider: Series[str] = pa.Field()

    @pa.check("expiration", "as_of_date", name="dates_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)
