"""Validation: good rows are coerced and kept, bad rows are quarantined with every reason,
whole-column failures quarantine the frame instead of raising, duplicate keys keep the
last row."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from dashtam_pipeline.registry import Dataset
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.brokerage import TransactionSchema
from dashtam_pipeline.schemas.market import QuoteSchema
from dashtam_pipeline.validation import QuarantineRecord, validate
from dashtam_pipeline_tests.test_lake import JAN, bars_frame

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates


def raw_quotes(**overrides: list[object]) -> pd.DataFrame:
    """Three quote rows as a provider client would hand them over: strings for dates and
    timestamps, plus a column the contract does not name."""
    frame = pd.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "NVDA"],
            "quote_date": ["2025-01-02"] * 3,
            "price": [190.5, 420.0, 140.0],
            "open": [189.0, 418.0, 139.0],
            "day_high": [191.0, 421.0, 141.0],
            "day_low": [188.0, 417.0, 138.0],
            "previous_close": [189.5, 419.0, 139.5],
            "change": [1.0, 1.0, 0.5],
            "change_pct": [0.5, 0.2, 0.4],
            "volume": [50_000_000, 20_000_000, 300_000_000],
            "market_cap": [3e12, 3.1e12, 3.4e12],
            "exchange": ["NASDAQ"] * 3,
            "quoted_at": ["2025-01-02T21:00:00Z"] * 3,
            "provider": ["fmp"] * 3,
            "is_stale": [False] * 3,
            "unexpected_extra": ["x", "y", "z"],
        }
    )
    for name, values in overrides.items():
        frame[name] = values
    return frame


def raw_transactions(types: list[str]) -> pd.DataFrame:
    n = len(types)
    return pd.DataFrame(
        {
            # the brokerage tables' owner columns (issue 11: keyed by connection_id)
            "user_id": ["00000000-0000-5000-8000-000000000001"] * n,
            "connection_id": ["11111111-1111-5111-8111-111111111111"] * n,
            "provider": ["alpaca"] * n,
            "account_id": ["****1234"] * n,
            "transaction_id": [f"t{i}" for i in range(n)],
            "occurred_at": ["2025-01-02T15:30:00Z"] * n,
            "trade_date": ["2025-01-02"] * n,
            "type": types,
            "symbol": ["AAPL"] * n,
            "quantity": [1.0] * n,
            "price": [190.0] * n,
            "amount": [-190.0] * n,
            "currency": ["USD"] * n,
            "description": [None] * n,
            "source_file": [None] * n,
        }
    )


def quotes(frame: pd.DataFrame, partition_key: str | None = "2025-01-02"):
    return validate(
        QuoteSchema, frame, provider="fmp", table="market.quotes", partition_key=partition_key
    )


def test_clean_frame_is_coerced_to_contract_columns_in_order() -> None:
    result = quotes(raw_quotes())

    assert result.quarantined == []
    assert list(result.valid.columns) == column_names(QuoteSchema)
    assert result.valid["quote_date"].tolist() == [dt.date(2025, 1, 2)] * 3
    assert str(result.valid["quoted_at"].dtype) == "datetime64[us, UTC]"
    assert str(result.valid["volume"].dtype) == "Int64"
    assert result.failures_by_check == {}


def test_negative_price_quarantines_only_that_row_with_its_value() -> None:
    result = quotes(raw_quotes(price=[190.5, -2.0, 140.0]))

    assert result.valid["symbol"].tolist() == ["AAPL", "NVDA"]
    (record,) = result.quarantined
    assert record.reason == "price: greater_than(0) failed (value -2.0)"
    assert (record.provider, record.dataset, record.partition_key) == (
        "fmp",
        "market.quotes",
        "2025-01-02",
    )
    raw = json.loads(record.record)
    assert raw["symbol"] == "MSFT" and raw["price"] == -2.0
    assert raw["unexpected_extra"] == "y"  # the raw row, not the coerced one
    assert result.failures_by_check == {"price: greater_than(0)": 1}


def test_every_failed_check_of_a_row_is_in_its_reason() -> None:
    result = quotes(
        raw_quotes(
            price=[190.5, 420.0, -1.0],
            quote_date=["2025-01-02", "2025-01-02", "1700-01-01"],
            volume=[1, 2, "lots"],
        )
    )

    (record,) = result.quarantined
    assert "price: greater_than(0) failed (value -1.0)" in record.reason
    assert "quote_date: quote_date_in_range failed" in record.reason
    assert "volume: coerce_dtype('Int64') failed (value 'lots')" in record.reason
    assert result.valid["symbol"].tolist() == ["AAPL", "MSFT"]
    assert str(result.valid["volume"].dtype) == "Int64"


def test_high_below_low_is_a_row_check_failure() -> None:
    frame = bars_frame(["AAPL", "MSFT"], JAN[:1])
    frame.loc[1, ["high", "low"]] = [90.0, 95.0]

    result = validate(Dataset.DAILY_BARS, frame, provider="polygon", table="market.daily_bars")

    assert result.valid["symbol"].tolist() == ["AAPL"]
    (record,) = result.quarantined
    assert record.reason == "row check high_gte_low failed"
    assert json.loads(record.record)["symbol"] == "MSFT"
    assert record.partition_key is None


def test_unknown_transaction_type_is_quarantined() -> None:
    result = validate(
        TransactionSchema,
        raw_transactions(["BUY", "BOGUS", "DIVIDEND"]),
        provider="alpaca",
        table="brokerage.transactions",
    )

    assert result.valid["type"].tolist() == ["BUY", "DIVIDEND"]
    (record,) = result.quarantined
    assert record.reason.startswith("type: isin(")
    assert "(value 'BOGUS')" in record.reason


def test_a_missing_column_quarantines_every_row_instead_of_raising() -> None:
    frame = raw_transactions(["BUY", "SELL"]).drop(columns=["amount"])

    result = validate(
        Dataset.TRANSACTIONS, frame, provider="alpaca", table="brokerage.transactions"
    )

    assert result.valid.empty
    assert list(result.valid.columns) == column_names(TransactionSchema)
    assert len(result.quarantined) == 2
    assert all(
        r.reason == "amount: column_in_dataframe failed (column missing)"
        for r in result.quarantined
    )
    assert result.failures_by_check == {"amount: column_in_dataframe": 2}


def test_a_missing_column_and_a_bad_row_give_that_row_both_reasons() -> None:
    frame = raw_transactions(["BUY", "BOGUS"]).drop(columns=["currency"])

    result = validate(
        Dataset.TRANSACTIONS, frame, provider="alpaca", table="brokerage.transactions"
    )

    reasons = {json.loads(r.record)["type"]: r.reason for r in result.quarantined}
    assert "currency: column_in_dataframe failed" in reasons["BUY"]
    assert "currency: column_in_dataframe failed" in reasons["BOGUS"]
    assert "type: isin(" in reasons["BOGUS"]


def test_duplicate_keys_keep_the_last_row_and_are_counted() -> None:
    frame = raw_quotes(symbol=["AAPL", "AAPL", "MSFT"], price=[1.0, 2.0, 3.0])

    result = quotes(frame)

    assert result.duplicates_dropped == 1
    assert result.valid.set_index("symbol")["price"].to_dict() == {"AAPL": 2.0, "MSFT": 3.0}


def test_empty_input_is_valid_and_empty() -> None:
    result = quotes(pd.DataFrame())
    assert result.valid.empty and result.quarantined == []


def test_record_json_has_nulls_for_missing_values() -> None:
    result = quotes(raw_quotes(price=[float("nan"), 420.0, 140.0]))

    (record,) = result.quarantined
    assert json.loads(record.record)["price"] is None
    assert "price: not_nullable failed" in record.reason


def test_quarantine_id_depends_on_what_was_rejected_not_when() -> None:
    first = QuarantineRecord("fmp", "market.quotes", "2025-01-02", "bad", "{}")
    later = QuarantineRecord(
        "fmp",
        "market.quotes",
        "2025-01-02",
        "bad",
        "{}",
        quarantined_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    other = QuarantineRecord("fmp", "market.quotes", "2025-01-03", "bad", "{}")

    assert first.quarantine_id == later.quarantine_id
    assert first.quarantine_id != other.quarantine_id
    assert len(first.quarantine_id) == 64


def test_one_unparseable_date_costs_only_its_row() -> None:
    """pandera leaves a column it cannot coerce raw, so every other value of it fails the
    dtype check in that pass; those rows are judged again once the bad row is gone."""
    frame = bars_frame(["AAPL", "MSFT", "NVDA"], [dt.date(2025, 1, 2)]).astype({"date": object})
    frame["date"] = ["2025-01-02", "not-a-date", "2025-01-03"]

    result = validate(Dataset.DAILY_BARS, frame, provider="fmp", table="market.daily_bars")

    assert result.valid["symbol"].tolist() == ["AAPL", "NVDA"]
    assert result.valid["date"].tolist() == [dt.date(2025, 1, 2), dt.date(2025, 1, 3)]
    (record,) = result.quarantined
    assert json.loads(record.record)["symbol"] == "MSFT"
    assert record.reason.startswith("date: coerce_dtype('date') failed (value 'not-a-date')")
