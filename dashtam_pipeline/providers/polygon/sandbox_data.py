"""An options chain around the sandbox price: Black-Scholes values and greeks on a smile.

The chain is a snapshot as of the last completed session: the next few monthly
expirations (third Fridays) times strikes around the close, calls and puts. Prices,
greeks and implied volatility come from one model so they agree with each other.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from dashtam_pipeline.sandbox.common import rng_for
from dashtam_pipeline.sandbox.market_data import QuoteFacts

RISK_FREE = 0.045
EXPIRATIONS = 4
STRIKES_EACH_SIDE = 6


@dataclass(frozen=True)
class OptionQuote:
    """One contract in the snapshot."""

    underlying: str  # canonical, e.g. BRK.B
    contract_type: str  # call | put
    expiration: dt.date
    strike: float
    price: float
    previous_price: float
    delta: float
    gamma: float
    theta: float  # per calendar day
    vega: float  # per volatility point
    implied_volatility: float
    open_interest: int
    volume: int

    @property
    def occ_ticker(self) -> str:
        """Polygon's ``O:`` + OCC root (no dot), yymmdd, C/P and the strike in mills."""
        root = self.underlying.replace(".", "")
        side = "C" if self.contract_type == "call" else "P"
        return f"O:{root}{self.expiration:%y%m%d}{side}{round(self.strike * 1000):08d}"


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (4 - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def monthly_expirations(after: dt.date, count: int) -> list[dt.date]:
    """The next ``count`` third Fridays strictly after ``after``."""
    out: list[dt.date] = []
    year, month = after.year, after.month
    while len(out) < count:
        friday = third_friday(year, month)
        if friday > after:
            out.append(friday)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def strike_step(price: float) -> float:
    """Listed strike spacing that keeps a dozen strikes within ~±15% of the price."""
    for step in (0.5, 1.0, 2.5, 5.0, 10.0, 25.0):
        if price * 0.025 <= step:
            return step
    return 50.0


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def black_scholes(
    spot: float, strike: float, years: float, vol: float, call: bool
) -> tuple[float, float, float, float, float]:
    """(price, delta, gamma, theta per day, vega per vol point)."""
    years = max(years, 1 / 365)
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (RISK_FREE + 0.5 * vol * vol) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-RISK_FREE * years)
    gamma = _norm_pdf(d1) / (spot * vol * sqrt_t)
    vega = spot * _norm_pdf(d1) * sqrt_t / 100
    decay = -spot * _norm_pdf(d1) * vol / (2 * sqrt_t)
    if call:
        price = spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
        delta = _norm_cdf(d1)
        theta = decay - RISK_FREE * strike * discount * _norm_cdf(d2)
    else:
        price = strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
        delta = _norm_cdf(d1) - 1
        theta = decay + RISK_FREE * strike * discount * _norm_cdf(-d2)
    return price, delta, gamma, theta / 365, vega


def chain(seed: int, quote: QuoteFacts) -> list[OptionQuote]:
    """Every contract of the snapshot, ordered by expiration, strike, then call/put."""
    c = quote.company
    as_of = quote.bar.date
    spot = quote.price
    step = strike_step(spot)
    center = round(spot / step) * step
    out = []
    for expiration in monthly_expirations(as_of, EXPIRATIONS):
        years = (expiration - as_of).days / 365
        for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1):
            strike = round(center + k * step, 2)
            if strike <= 0:
                continue
            moneyness = math.log(strike / spot)
            vol = c.annual_vol * (1 + 1.5 * moneyness * moneyness - 0.3 * moneyness)
            for call in (True, False):
                rng = rng_for(seed, "option", c.symbol, as_of, expiration, strike, call)
                price, delta, gamma, theta, vega = black_scholes(spot, strike, years, vol, call)
                prev, *_ = black_scholes(quote.previous_close, strike, years + 1 / 365, vol, call)
                liquidity = math.exp(-8 * moneyness * moneyness)
                out.append(
                    OptionQuote(
                        underlying=c.symbol,
                        contract_type="call" if call else "put",
                        expiration=expiration,
                        strike=strike,
                        price=max(0.01, round(price, 2)),
                        previous_price=max(0.01, round(prev, 2)),
                        delta=delta,
                        gamma=gamma,
                        theta=theta,
                        vega=vega,
                        implied_volatility=vol,
                        open_interest=int(rng.integers(50, 400) * 40 * liquidity) + 1,
                        volume=int(rng.integers(0, 300) * 10 * liquidity),
                    )
                )
    return out
