"""Brokerage accounts: a seeded trading history that positions, cash and activities share.

Each sandbox account replays, from a fixed opening date, one decision per completed
session (buy, sell or nothing, seeded by the date) at prices inside that day's sandbox
bar, collects quarterly dividends on what it held at the record date, and pays
exchange fees on sales. Positions, cash and the transaction list are all read off that
one history, so they agree with each other and with the market data endpoints.

The sandbox has many users (``DASHTAM_SANDBOX_USERS``): user 1 holds the accounts below
(what a single-user sandbox always held, so its answers did not change); every other user
k holds accounts of their own whose symbols, opening date and deposit are drawn from the
seed and k, so two users never share an account number and one seed always gives the same
users.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field

from dashtam_pipeline.sandbox.common import (
    UTC,
    last_completed_session,
    next_weekday_on_or_after,
    previous_weekday,
    rng_for,
    stable_seed,
)
from dashtam_pipeline.sandbox.market_data import MarketData

TAF_PER_SHARE = 0.000166
TAF_CAP = 8.30
SEC_FEE_RATE = 0.0000278
DIVIDEND_MONTHS = (2, 5, 8, 11)


@dataclass(frozen=True)
class AccountSpec:
    """A sandbox account: who holds it, what it trades, since when."""

    name: str
    symbols: tuple[str, ...]
    opened: dt.date
    deposit: float
    trade_probability: float = 0.3


ACCOUNTS: dict[str, AccountSpec] = {
    "alpaca": AccountSpec("alpaca", ("AAPL", "MSFT", "NVDA", "JPM", "XOM"),
                          dt.date(2024, 1, 2), 100_000.0),
    "schwab": AccountSpec("schwab", ("AAPL", "AMZN", "GOOGL", "BRK.B", "MSFT"),
                          dt.date(2023, 6, 1), 50_000.0),
}

#: What other users' accounts trade: the default universe, so their positions are valued
#: by the market data the pipeline already pulls.
USER_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "JPM", "XOM", "BRK.B")


def account_name(base: str, user: int) -> str:
    """The name a user's account of ``base`` (``"schwab"``, ``"alpaca"``) replays under:
    the base itself for user 1, ``"<base>-u<k>"`` for user k (names seed the trades and
    the account number, so each user's history is their own)."""
    return base if user == 1 else f"{base}-u{user}"


def account_spec(base: str, user: int, seed: int) -> AccountSpec:
    """User ``user``'s account of ``base``: user 1's is fixed, the others' are seeded."""
    if user == 1:
        return ACCOUNTS[base]
    name = account_name(base, user)
    rng = rng_for(seed, "account-spec", name)
    count = int(rng.integers(3, 6))
    picks = sorted(int(i) for i in rng.choice(len(USER_SYMBOLS), size=count, replace=False))
    opened = next_weekday_on_or_after(
        dt.date(2023, 1, 3) + dt.timedelta(days=int(rng.integers(0, 540))))
    deposit = float(rng.integers(20, 201)) * 1_000.0
    return AccountSpec(name, tuple(USER_SYMBOLS[i] for i in picks), opened, deposit)


@dataclass(frozen=True)
class Trade:
    seq: int
    time: dt.datetime
    symbol: str
    side: str  # buy | sell
    qty: int
    price: float
    taf_fee: float
    sec_fee: float

    @property
    def gross(self) -> float:
        return round(self.qty * self.price, 2)


@dataclass(frozen=True)
class Dividend:
    seq: int
    pay_date: dt.date
    record_date: dt.date
    symbol: str
    qty: int
    per_share: float

    @property
    def amount(self) -> float:
        return round(self.qty * self.per_share, 2)


@dataclass
class Holding:
    symbol: str
    qty: int = 0
    avg_cost: float = 0.0


@dataclass
class History:
    """An account's history up to the last completed session, and where it ended."""

    spec: AccountSpec
    as_of: dt.date
    trades: list[Trade] = field(default_factory=list)
    dividends: list[Dividend] = field(default_factory=list)
    holdings: dict[str, Holding] = field(default_factory=dict)
    cash: float = 0.0

    def open_positions(self) -> list[Holding]:
        return [h for h in self.holdings.values() if h.qty > 0]


def _cents_up(value: float) -> float:
    return math.ceil(round(value * 100, 6)) / 100


def dividend_schedule(years: range) -> dict[dt.date, list[tuple[str, dt.date]]]:
    """Record dates -> [("record", pay date)] and pay dates -> [("pay", record date)]."""
    out: dict[dt.date, list[tuple[str, dt.date]]] = {}
    for year in years:
        for month in DIVIDEND_MONTHS:
            pay = next_weekday_on_or_after(dt.date(year, month, 15))
            record = next_weekday_on_or_after(pay - dt.timedelta(days=14))
            out.setdefault(record, []).append(("record", pay))
            out.setdefault(pay, []).append(("pay", record))
    return out


class Brokerage:
    """Histories of the sandbox accounts for one seed, cached per completed session."""

    def __init__(self, seed: int, market: MarketData) -> None:
        self.seed = seed
        self.market = market
        self._cache: dict[tuple[str, dt.date], History] = {}
        self._lock = threading.Lock()

    def history(self, base: str, now: dt.datetime, user: int = 1) -> History:
        """Sandbox user ``user``'s account of ``base`` up to the last completed session."""
        as_of = last_completed_session(now)
        name = account_name(base, user)
        with self._lock:
            key = (name, as_of)
            if key not in self._cache:
                self._cache[key] = self._replay(account_spec(base, user, self.seed), as_of)
            return self._cache[key]

    def _replay(self, spec: AccountSpec, as_of: dt.date) -> History:
        history = History(spec, as_of, cash=spec.deposit)
        holdings = history.holdings = {s: Holding(s) for s in spec.symbols}
        schedule = dividend_schedule(range(spec.opened.year, as_of.year + 1))
        on_record: dict[tuple[str, dt.date], int] = {}
        seq = 0
        day = spec.opened
        while day <= as_of:
            for kind, other in schedule.get(day, []):
                for symbol in spec.symbols:
                    if kind == "record":
                        on_record[(symbol, other)] = holdings[symbol].qty
                    elif (qty := on_record.get((symbol, day), 0)) > 0:
                        per_share = self.market.series(symbol).company.quarterly_dividend
                        if per_share > 0:
                            seq += 1
                            dividend = Dividend(seq, day, other, symbol, qty, per_share)
                            history.dividends.append(dividend)
                            history.cash += dividend.amount
            trade = self._decide(spec, history, day, seq + 1)
            if trade is not None:
                seq += 1
                self._apply(history, trade)
            day = next_weekday_on_or_after(day + dt.timedelta(days=1))
        history.cash = round(history.cash, 2)
        return history

    def _decide(self, spec: AccountSpec, history: History, day: dt.date, seq: int) -> Trade | None:
        rng = rng_for(self.seed, "trade", spec.name, day)
        if rng.random() >= spec.trade_probability:
            return None
        symbol = spec.symbols[int(rng.integers(0, len(spec.symbols)))]
        bar = self.market.series(symbol).bar_on_or_before(day)
        assert bar is not None
        price = round(bar.low + (bar.high - bar.low) * float(rng.random()), 2)
        held = history.holdings[symbol].qty
        wants_buy = rng.random() < (0.75 if history.cash > 0.3 * spec.deposit else 0.15)
        minutes = int(rng.integers(0, 390))
        time = dt.datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC) + dt.timedelta(
            minutes=minutes,
            seconds=int(rng.integers(0, 60)),
            milliseconds=int(rng.integers(0, 1000)),
        )
        if wants_buy or held == 0:
            budget = spec.deposit * float(rng.uniform(0.02, 0.08))
            qty = max(1, int(budget // price))
            if qty * price > history.cash:
                return None
            return Trade(seq, time, symbol, "buy", qty, price, 0.0, 0.0)
        qty = int(rng.integers(1, held + 1))
        taf = min(TAF_CAP, _cents_up(qty * TAF_PER_SHARE))
        sec = _cents_up(qty * price * SEC_FEE_RATE)
        return Trade(seq, time, symbol, "sell", qty, price, taf, sec)

    @staticmethod
    def _apply(history: History, trade: Trade) -> None:
        holding = history.holdings[trade.symbol]
        if trade.side == "buy":
            total = holding.qty * holding.avg_cost + trade.gross
            holding.qty += trade.qty
            holding.avg_cost = total / holding.qty
            history.cash -= trade.gross
        else:
            holding.qty -= trade.qty
            if holding.qty == 0:
                holding.avg_cost = 0.0
            history.cash += trade.gross - trade.taf_fee - trade.sec_fee
        history.trades.append(trade)

    def previous_close(self, symbol: str, as_of: dt.date) -> float:
        return self.market.series(symbol).close_on_or_before(previous_weekday(as_of))


def account_number(name: str, seed: int) -> str:
    """A stable 8-digit account number per sandbox account (``name`` as ``account_name``
    spells it, so each user's differs)."""
    return f"{stable_seed('account', name, seed) % 90_000_000 + 10_000_000}"
