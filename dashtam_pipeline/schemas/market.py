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

    symbol: Series[str] = pa.Field(
        str_matches=r"^[A-Z0-9.\-^]+$",
        description=(
            "Canonical ticker (e.g. BRK.B; each provider's own spelling such as BRK-B is "
            'mapped back). FMP `symbol`, Polygon `ticker`.'
        ),
    )
    quote_date: Series[CalendarDate] = pa.Field(
        description=(
            "Exchange trading date (America/New_York) of the quote's timestamp; the partition"
            ' the row belongs to.'
        ),
    )
    price: Series[float] = pa.Field(
        gt=0,
        description=(
            'Last traded price in USD at `quoted_at`. FMP `price`, Polygon previous-day close'
            ' `c`.'
        ),
    )
    open: Series[float] = pa.Field(
        gt=0, nullable=True,
        description='Session opening price, USD. FMP `open`, Polygon `o`.',
    )
    day_high: Series[float] = pa.Field(
        gt=0, nullable=True,
        description='Session high, USD. FMP `dayHigh`, Polygon `h`.',
    )
    day_low: Series[float] = pa.Field(
        gt=0, nullable=True,
        description='Session low, USD. FMP `dayLow`, Polygon `l`.',
    )
    previous_close: Series[float] = pa.Field(
        gt=0, nullable=True,
        description="Previous session's closing price, USD. FMP `previousClose`.",
    )
    change: Series[float] = pa.Field(
        nullable=True,
        description='price - previous_close, USD (negative when the price fell). FMP `change`.',
    )
    change_pct: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Change in percent of previous_close (1.5 means +1.5 %, not 150 %). FMP '
            '`changePercentage`.'
        ),
    )
    volume: Series[pd.Int64Dtype] = pa.Field(
        ge=0, nullable=True,
        description='Shares traded in the session so far. FMP `volume`, Polygon `v`.',
    )
    market_cap: Series[float] = pa.Field(
        ge=0, nullable=True,
        description='Market capitalisation in USD (price * shares outstanding). FMP `marketCap`.',
    )
    exchange: Series[str] = pa.Field(
        nullable=True,
        description=(
            'Listing exchange code as the provider names it (e.g. NASDAQ, NYSE). FMP '
            '`exchange`.'
        ),
    )
    quoted_at: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs=TIMESTAMP,
        description=(
            'When the price was observed, UTC. FMP `timestamp` (epoch seconds), Polygon `t` '
            '(epoch ms).'
        ),
    )
    provider: Series[str] = pa.Field(
        description=(
            'Registry slug that served the row: fmp, polygon (fallback), or sandbox:<slug>.'
        ),
    )
    is_stale: Series[bool] = pa.Field(
        description=(
            'True when every provider failed and this is the last good price carried forward '
            'to this date.'
        ),
    )

    @pa.check("quote_date", name="quote_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.dataframe_check(name="day_high_gte_day_low")
    def _high_low(cls, df: pd.DataFrame) -> Series[bool]:
        return df["day_high"].isna() | df["day_low"].isna() | (df["day_high"] >= df["day_low"])


class DailyBarSchema(ContractModel):
    """``market.daily_bars``: daily OHLCV per symbol."""

    symbol: Series[str] = pa.Field(
        str_matches=r"^[A-Z0-9.\-^]+$",
        description='Canonical ticker (provider spellings such as BRK-B mapped back).',
    )
    date: Series[CalendarDate] = pa.Field(
        description='Trading date (America/New_York) of the bar; the partition the row belongs to.',
    )
    open: Series[float] = pa.Field(
        gt=0,
        description=(
            'Opening price, USD, split-adjusted as the provider serves it. FMP `open`, '
            'Polygon `o`.'
        ),
    )
    high: Series[float] = pa.Field(
        gt=0,
        description='Highest price of the day, USD. FMP `high`, Polygon `h`.',
    )
    low: Series[float] = pa.Field(
        gt=0,
        description='Lowest price of the day, USD. FMP `low`, Polygon `l`.',
    )
    close: Series[float] = pa.Field(
        gt=0,
        description='Closing price, USD. FMP `close`, Polygon `c`.',
    )
    volume: Series[float] = pa.Field(
        ge=0, nullable=True,
        description='Shares traded that day. FMP `volume`, Polygon `v`.',
    )
    vwap: Series[float] = pa.Field(
        gt=0, nullable=True,
        description='Volume-weighted average price of the day, USD. FMP `vwap`, Polygon `vw`.',
    )
    provider: Series[str] = pa.Field(
        description=(
            'Registry slug that served the row: fmp, polygon (fallback), or sandbox:<slug>.'
        ),
    )

    @pa.check("date", name="date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.dataframe_check(name="high_gte_low")
    def _high_low(cls, df: pd.DataFrame) -> Series[bool]:
        return df["high"] >= df["low"]


class FundamentalsSchema(ContractModel):
    """``market.fundamentals``: income statement and balance sheet lines per period."""

    symbol: Series[str] = pa.Field(
        description='Canonical ticker.',
    )
    period_end: Series[CalendarDate] = pa.Field(
        description='Last day of the fiscal period the statement covers. FMP `date`.',
    )
    period: Series[str] = pa.Field(
        isin=FISCAL_PERIODS,
        description='Fiscal period: FY for the full year, Q1..Q4 for quarters. FMP `period`.',
    )
    fiscal_year: Series[pd.Int32Dtype] = pa.Field(
        ge=1900, le=2200, nullable=True,
        description=(
            'Fiscal year the period belongs to (may differ from the calendar year). FMP '
            '`fiscalYear`.'
        ),
    )
    reported_currency: Series[str] = pa.Field(
        nullable=True, str_matches=r"^[A-Z]{3}$",
        description='Currency the statement is reported in (ISO 4217). FMP `reportedCurrency`.',
    )
    filing_date: Series[CalendarDate] = pa.Field(
        nullable=True,
        description='Date the statement was filed with the SEC. FMP `filingDate`.',
    )
    revenue: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Total revenue of the period, in reported_currency. FMP income statement '
            '`revenue`.'
        ),
    )
    gross_profit: Series[float] = pa.Field(
        nullable=True,
        description='Revenue - cost of revenue, in reported_currency. FMP `grossProfit`.',
    )
    operating_income: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Operating income (negative for an operating loss), in reported_currency. FMP '
            '`operatingIncome`.'
        ),
    )
    net_income: Series[float] = pa.Field(
        nullable=True,
        description='Net income (negative for a loss), in reported_currency. FMP `netIncome`.',
    )
    eps: Series[float] = pa.Field(
        nullable=True,
        description='Basic earnings per share, reported_currency per share. FMP `eps`.',
    )
    eps_diluted: Series[float] = pa.Field(
        nullable=True,
        description='Diluted earnings per share, reported_currency per share. FMP `epsDiluted`.',
    )
    weighted_shares_diluted: Series[float] = pa.Field(
        ge=0, nullable=True,
        description=(
            'Weighted average diluted shares outstanding in the period. FMP '
            '`weightedAverageShsOutDil`.'
        ),
    )
    total_assets: Series[float] = pa.Field(
        ge=0, nullable=True,
        description=(
            'Total assets at period end, in reported_currency. FMP balance sheet '
            '`totalAssets`.'
        ),
    )
    total_liabilities: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Total liabilities at period end, in reported_currency. FMP `totalLiabilities`.'
        ),
    )
    total_equity: Series[float] = pa.Field(
        nullable=True,
        description=(
            "Total stockholders' equity at period end (negative when liabilities exceed "
            'assets). FMP `totalEquity`.'
        ),
    )
    cash_and_equivalents: Series[float] = pa.Field(
        ge=0, nullable=True,
        description=(
            'Cash and cash equivalents at period end, in reported_currency. FMP '
            '`cashAndCashEquivalents`.'
        ),
    )
    provider: Series[str] = pa.Field(
        description='Registry slug that served the row (fmp or sandbox:fmp).',
    )

    @pa.check("period_end", name="period_end_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class EarningsSchema(ContractModel):
    """``market.earnings``: one earnings report per symbol and report date."""

    symbol: Series[str] = pa.Field(
        description='Canonical ticker.',
    )
    report_date: Series[CalendarDate] = pa.Field(
        description='Date the earnings were (or are to be) announced. FMP `date`.',
    )
    eps_actual: Series[float] = pa.Field(
        nullable=True,
        description='Reported EPS, USD per share; NULL before the report. FMP `epsActual`.',
    )
    eps_estimate: Series[float] = pa.Field(
        nullable=True,
        description="Analysts' consensus EPS estimate, USD per share. FMP `epsEstimated`.",
    )
    revenue_actual: Series[float] = pa.Field(
        nullable=True, ge=0,
        description='Reported revenue, USD; NULL before the report. FMP `revenueActual`.',
    )
    revenue_estimate: Series[float] = pa.Field(
        nullable=True, ge=0,
        description="Analysts' consensus revenue estimate, USD. FMP `revenueEstimated`.",
    )
    provider: Series[str] = pa.Field(
        description='Registry slug that served the row (fmp or sandbox:fmp).',
    )

    @pa.check("report_date", name="report_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class OptionContractSchema(ContractModel):
    """``market.options_chain``: one snapshot row per OCC contract and day."""

    contract: Series[str] = pa.Field(
        str_matches=OCC_SYMBOL,
        description=(
            "OCC option symbol without Polygon's `O:` prefix or padding, e.g. "
            'AAPL230616C00150000. Polygon `details.ticker`.'
        ),
    )
    underlying: Series[str] = pa.Field(
        description='Ticker of the underlying stock. Polygon `underlying_asset.ticker`.',
    )
    contract_type: Series[str] = pa.Field(
        isin=["call", "put"],
        description='call or put. Polygon `details.contract_type`.',
    )
    strike: Series[float] = pa.Field(
        gt=0,
        description='Strike price, USD per share. Polygon `details.strike_price`.',
    )
    expiration: Series[CalendarDate] = pa.Field(
        description='Expiration date of the contract. Polygon `details.expiration_date`.',
    )
    as_of_date: Series[CalendarDate] = pa.Field(
        description='Trading date (America/New_York) of the snapshot.',
    )
    volume: Series[float] = pa.Field(
        ge=0, nullable=True,
        description='Contracts traded that day. Polygon `day.volume`.',
    )
    open_interest: Series[float] = pa.Field(
        ge=0, nullable=True,
        description='Contracts open at the snapshot. Polygon `open_interest`.',
    )
    implied_volatility: Series[float] = pa.Field(
        ge=0, nullable=True,
        description=(
            'Implied volatility as a fraction (0.25 = 25 % a year). Polygon '
            '`implied_volatility`.'
        ),
    )
    delta: Series[float] = pa.Field(
        ge=-1, le=1, nullable=True,
        description=(
            'Change of option price per 1 USD move of the underlying; in [-1, 1] (puts '
            'negative). Polygon `greeks.delta`.'
        ),
    )
    gamma: Series[float] = pa.Field(
        nullable=True,
        description='Change of delta per 1 USD move of the underlying. Polygon `greeks.gamma`.',
    )
    theta: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Change of option price per calendar day, USD (usually negative: time decay). '
            'Polygon `greeks.theta`.'
        ),
    )
    vega: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Change of option price per 1 point of implied volatility, USD. Polygon '
            '`greeks.vega`.'
        ),
    )
    last_price: Series[float] = pa.Field(
        ge=0, nullable=True,
        description='Last traded price of the contract, USD per share. Polygon `day.close`.',
    )
    provider: Series[str] = pa.Field(
        description='Registry slug that served the row (polygon or sandbox:polygon).',
    )

    @pa.check("expiration", "as_of_date", name="dates_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)
