"""Schemas of the brokerage datasets: accounts, positions and transactions."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import CalendarDate, ContractModel, dates_in_range

TRANSACTION_TYPES = [
    "BUY", "SELL", "DIVIDEND", "INTEREST", "FEE", "DEPOSIT", "WITHDRAWAL", "TRANSFER", "OTHER",
]
#: A masked account id: at most four characters of the real number stay visible.
MASKED_ACCOUNT = r"^\*{4}[A-Za-z0-9]{0,4}$"


class OwnedRow(ContractModel):
    """The owner columns every brokerage table starts with: whose row it is, and through
    which connection it came (the same account through two connections lands twice)."""

    user_id: Series[str] = pa.Field(
        description="The owning user's id (a UUID, as in the Dashtam domain model)."
    )
    connection_id: Series[str] = pa.Field(
        description="The provider connection that served the row (a UUID)."
    )


class AccountSchema(OwnedRow):
    """``brokerage.accounts``: one balance snapshot per account and day."""

    provider: Series[str] = pa.Field(
        description=(
            'Registry slug of the brokerage connection that served the row (schwab, alpaca, '
            '…).'
        ),
    )
    account_id: Series[str] = pa.Field(
        str_matches=MASKED_ACCOUNT,
        description='Account number masked to **** and at most its last 4 characters.',
    )
    account_type: Series[str] = pa.Field(
        nullable=True,
        description='Account type as the broker names it (e.g. MARGIN, CASH).',
    )
    cash: Series[float] = pa.Field(
        nullable=True,
        description='Cash balance, USD (negative for a margin debit).',
    )
    equity: Series[float] = pa.Field(
        nullable=True,
        description='Total liquidation value of the account, USD (cash + positions).',
    )
    as_of_date: Series[CalendarDate] = pa.Field(
        description='Date (America/New_York) of the balance snapshot.',
    )

    @pa.check("as_of_date", name="as_of_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class PositionSchema(OwnedRow):
    """``brokerage.positions``: one holding per account, symbol and day."""

    provider: Series[str] = pa.Field(
        description='Registry slug of the brokerage connection that served the row.',
    )
    account_id: Series[str] = pa.Field(
        str_matches=MASKED_ACCOUNT,
        description='Account number masked to **** and at most its last 4 characters.',
    )
    symbol: Series[str] = pa.Field(
        description='Canonical ticker (or OCC symbol for an option).',
    )
    asset_class: Series[str] = pa.Field(
        nullable=True,
        description='Asset class as the broker reports it (EQUITY, OPTION, ETF, …).',
    )
    quantity: Series[float] = pa.Field(
        description='Shares or contracts held; negative for a short position.',
    )
    market_value: Series[float] = pa.Field(
        nullable=True,
        description='Market value of the position, USD (negative for a short).',
    )
    average_cost: Series[float] = pa.Field(
        nullable=True,
        description='Average cost per share or contract, USD.',
    )
    as_of_date: Series[CalendarDate] = pa.Field(
        description='Date (America/New_York) of the holdings snapshot.',
    )

    @pa.check("as_of_date", name="as_of_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class TransactionSchema(OwnedRow):
    """``brokerage.transactions``: signed cash movements (+ in, - out) with trade details."""

    provider: Series[str] = pa.Field(
        description=(
            'Where the row came from: schwab, alpaca or chase_file (sandbox:<slug> in the '
            'sandbox).'
        ),
    )
    account_id: Series[str] = pa.Field(
        str_matches=MASKED_ACCOUNT,
        description='Account number masked to **** and at most its last 4 characters.',
    )
    transaction_id: Series[str] = pa.Field(
        str_length={"min_value": 1},
        description="The broker's transaction id (for a Chase file: a hash of the row's content).",
    )
    occurred_at: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs={"unit": "us", "tz": "UTC"},
        description='When the transaction happened, UTC.',
    )
    trade_date: Series[CalendarDate] = pa.Field(
        description='Trade date (America/New_York).',
    )
    type: Series[str] = pa.Field(
        isin=TRANSACTION_TYPES,
        description=(
            'Normalized kind: BUY, SELL, DIVIDEND, INTEREST, FEE, DEPOSIT, WITHDRAWAL, '
            'TRANSFER or OTHER.'
        ),
    )
    symbol: Series[str] = pa.Field(
        nullable=True,
        description='Ticker traded or paying; NULL for cash-only movements.',
    )
    quantity: Series[float] = pa.Field(
        nullable=True,
        description=(
            'Shares or contracts (positive for both buys and sells); NULL for cash-only '
            'movements.'
        ),
    )
    price: Series[float] = pa.Field(
        nullable=True, ge=0,
        description='Price per share or contract, USD; NULL for cash-only movements.',
    )
    amount: Series[float] = pa.Field(
        description=(
            'Signed cash effect on the account: + cash in (sell, dividend, deposit), - cash '
            'out (buy, fee, withdrawal).'
        ),
    )
    currency: Series[str] = pa.Field(
        str_matches=r"^[A-Z]{3}$",
        description='ISO 4217 currency of `amount`.',
    )
    description: Series[str] = pa.Field(
        nullable=True,
        description="The broker's or bank's own description of the transaction.",
    )
    source_file: Series[str] = pa.Field(
        nullable=True,
        description=(
            'For Chase imports: the inbox file the row came from (its partition); NULL '
            'otherwise.'
        ),
    )

    @pa.check("trade_date", name="trade_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)
