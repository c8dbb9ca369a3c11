"""Per-user marts (issue 11): holdings and daily portfolio value by user and connection, a
user's net worth over time, and ``forget`` erasing one user's mart rows too.

Two users, three connections, hand-written rows whose values are easy to check by eye:
Alice holds 10 AAPL in her Schwab IRA and 2 MSFT in her Schwab brokerage account; Bob holds
5 AAPL at Alpaca. Closes: AAPL 100 then 110, MSFT 200 then 210.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from dashtam_pipeline.assets.marts import MARTS, MartSpec, compute_mart
from dashtam_pipeline.erasure import erase_user_rows
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.storage.warehouse import lake_connection, write_mart

ALICE = str(uuid.UUID("a11ce000-0000-4000-8000-000000000001"))
BOB = str(uuid.UUID("b0b00000-0000-4000-8000-000000000002"))
IRA, TAXABLE, PAPER = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
DAY1, DAY2 = dt.date(2026, 11, 27), dt.date(2026, 11, 30)
OWNERS = {IRA: ("schwab", ALICE, "****1111"), TAXABLE: ("schwab", ALICE, "****2222"),
          PAPER: ("alpaca", BOB, "****3333")}


def _mart(name: str) -> MartSpec:
    return next(m for m in MARTS if m.name == name)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    positions = [(IRA, "AAPL", 10.0, 90.0), (TAXABLE, "MSFT", 2.0, 150.0),
                 (PAPER, "AAPL", 5.0, 80.0)]
    lake.upsert("brokerage.positions", pd.DataFrame([
        {"user_id": OWNERS[c][1], "connection_id": c, "provider": OWNERS[c][0],
         "account_id": OWNERS[c][2], "symbol": s, "asset_class": "EQUITY", "quantity": q,
         "market_value": q * 100.0, "average_cost": cost, "as_of_date": DAY1}
        for c, s, q, cost in positions
    ]))
    lake.upsert("brokerage.accounts", pd.DataFrame([
        {"user_id": OWNERS[c][1], "connection_id": c, "provider": OWNERS[c][0],
         "account_id": OWNERS[c][2], "account_type": "CASH", "cash": cash,
         "equity": cash, "as_of_date": DAY1}
        for c, cash in ((IRA, 50.0), (TAXABLE, 25.0), (PAPER, 1000.0))
    ]))
    lake.upsert("market.daily_bars", pd.DataFrame([
        {"symbol": s, "date": d, "open": c, "high": c, "low": c, "close": c, "volume": 1.0,
         "vwap": c, "provider": "fmp"}
        for s, d, c in (("AAPL", DAY1, 100.0), ("AAPL", DAY2, 110.0),
                        ("MSFT", DAY1, 200.0), ("MSFT", DAY2, 210.0))
    ]))
    return lake


def _compute(
    lake: Lake, name: str, ended: Sequence[tuple[str, dt.date]] = ()
) -> pd.DataFrame:
    with lake_connection(lake.root) as con:
        table = compute_mart(con, _mart(name), ended).to_arrow_table()
    write_mart(lake, name, table)
    return table.to_pandas()


def test_holdings_are_per_user_and_connection(lake: Lake) -> None:
    rows = _compute(lake, "holdings")
    assert sorted(zip(rows.user_id, rows.connection_id, rows.symbol, strict=True)) == sorted(
        [(ALICE, IRA, "AAPL"), (ALICE, TAXABLE, "MSFT"), (BOB, PAPER, "AAPL")])
    # each account is its own whole: one position each, so each weighs 1
    assert set(rows.weight_in_account) == {1.0}


def test_daily_portfolio_value_is_per_connection_account_and_day(lake: Lake) -> None:
    rows = _compute(lake, "daily_portfolio_value").set_index(["date", "connection_id"])
    assert rows.loc[(DAY1, IRA), "market_value"] == 1000.0
    assert rows.loc[(DAY2, IRA), "market_value"] == 1100.0
    assert rows.loc[(DAY2, TAXABLE), "market_value"] == 420.0
    assert rows.loc[(DAY2, PAPER), "market_value"] == 550.0
    assert rows.loc[(DAY2, PAPER), "user_id"] == BOB


def test_net_worth_sums_a_users_connections_and_cash_per_day(lake: Lake) -> None:
    rows = _compute(lake, "net_worth").set_index(["date", "user_id"])
    alice = rows.loc[(DAY2, ALICE)]
    assert (alice.invested, alice.cash, alice.net_worth, alice.connections) == (
        1520.0, 75.0, 1595.0, 2)
    bob = rows.loc[(DAY1, BOB)]
    assert (bob.invested, bob.cash, bob.net_worth, bob.connections) == (500.0, 1000.0, 1500.0, 1)
    assert len(rows) == 4  # two users x two trading days, nothing else


def test_an_ended_connection_stops_counting_the_day_it_ended(lake: Lake) -> None:
    """Bob disconnects his Alpaca connection on DAY2: it leaves his holdings, and his net
    worth counts it on DAY1 only."""
    ended = [(PAPER, DAY2)]
    holdings = _compute(lake, "holdings", ended)
    assert PAPER not in set(holdings.connection_id) and BOB not in set(holdings.user_id)
    worth = _compute(lake, "net_worth", ended).set_index(["date", "user_id"])
    assert worth.loc[(DAY1, BOB), "net_worth"] == 1500.0
    assert (DAY2, BOB) not in worth.index
    assert worth.loc[(DAY2, ALICE), "net_worth"] == 1595.0  # nobody else moves


def test_a_connection_that_replaces_an_ended_one_never_doubles_the_account(
    lake: Lake,
) -> None:
    """Bob's keys were removed (his connection DISCONNECTED on DAY2) and set again: a new
    connection syncs the same account on DAY2. Each day counts the account once: the old
    connection up to DAY1, the new one from DAY2, and the new one's first snapshot is not
    carried back over the old one's days."""
    renewed = str(uuid.UUID(int=4))
    row = {"user_id": BOB, "connection_id": renewed, "provider": "alpaca",
           "account_id": "****3333", "as_of_date": DAY2}
    lake.upsert("brokerage.positions", pd.DataFrame([{
        **row, "symbol": "AAPL", "asset_class": "EQUITY", "quantity": 6.0,
        "market_value": 660.0, "average_cost": 80.0}]))
    lake.upsert("brokerage.accounts", pd.DataFrame([{
        **row, "account_type": "CASH", "cash": 900.0, "equity": 900.0}]))
    ended = [(PAPER, DAY2)]
    worth = _compute(lake, "net_worth", ended).set_index(["date", "user_id"])
    day1, day2 = worth.loc[(DAY1, BOB)], worth.loc[(DAY2, BOB)]
    assert (day1.invested, day1.cash, day1.connections) == (500.0, 1000.0, 1)
    assert (day2.invested, day2.cash, day2.connections) == (660.0, 900.0, 1)
    value = _compute(lake, "daily_portfolio_value", ended)
    bob = value[value.user_id == BOB]
    assert sorted(zip(bob.date, bob.connection_id, strict=True)) == [
        (DAY1, PAPER), (DAY2, renewed)]
    holdings = _compute(lake, "holdings", ended)
    assert list(holdings[holdings.user_id == BOB].connection_id) == [renewed]
    # without the end, the two connections are two (the contract: once per connection)
    both = _compute(lake, "net_worth").set_index(["date", "user_id"])
    assert both.loc[(DAY2, BOB), "connections"] == 2


def test_every_per_user_mart_declares_its_owner_columns() -> None:
    for name in ("holdings", "daily_portfolio_value", "net_worth"):
        assert "user_id" in {c.name for c in _mart(name).columns}, name


def test_forget_erases_the_users_mart_rows_and_only_them(lake: Lake) -> None:
    for name in ("holdings", "daily_portfolio_value", "net_worth"):
        _compute(lake, name)
    removed = erase_user_rows(lake.root, uuid.UUID(ALICE))
    assert removed["marts.holdings"] == 2
    assert removed["marts.daily_portfolio_value"] == 4
    assert removed["marts.net_worth"] == 2
    with lake_connection(lake.root) as con:
        for name in ("holdings", "daily_portfolio_value", "net_worth"):
            users = {r[0] for r in con.sql(f"SELECT DISTINCT user_id FROM marts.{name}").fetchall()}
            assert users == {BOB}, name
