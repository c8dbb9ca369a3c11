"""Prices: one seeded geometric random walk per symbol, and the company facts around it.

Each symbol's walk covers every weekday from 2000-01-03 to a fixed horizon, so a day's
bar never depends on when it is asked for; it is scaled so that its close on
``ANCHOR_DATE`` equals the symbol's reference price (AAPL ~190, BRK.B ~410), which keeps
recent prices realistic. Only sessions before "today" are ever served.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dashtam_pipeline.sandbox.common import (
    last_completed_session,
    rng_for,
    stable_seed,
)
from dashtam_pipeline.symbols import to_canonical
from dashtam_pipeline.trading_calendar import (
    is_trading_day,
    previous_trading_day,
    trading_day_on_or_before,
)

WALK_START = dt.date(2000, 1, 3)
WALK_END = dt.date(2040, 12, 31)
ANCHOR_DATE = dt.date(2024, 1, 2)
TRADING_DAYS_PER_YEAR = 252
HISTORIC_GROWTH = 0.09  # log growth a year from WALK_START to ANCHOR_DATE


@dataclass(frozen=True)
class Company:
    """Facts about one listed company: what quotes, statements and positions need."""

    symbol: str  # canonical (BRK.B)
    name: str
    exchange: str
    reference_price: float  # close on ANCHOR_DATE
    shares_outstanding: float
    annual_vol: float
    annual_revenue: float  # the latest fiscal year's revenue, USD
    gross_margin: float
    operating_margin: float
    fiscal_year_end_month: int
    cik: str
    cusip: str
    quarterly_dividend: float  # per share; 0 = no dividend
    avg_volume: float


_Facts = tuple[str, str, float, float, float, float, float, float, int, str, str, float]
_KNOWN: dict[str, _Facts] = {
    # name, exchange, price, shares, vol, revenue, gross, operating, FYE, cik, cusip, dividend
    "AAPL": ("Apple Inc.", "NASDAQ", 190.0, 15.2e9, 0.26, 391e9, 0.46, 0.31, 9,
             "0000320193", "037833100", 0.25),
    "MSFT": ("Microsoft Corporation", "NASDAQ", 375.0, 7.43e9, 0.24, 245e9, 0.69, 0.45, 6,
             "0000789019", "594918104", 0.83),
    "NVDA": ("NVIDIA Corporation", "NASDAQ", 48.0, 24.5e9, 0.48, 130e9, 0.75, 0.62, 1,
             "0001045810", "67066G104", 0.01),
    "AMZN": ("Amazon.com, Inc.", "NASDAQ", 150.0, 10.5e9, 0.32, 638e9, 0.49, 0.11, 12,
             "0001018724", "023135106", 0.0),
    "GOOGL": ("Alphabet Inc.", "NASDAQ", 139.0, 12.3e9, 0.28, 350e9, 0.58, 0.32, 12,
              "0001652044", "02079K305", 0.20),
    "JPM": ("JPMorgan Chase & Co.", "NYSE", 170.0, 2.85e9, 0.22, 177e9, 0.60, 0.40, 12,
            "0000019617", "46625H100", 1.25),
    "XOM": ("Exxon Mobil Corporation", "NYSE", 100.0, 4.4e9, 0.24, 339e9, 0.30, 0.14, 12,
            "0000034088", "30231G102", 0.99),
    "BRK.B": ("Berkshire Hathaway Inc.", "NYSE", 410.0, 2.16e9, 0.17, 371e9, 0.25, 0.12, 12,
              "0001067983", "084670702", 0.0),
}


def company(symbol: str, seed: int = 0) -> Company:
    """The company behind any symbol (any provider spelling); unknown symbols get
    hashed but plausible facts, so every ticker answers."""
    canonical = to_canonical(symbol)
    known = _KNOWN.get(canonical)
    if known is not None:
        name, exchange, price, shares, vol, revenue, gross, operating, fye, cik, cusip, div = known
        h = stable_seed("volume", canonical)
        return Company(canonical, name, exchange, price, shares, vol, revenue, gross, operating,
                       fye, cik, cusip, div, 20e6 + (h % 60) * 1e6)
    h = stable_seed("company", canonical)
    price = 10.0 + (h % 49000) / 100.0
    shares = 1e8 + (h >> 8) % 5000 * 1e6
    return Company(
        symbol=canonical,
        name=f"{canonical.title()} Holdings Inc.",
        exchange="NYSE" if h % 2 else "NASDAQ",
        reference_price=price,
        shares_outstanding=shares,
        annual_vol=0.2 + (h % 30) / 100.0,
        annual_revenue=price * shares * (0.3 + (h % 17) / 10.0),
        gross_margin=0.3 + (h % 40) / 100.0,
        operating_margin=0.08 + (h % 15) / 100.0,
        fiscal_year_end_month=12,
        cik=f"{h % 10**10:010d}",
        cusip=f"{h % 10**8:08d}1",
        quarterly_dividend=round((h % 5) * 0.1, 2),
        avg_volume=1e6 + (h % 200) * 1e5,
    )


@dataclass(frozen=True)
class Bar:
    """One daily bar; prices already rounded to cents and internally consistent."""

    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float
    transactions: int


class PriceSeries:
    """The whole walk of one symbol as numpy arrays, indexed by weekday."""

    def __init__(self, seed: int, company: Company) -> None:
        self.company = company
        self.dates = np.arange(
            np.datetime64(WALK_START), np.datetime64(WALK_END) + 1, dtype="datetime64[D]"
        )
        self.dates = self.dates[np.is_busday(self.dates)]
        n = len(self.dates)
        rng = rng_for(seed, "prices", company.symbol)
        daily_vol = company.annual_vol / np.sqrt(TRADING_DAYS_PER_YEAR)
        drift = 0.08 / TRADING_DAYS_PER_YEAR - 0.5 * daily_vol**2
        log_close = np.cumsum(drift + daily_vol * rng.standard_normal(n))
        anchor = int(np.searchsorted(self.dates, np.datetime64(ANCHOR_DATE)))
        # pin the walk before the anchor into a bridge that grew ~9% a year, so 2000's
        # prices are plausible fractions of today's instead of an arbitrary wander
        years = anchor / TRADING_DAYS_PER_YEAR
        excess = (log_close[anchor] - log_close[0]) - HISTORIC_GROWTH * years
        ramp = np.minimum(np.arange(n) / anchor, 1.0)
        log_close = log_close - excess * ramp
        close = company.reference_price * np.exp(log_close - log_close[anchor])
        gap = np.exp(0.25 * daily_vol * rng.standard_normal(n))
        prev_close = np.concatenate(([close[0] / gap[0]], close[:-1]))
        open_ = prev_close * gap
        spread_up = np.abs(rng.standard_normal(n)) * 0.5 * daily_vol
        spread_down = np.abs(rng.standard_normal(n)) * 0.5 * daily_vol
        high = np.maximum(open_, close) * (1 + spread_up)
        low = np.minimum(open_, close) * (1 - spread_down)
        self.open = np.round(open_, 2)
        self.close = np.round(close, 2)
        # rounding may cross: re-impose low <= open, close <= high on the rounded values
        self.high = np.maximum(np.round(high, 2), np.maximum(self.open, self.close))
        self.low = np.minimum(np.round(low, 2), np.minimum(self.open, self.close))
        self.low = np.maximum(self.low, 0.01)
        self.volume = np.round(
            company.avg_volume * np.exp(0.35 * rng.standard_normal(n))
        ).astype(np.int64)
        self.vwap = np.round((self.open + self.high + self.low + self.close) / 4, 4)
        self.transactions = (self.volume // (80 + rng.integers(0, 60, n))).astype(np.int64)

    def _index(self, day: dt.date) -> int:
        """Index of the last session on or before ``day`` (-1 before the walk). The walk
        runs over weekdays (so its values never depend on the holiday calendar); an
        exchange holiday is stepped over like a weekend."""
        day = trading_day_on_or_before(day)
        return int(np.searchsorted(self.dates, np.datetime64(day), side="right")) - 1

    def bar_at(self, i: int) -> Bar:
        return Bar(
            date=self.dates[i].astype(dt.date),
            open=float(self.open[i]),
            high=float(self.high[i]),
            low=float(self.low[i]),
            close=float(self.close[i]),
            volume=int(self.volume[i]),
            vwap=float(self.vwap[i]),
            transactions=int(self.transactions[i]),
        )

    def bars(self, start: dt.date, end: dt.date) -> list[Bar]:
        """Sessions with ``start <= date <= end`` (ascending)."""
        lo = int(np.searchsorted(self.dates, np.datetime64(start), side="left"))
        hi = self._index(end) + 1
        bars = (self.bar_at(i) for i in range(lo, max(lo, hi)))
        return [bar for bar in bars if is_trading_day(bar.date)]

    def bar_on_or_before(self, day: dt.date) -> Bar | None:
        i = self._index(day)
        return self.bar_at(i) if i >= 0 else None

    def close_on_or_before(self, day: dt.date) -> float:
        i = self._index(day)
        return float(self.close[max(i, 0)])

    def window_stats(self, day: dt.date, sessions: int) -> tuple[float, float, float]:
        """(max high, min low, mean close) over the ``sessions`` sessions ending ``day``."""
        i = self._index(day)
        lo = max(0, i - sessions + 1)
        return (
            float(self.high[lo : i + 1].max()),
            float(self.low[lo : i + 1].min()),
            float(self.close[lo : i + 1].mean()),
        )


@dataclass(frozen=True)
class QuoteFacts:
    """The end-of-day quote: the last completed session and the one before it."""

    company: Company
    bar: Bar
    previous_close: float
    year_high: float
    year_low: float
    avg50: float
    avg200: float

    @property
    def price(self) -> float:
        return self.bar.close

    @property
    def change(self) -> float:
        return round(self.bar.close - self.previous_close, 2)

    @property
    def change_pct(self) -> float:
        return round((self.bar.close - self.previous_close) / self.previous_close * 100, 5)

    @property
    def market_cap(self) -> float:
        return round(self.bar.close * self.company.shares_outstanding)


class MarketData:
    """Every symbol's walk for one seed, built on first use and cached (thread-safe)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._series: dict[str, PriceSeries] = {}
        self._lock = threading.Lock()

    def series(self, symbol: str) -> PriceSeries:
        canonical = to_canonical(symbol)
        with self._lock:
            found = self._series.get(canonical)
            if found is None:
                found = PriceSeries(self.seed, company(canonical, self.seed))
                self._series[canonical] = found
            return found

    def quote(self, symbol: str, now: dt.datetime) -> QuoteFacts:
        """The quote as of the last completed session before ``now`` (New York)."""
        series = self.series(symbol)
        session = last_completed_session(now)
        bar = series.bar_on_or_before(session)
        assert bar is not None  # the walk starts in 2000
        year_high, year_low, _ = series.window_stats(session, TRADING_DAYS_PER_YEAR)
        _, _, avg50 = series.window_stats(session, 50)
        _, _, avg200 = series.window_stats(session, 200)
        return QuoteFacts(
            company=series.company,
            bar=bar,
            previous_close=series.close_on_or_before(previous_trading_day(bar.date)),
            year_high=year_high,
            year_low=year_low,
            avg50=round(avg50, 4),
            avg200=round(avg200, 4),
        )

    @cached_property
    def default_symbols(self) -> tuple[str, ...]:
        return tuple(_KNOWN)
