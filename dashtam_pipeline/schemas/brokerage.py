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


class AccountSchema(ContractModel):
    """``brokerage.accounts``: one balance snapshot per account and day."""

    user_id: Series[str] = pa.Field(
        description="The owning user's id (a UUID, as in the Dashtam domain model)."
    )
    connection_id: Series[str] = pa.Field(
        description="The provider connection that served the row (a UUID)."
    )
    provider: Series[str] = pa.Field()
    account_id: Series[str] = pa.Field(str_matches=MASKED_ACCOUNT)
    account_type: Series[str] = pa.Field(nullable=True)
    cash: Series[float] = pa.Field(nullable=True)
    equity: Series[float] = pa.Field(nullable=True)
    as_of_date: Series[CalendarDate] = pa.Field()

    @pa.check("as_of_date", name="as_of_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class PositionSchema(ContractModel):
    """``brokerage.positions``: one holding per account, symbol and day."""

    user_id: Series[str] = pa.Field(
        description="The owning user's id (a UUID, as in the Dashtam domain model)."
    )
    connection_id: Series[str] = pa.Field(
        description="The provider connection that served the row (a UUID)."
    )
    provider: Series[str] = pa.Field()
    account_id: Series[str] = pa.Field(str_matches=MASKED_ACCOUNT)
    symbol: Series[str] = pa.Field()
    asset_class: Series[str] = pa.Field(nullable=True)
    quantity: Series[float] = pa.Field()
    market_value: Series[float] = pa.Field(nullable=True)
    average_cost: Series[float] = pa.Field(nullable=True)
    as_of_date: Series[CalendarDate] = pa.Field()

    @pa.check("as_of_date", name="as_of_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)


class TransactionSchema(ContractModel):
    """``brokerage.transactions``: signed cash movements (+ in, - out) with trade details."""

    user_id: Series[str] = pa.Field(
        description="The owning user's id (a UUID, as in the Dashtam domain model)."
    )
    connection_id: Series[str] = pa.Field(
        description="The provider connection that served the row (a UUID)."
    )
    provider: Series[str] = pa.Field()
    account_id: Series[str] = pa.Field(str_matches=MASKED_ACCOUNT)
    transaction_id: Series[str] = pa.Field(str_length={"min_value": 1})
    occurred_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    trade_date: Series[CalendarDate] = pa.Field()
    type: Series[str] = pa.Field(isin=TRANSACTION_TYPES)
    symbol: Series[str] = pa.Field(nullable=True)
    quantity: Series[float] = pa.Field(nullable=True)
    price: Series[float] = pa.Field(nullable=True, ge=0)
    amount: Series[float] = pa.Field()
    currency: Series[str] = pa.Field(str_matches=r"^[A-Z]{3}$")
    description: Series[str] = pa.Field(nullable=True)
    source_file: Series[str] = pa.Field(nullable=True)

    @pa.check("trade_date", name="trade_date_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)
