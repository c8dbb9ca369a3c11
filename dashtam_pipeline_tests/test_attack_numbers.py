"""Numbers are numbers: infinities and NaN never land, Chase amounts parse strictly or
their row is rejected, and a split field never shifts a row's columns."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pandas as pd
import pytest

from dashtam_pipeline.ingest import rejected_to_quarantine
from dashtam_pipeline.providers.chase_file.client import parse_amount, parse_chase_csv
from dashtam_pipeline.providers.fmp.client import parse_quotes
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.base import duckdb_columns
from dashtam_pipeline.validation import validate
from dashtam_pipeline_tests.payloads import load_bytes

CHECKING = "chase_file/checking_full_file_ArthurFDLR_beancount-chase.csv"
CARD = "chase_file/credit_card_personal_test_fixture_sample.csv"
LEGACY_2009 = "chase_file/legacy_2009_checking_noheader_reckon.csv"
LEGACY_2013 = "chase_file/legacy_2013_credit_card_jdmullin_ledger.csv"
QUOTE = "fmp/stable_quote_AAPL.json"
NAME = "Chase1234_Activity_20240131.CSV"


@pytest.mark.parametrize(("text", "value"), [
    ("-59.17", "-59.17"), ("1,234.56", "1234.56"), ("$1,234.56", "1234.56"),
    ("-$5.00", "-5.00"), ("$-5.00", "-5.00"), ("(12.34)", "-12.34"), ("($1,000.00)", "-1000.00"),
    ("+3", "3"), (".50", "0.50"), ("-54.8", "-54.8"), (" 7.76 ", "7.76"),
])
def test_chase_amounts_in_every_real_spelling_parse_exactly(text: str, value: str) -> None:
    assert parse_amount(text) == Decimal(value)


@pytest.mark.parametrize("text", [
    "1e400", "-1e400", "1E5", "nan", "NaN", "inf", "-Infinity", "1,2,3", "12,34.00", "--5",
    "-$-5", "-(5)", "$", "", "five", "€5.00", "5.00 £", "١٢٣", "9" * 16, "0x10", "1_000",
])
def test_anything_else_is_refused_with_the_field_named(text: str) -> None:
    with pytest.raises(ValueError, match="Amount"):
        parse_amount(text)


def with_line(payload: str, line: str) -> bytes:
    return load_bytes(payload).rstrip(b"\r\n") + b"\n" + line.encode() + b"\n"


@pytest.mark.parametrize("amount", ["1e400", "-1e400", "nan", "NaN", "inf", "-inf", "1e5"])
def test_non_finite_chase_amounts_are_rejected_never_landed(amount: str) -> None:
    data = with_line(CARD, f"01/02/2024,01/02/2024,EXTREME,Shopping,Sale,{amount},")
    parsed = parse_chase_csv(data, NAME)
    assert len(parsed.rows) == 6
    [rejected] = parsed.rejected
    assert "line 8" in rejected.reason and "Amount" in rejected.reason
    assert "EXTREME" in rejected.record
    frame = pd.DataFrame(parsed.rows)
    assert frame["amount"].map(math.isfinite).all()


#: layout → (payload, a row with an UNQUOTED $1,234.56 that splits into two fields, the
#: same row with it quoted)
SPLITS = {
    "checking (8 fields)": (
        CHECKING, 'DEBIT,12/02/2020,"Rent",-$1,234.56,ACH_DEBIT,100.00,,',
        'DEBIT,12/02/2020,"Rent","-$1,234.56",ACH_DEBIT,100.00,,'),
    "checking (7 fields)": (
        CHECKING, 'DEBIT,12/02/2020,"Rent",-$1,234.56,ACH_DEBIT,100.00,',
        'DEBIT,12/02/2020,"Rent","-$1,234.56",ACH_DEBIT,100.00,'),
    "card": (
        CARD, "01/02/2024,01/02/2024,Rent,Home,Sale,-$1,234.56,",
        '01/02/2024,01/02/2024,Rent,Home,Sale,"-$1,234.56",'),
    "legacy 2009": (
        LEGACY_2009, 'DEBIT,20091201120000[0:GMT],"Rent",-1,234.56',
        'DEBIT,20091201120000[0:GMT],"Rent","-1,234.56"'),
    "legacy 2013": (
        LEGACY_2013, "Sale,12/2/13,12/3/13,Rent,-1,234.56",
        'Sale,12/2/13,12/3/13,Rent,"-1,234.56"'),
}


@pytest.mark.parametrize("layout", sorted(SPLITS))
def test_an_unquoted_amount_with_a_comma_is_rejected_never_read_shifted(layout: str) -> None:
    payload, split, quoted = SPLITS[layout]
    good = len(parse_chase_csv(load_bytes(payload), NAME).rows)
    parsed = parse_chase_csv(with_line(payload, split), NAME)
    assert len(parsed.rows) == good  # the others still land
    assert all(row["description"] != "Rent" for row in parsed.rows)
    [rejected] = parsed.rejected
    assert "Rent" in rejected.record
    assert "fields" in rejected.reason or "shifted" in rejected.reason or (
        "Balance" in rejected.reason)
    fixed = parse_chase_csv(with_line(payload, quoted), NAME)
    assert fixed.rejected == [] and fixed.rows[-1]["amount"] == -1234.56


def test_field_counts_are_checked_per_layout() -> None:
    card_extra = with_line(CARD, "01/02/2024,01/02/2024,Coffee,Food,Sale,-3.00,,note")
    [rejected] = parse_chase_csv(card_extra, NAME).rejected
    assert "8 fields where a card row has 7" in rejected.reason
    checking_short = with_line(CHECKING, 'DEBIT,12/02/2020,"Coffee",-3.00')
    [rejected] = parse_chase_csv(checking_short, NAME).rejected
    assert "4 fields where a checking row has 7 or 8" in rejected.reason
    checking_extra = with_line(CHECKING, 'DEBIT,12/02/2020,"Coffee",-3.00,DEBIT_CARD,1.00,,x')
    [rejected] = parse_chase_csv(checking_extra, NAME).rejected
    assert "(and an empty one after)" in rejected.reason
    legacy = with_line(LEGACY_2009, 'DEBIT,20091201120000[0:GMT],"Coffee",-3.00,x')
    [rejected] = parse_chase_csv(legacy, NAME).rejected
    assert "5 fields where a legacy_checking_2009 row has 4" in rejected.reason


def fmp_quote(**fields: object) -> list[dict[str, object]]:
    """The recorded FMP quote with some fields replaced, through JSON text as a body is
    (``1e400`` in JSON text is read as an infinity by ``json.loads``)."""
    text = load_bytes(QUOTE).decode()
    for key, value in fields.items():
        text = text.replace(f'"{key}": {json.loads(text)[0][key]}', f'"{key}": {value}')
    return json.loads(text)


@pytest.mark.parametrize(("fields", "column"), [
    ({"price": "1e400"}, "price"),
    ({"price": "-1e400"}, "price"),
    ({"dayHigh": "1e400"}, "day_high"),
    ({"change": "-1e400"}, "change"),
    ({"marketCap": "Infinity"}, "market_cap"),
])
def test_an_infinite_quote_is_quarantined_with_the_reason(
    fields: dict[str, str], column: str,
) -> None:
    # the parser refuses the record first, naming the provider's field ...
    rejected: list = []
    frame = parse_quotes(fmp_quote(**fields), "fmp", rejected=rejected)
    assert frame.empty
    [refused] = rejected
    [field] = fields
    assert f"field '{field}'" in refused.reason and "not a finite number" in refused.reason
    row = rejected_to_quarantine(refused, provider="fmp", table="market.quotes",
                                 partition_key="2026-11-20")
    assert json.loads(row.record)[field] in ("inf", "-inf")  # strict JSON, no Infinity
    # ... and a frame that bypassed it is still stopped by the schema's finite check
    good = parse_quotes(fmp_quote(), "fmp", rejected=[])
    result = validate("quotes", good.assign(**{column: math.inf}), provider="fmp",
                      table="market.quotes")
    assert result.valid.empty
    [record] = result.quarantined
    assert f"{column}: finite failed" in record.reason
    assert json.loads(record.record)[column] == "inf"  # the record is JSON


def test_nan_in_a_nullable_column_is_null_and_in_a_required_one_is_refused() -> None:
    nullable = validate("quotes", parse_quotes(fmp_quote(open="NaN"), "fmp", rejected=[]),
                        provider="fmp", table="market.quotes")
    assert len(nullable.valid) == 1 and pd.isna(nullable.valid["open"][0])
    rejected: list = []
    required = validate("quotes", parse_quotes(fmp_quote(price="NaN"), "fmp", rejected=rejected),
                        provider="fmp", table="market.quotes")
    # the client already reads a NaN price as missing; either way the row never lands
    assert required.valid.empty and (rejected or required.quarantined)


@pytest.mark.parametrize("dataset", sorted(SCHEMAS, key=str))
def test_every_double_column_of_every_schema_refuses_infinity(dataset: object) -> None:
    model = SCHEMAS[dataset]  # type: ignore[index]
    schema = model.to_schema()
    doubles = [name for name, kind in duckdb_columns(model).items() if kind == "DOUBLE"]
    for name in doubles:
        [finite] = [check for check in schema.columns[name].checks if check.name == "finite"]
        for value in (math.inf, -math.inf):
            assert not finite(pd.DataFrame({name: [1.0, value]}), name).check_passed
        # NaN is null: the column's own nullability decides
        assert finite(pd.DataFrame({name: [1.0, math.nan]}), name).check_passed
