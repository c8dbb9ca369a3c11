"""Helpers the brokerage clients share: masking account numbers, transaction types, and
building the ``brokerage.*`` frames.

Three clients (Schwab, Alpaca, Chase files) land rows in the same three tables, so the
rules that must not differ between them live here once: an account number is never stored
in full (``account_id`` keeps at most its last four characters, and long digit runs are
masked inside free text such as descriptions and quarantined records), the nine
transaction types of the contract, how a date-only record gets a UTC timestamp, and the
column order and dtypes of each table (taken from the pandera models).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pandera.pandas as pa

from dashtam_pipeline.schemas.base import column_names, empty_frame
from dashtam_pipeline.schemas.brokerage import AccountSchema, PositionSchema, TransactionSchema

#: The exchange's time zone: date-only records are placed at its midnight, and trade dates
#: of timestamped fills are read in it.
MARKET_TZ = ZoneInfo("America/New_York")
MASK = "****"
#: Digit runs this long inside free text are treated as account, card or reference numbers,
#: except the 8-digit strike of an OCC option symbol (``HIMS  250801P00046000``).
_LONG_DIGITS = re.compile(r"(?<!\d[CP])\d{8,}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_INTEREST = re.compile(r"\bINT(?:EREST)?\b|\bINTRST\b", re.IGNORECASE)
#: Keys of raw records that hold an account identifier (masked in quarantined records).
ACCOUNT_KEYS = frozenset({"accountNumber", "account_number", "accountId", "account_id"})


class TransactionType(StrEnum):
    """The contract's ``brokerage.transactions.type`` values."""

    BUY = "BUY"
    SELL = "SELL"
    DIVIDEND = "DIVIDEND"
    INTEREST = "INTEREST"
    FEE = "FEE"
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER = "TRANSFER"
    OTHER = "OTHER"


# -- masking -------------------------------------------------------------------------------
def mask_account(number: str | None) -> str:
    """``"12345678"`` → ``"****5678"``: the last four letters or digits stay visible.

    Separators are ignored (``"aba1-34b6"`` → ``"****34b6"``) and an already-masked value
    such as Schwab's ``"********"`` gives ``"****"``, so the result always matches the
    schema's ``^\\*{4}[A-Za-z0-9]{0,4}$``.
    """
    alnum = "".join(_ALNUM.findall(number or ""))
    return MASK + alnum[-4:]


def scrub_account_numbers(text: str | None, known: Iterable[str] = ()) -> str | None:
    """Free text with account numbers masked: every ``known`` number (e.g. Alpaca's
    ``PA33WXN7OD4M``, which fee descriptions quote) and every run of 8+ digits (account,
    card, IBAN and trace numbers in bank descriptions) keep only their last four digits."""
    if text is None:
        return None
    for number in sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True):
        text = text.replace(number, mask_account(number))
    return _LONG_DIGITS.sub(lambda m: MASK + m.group(0)[-4:], text)


def scrub_record(record: Any, known: Iterable[str] = ()) -> Any:
    """A raw JSON record safe to quarantine: account-identifier keys masked, known account
    numbers masked inside every string. Other values are kept for debugging."""
    known = tuple(known)
    if isinstance(record, Mapping):
        return {
            key: mask_account(str(value)) if key in ACCOUNT_KEYS and value is not None
            else scrub_record(value, known)
            for key, value in record.items()
        }
    if isinstance(record, list):
        return [scrub_record(item, known) for item in record]
    if isinstance(record, str):
        for number in known:
            if number and len(number) >= 4:
                record = record.replace(number, mask_account(number))
        return record
    return record


# -- transaction types ---------------------------------------------------------------------
def cash_movement_type(amount: float) -> TransactionType:
    """A plain cash movement by its sign: money in is a deposit, money out a withdrawal."""
    return TransactionType.DEPOSIT if amount >= 0 else TransactionType.WITHDRAWAL


def mentions_interest(description: str | None) -> bool:
    """True for descriptions such as ``"CREDIT INTEREST"``, ``"SCHWAB1 INT 04/29"`` or
    ``"PURCHASE INTEREST CHARGE"``."""
    return bool(description and _INTEREST.search(description))


# -- values --------------------------------------------------------------------------------
def decimal_value(value: Any, field: str) -> Decimal:
    """A money or quantity field as an exact ``Decimal`` (brokers send strings such as
    ``"201.9617035750071243"``); ``ValueError`` names the field when it is not a number."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} is missing")
    try:
        number = Decimal(str(value).strip().replace(",", "").replace("$", ""))
    except InvalidOperation:
        raise ValueError(f"{field} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{field} is not a finite number: {value!r}")
    return number


def float_value(value: Any, field: str) -> float:
    """``decimal_value`` as a float (what the warehouse stores). ``Decimal("1e400")`` is
    finite but its float is ``inf``: such a value is refused like a non-number, so an
    infinity never lands."""
    result = float(decimal_value(value, field))
    if math.isinf(result):
        raise ValueError(f"{field} is too large to store: {str(value)[:40]!r}")
    return result


def optional_float(value: Any, field: str) -> float | None:
    """``float_value``, with a missing or empty value read as NULL."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float_value(value, field)


def market_midnight_utc(day: dt.date) -> dt.datetime:
    """The UTC instant of midnight in New York on ``day``: the timestamp of a record that
    only carries a date, so that its UTC and New York calendar dates agree."""
    return dt.datetime.combine(day, dt.time(), MARKET_TZ).astimezone(dt.UTC)


def market_today() -> dt.date:
    """Today in New York: the ``as_of_date`` of a snapshot when the request names none."""
    return dt.datetime.now(MARKET_TZ).date()


def market_date(moment: dt.datetime) -> dt.date:
    """The New York calendar date of an instant (a fill's trading day)."""
    return moment.astimezone(MARKET_TZ).date()


def parse_utc(value: Any, field: str) -> dt.datetime:
    """An ISO-8601 timestamp (``...Z``, ``+0000`` or ``+00:00``) as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} is missing")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field} is not an ISO timestamp: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def parse_date(value: Any, field: str) -> dt.date:
    """``YYYY-MM-DD`` (or the date part of an ISO timestamp) as a date."""
    if not isinstance(value, str) or len(value.strip()) < 10:
        raise ValueError(f"{field} is not a date: {value!r}")
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise ValueError(f"{field} is not a date: {value!r}") from None


# -- frames --------------------------------------------------------------------------------
def brokerage_frame(
    model: type[pa.DataFrameModel], rows: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """Rows → a frame with exactly ``model``'s columns, in its order, and the contract's
    dtypes (floats as float64, timestamps as UTC microseconds, dates as ``datetime.date``)."""
    columns = column_names(model)
    if not rows:
        return empty_frame(model)
    frame = pd.DataFrame([{c: _storable(row.get(c)) for c in columns} for row in rows],
                         columns=columns)
    for name, kind in _dtype_kinds(model).items():
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name], errors="raise").astype("float64")
        elif kind == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.as_unit("us")
    return frame


def without_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``\\udcff``).

    A file name whose bytes are not UTF-8 reaches Python as lone surrogates
    (``os.fsdecode``), and a JSON payload may carry one (``"\\ud800"``); Arrow, Parquet
    and DuckDB refuse such a string, and with it the whole frame and the run. Escaped, the
    value still says what was there and every other row lands."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _storable(value: Any) -> Any:
    """A cell as the lake can store it: strings without lone surrogates."""
    return without_surrogates(value) if isinstance(value, str) else value


def transactions_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return brokerage_frame(TransactionSchema, rows)


def accounts_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return brokerage_frame(AccountSchema, rows)


def positions_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return brokerage_frame(PositionSchema, rows)


def _dtype_kinds(model: type[pa.DataFrameModel]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name, column in model.to_schema().columns.items():
        text = str(column.dtype)
        if text.startswith("float"):
            kinds[name] = "float"
        elif text.startswith("datetime64"):
            kinds[name] = "timestamp"
    return kinds
