"""Chase CSV imports: every recorded export layout, stable ids across re-imports and renames,
row-level and file-level rejection, and quarantine beside the inbox."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dashtam_pipeline.accounts import mask_account, scrub_account_numbers
from dashtam_pipeline.assets.partitions import file_partition_key
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.providers.chase_file.client import (
    ChaseFileClient,
    account_from_file_name,
    parse_chase_csv,
)
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.brokerage import TransactionSchema
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.client_helpers import owned
from dashtam_pipeline_tests.payloads import all_payloads, load_bytes

D = dt.date
CHECKING_FULL = "chase_file/checking_full_file_ArthurFDLR_beancount-chase.csv"
PERSONAL_CARD = "chase_file/credit_card_personal_test_fixture_sample.csv"
CARD_EXCERPT = "chase_file/credit_card_personal_code_comment_excerpt.csv"
LEGACY_2009 = "chase_file/legacy_2009_checking_noheader_reckon.csv"
LEGACY_2013 = "chase_file/legacy_2013_credit_card_jdmullin_ledger.csv"
MTLYNCH = "chase_file/mtlynch_beancount_chase_bank/"
EXPORT_NAME = "Chase1234_Activity_20240131.CSV"

#: file → (layout, [(trade_date, amount, type), ...]) for every recorded export
EXPECTED: dict[str, tuple[str, list[tuple[dt.date, float, str]]]] = {
    CHECKING_FULL: ("checking", [
        (D(2020, 12, 1), -59.17, "OTHER"), (D(2020, 10, 13), 100.00, "DEPOSIT"),
        (D(2020, 10, 5), -11.78, "OTHER"), (D(2020, 10, 5), 465.53, "DEPOSIT")]),
    PERSONAL_CARD: ("card", [
        (D(2026, 4, 26), 3.00, "TRANSFER"), (D(2026, 4, 19), -3.00, "OTHER"),
        (D(2026, 4, 2), 30.00, "TRANSFER"), (D(2026, 2, 22), -30.00, "OTHER"),
        (D(2025, 8, 23), -74.16, "OTHER"), (D(2025, 8, 18), -14.31, "OTHER")]),
    CARD_EXCERPT: ("card", [
        (D(2023, 12, 15), -5.00, "OTHER"), (D(2023, 12, 15), 305.00, "TRANSFER"),
        (D(2023, 11, 15), -5.00, "OTHER"), (D(2023, 11, 15), 1874.66, "TRANSFER")]),
    LEGACY_2009: ("legacy_checking_2009", [
        (D(2009, 12, 24), -85.00, "WITHDRAWAL"), (D(2009, 12, 24), -20.00, "WITHDRAWAL"),
        (D(2009, 12, 24), -7.00, "WITHDRAWAL"), (D(2009, 12, 23), 3520.00, "DEPOSIT"),
        (D(2009, 12, 23), 1558.52, "DEPOSIT"), (D(2009, 12, 21), -12.23, "WITHDRAWAL"),
        (D(2009, 12, 14), -20.96, "WITHDRAWAL"), (D(2009, 12, 11), -116.22, "WITHDRAWAL"),
        (D(2009, 12, 10), 2105.00, "DEPOSIT")]),
    LEGACY_2013: ("legacy_card_2013", [(D(2013, 8, 31), -54.80, "OTHER")]),
    MTLYNCH + "checking__test_doesnt_title_case_if_asked_not_to.csv": (
        "checking", [(D(2023, 8, 31), -15.00, "FEE")]),
    MTLYNCH + "checking__test_extracts_cash_redemption_deposit.csv": (
        "checking", [(D(2025, 12, 5), 7.76, "DEPOSIT")]),
    MTLYNCH + "checking__test_extracts_credit.csv": (
        "checking", [(D(2021, 9, 3), 63.84, "DEPOSIT")]),
    MTLYNCH + "checking__test_extracts_debit_card_transaction.csv": (
        "checking", [(D(2025, 1, 5), -10.00, "OTHER")]),
    MTLYNCH + "checking__test_extracts_foreign_exchange_wire_fee.csv": (
        "checking", [(D(2025, 1, 27), -5.00, "FEE")]),
    MTLYNCH + "checking__test_extracts_international_wire_transfer.csv": (
        "checking", [(D(2025, 1, 27), -108.15, "WITHDRAWAL")]),
    MTLYNCH + "checking__test_extracts_monthly_account_fee.csv": (
        "checking", [(D(2023, 8, 31), -15.00, "FEE")]),
    MTLYNCH + "checking__test_extracts_monthly_account_fee_refund.csv": (
        "checking", [(D(2024, 2, 1), 15.00, "FEE")]),
    MTLYNCH + "checking__test_extracts_monthly_account_fee_refund_2.csv": (
        "checking", [(D(2025, 4, 18), 15.00, "FEE")]),
    MTLYNCH + "checking__test_extracts_outbound_transfer.csv": (
        "checking", [(D(2021, 9, 13), -2500.00, "TRANSFER")]),
    MTLYNCH + "checking__test_extracts_real_time_payment_fee.csv": (
        "checking", [(D(2024, 6, 3), -1.75, "FEE")]),
    MTLYNCH + "checking__test_extracts_same_day_ach_transaction.csv": (
        "checking", [(D(2024, 5, 24), -87.50, "WITHDRAWAL")]),
    MTLYNCH + "checking__test_extracts_simple_ach_credit.csv": (
        "checking", [(D(2025, 9, 9), 85.59, "DEPOSIT")]),
    MTLYNCH + "checking__test_extracts_standard_ach_transaction.csv": (
        "checking", [(D(2024, 11, 6), -37.50, "WITHDRAWAL"), (D(2024, 12, 2), -2.50, "FEE")]),
    MTLYNCH + "checking__test_identifies_chase_file.csv": (
        "checking", [(D(2021, 9, 13), -2500.00, "TRANSFER")]),
    MTLYNCH + "checking__test_matches_account_when_pattern_splits_across_payee_and_narration.csv": (
        "checking", [(D(2021, 11, 6), -357.51, "WITHDRAWAL")]),
    MTLYNCH + "credit__test_doesnt_title_case_if_asked_not_to.csv": (
        "card", [(D(2021, 10, 29), -25.35, "OTHER")]),
    MTLYNCH + "credit__test_extracts_payment.csv": (
        "card", [(D(2021, 11, 4), 4000.00, "TRANSFER")]),
    MTLYNCH + "credit__test_extracts_refund.csv": ("card", [(D(2021, 1, 6), 413.54, "OTHER")]),
    MTLYNCH + "credit__test_extracts_spend.csv": ("card", [(D(2021, 10, 29), -25.35, "OTHER")]),
    MTLYNCH + "credit__test_extracts_spend_with_matching_transaction.csv": (
        "card", [(D(2021, 10, 29), -25.35, "OTHER")]),
    MTLYNCH + "credit__test_identifies_chase_credit_file.csv": (
        "card", [(D(2021, 1, 6), -20.54, "OTHER")]),
    MTLYNCH + "credit__test_identifies_chase_credit_file_first_statement.csv": (
        "card", [(D(2021, 1, 6), -20.54, "OTHER")]),
}


def make_client(inbox: Path, *, sandbox: bool = False) -> ChaseFileClient:
    settings = load_settings(dashtam_sandbox=False).provider("chase_file")
    return ChaseFileClient(settings, inbox=inbox, sandbox=sandbox)


def drop(inbox: Path, payload: str, name: str = EXPORT_NAME) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / name
    target.write_bytes(load_bytes(payload))
    return target


def test_every_recorded_export_has_an_expectation() -> None:
    assert set(all_payloads("chase_file/")) == set(EXPECTED)


@pytest.mark.parametrize("payload", sorted(EXPECTED))
def test_every_layout_imports_dates_signed_amounts_and_types(payload: str) -> None:
    layout, expected = EXPECTED[payload]
    parsed = parse_chase_csv(load_bytes(payload), EXPORT_NAME)
    assert (parsed.layout, parsed.file_error, parsed.rejected) == (layout, None, [])
    got = [(r["trade_date"], r["amount"], r["type"]) for r in parsed.rows]
    assert got == expected
    assert {r["account_id"] for r in parsed.rows} == {"****1234"}
    assert {r["currency"] for r in parsed.rows} == {"USD"}
    assert {r["source_file"] for r in parsed.rows} == {EXPORT_NAME}


def test_checking_quirks_padding_eight_fields_and_blank_balance() -> None:
    rows = parse_chase_csv(load_bytes(CHECKING_FULL), EXPORT_NAME).rows
    assert rows[0]["description"] == "Desc Debit 2             11/30"
    # the 10-digit reference number is masked, the rest of the description kept
    assert rows[3]["description"] == "Desc Credit 1    ****6878       WEB ID: ****3521"
    blank_balance = parse_chase_csv(
        load_bytes(MTLYNCH + "checking__test_extracts_simple_ach_credit.csv"), EXPORT_NAME)
    assert blank_balance.rows[0]["amount"] == 85.59


def test_legacy_2009_gmt_timestamps_and_2013_two_digit_years() -> None:
    legacy = parse_chase_csv(load_bytes(LEGACY_2009), "chase.csv").rows
    assert str(legacy[0]["occurred_at"]) == "2009-12-24 12:00:00+00:00"
    assert legacy[1]["description"] == "CHECK 2656"
    card = parse_chase_csv(load_bytes(LEGACY_2013), "chase.csv").rows[0]
    assert (card["trade_date"], card["description"]) == (D(2013, 8, 31), "FRED MEYER #0685")
    assert str(card["occurred_at"]) == "2013-08-31 04:00:00+00:00"  # midnight in New York


def test_account_comes_from_the_file_name_then_the_card_column() -> None:
    assert account_from_file_name("Chase1234_Activity_20240131.CSV") == "1234"
    assert account_from_file_name("chase9876_Activity20240131.csv") == "9876"
    assert account_from_file_name("statement.csv") is None
    business = load_bytes(MTLYNCH + "credit__test_extracts_refund.csv")
    assert parse_chase_csv(business, "export.csv").rows[0]["account_id"] == "****1234"
    assert parse_chase_csv(load_bytes(PERSONAL_CARD), "export.csv").rows[0][
        "account_id"] == "****"


def test_inbox_import_validates_against_the_schema(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "chase"
    drop(inbox, CHECKING_FULL, "Chase1234_Activity_20201201.CSV")
    drop(inbox, PERSONAL_CARD, "Chase5678_Activity_20260430.csv")
    drop(inbox, LEGACY_2013, "old_card.CSV")
    (inbox / "notes.txt").write_text("not an export")
    result = make_client(inbox).fetch_transactions(FetchRequest())
    frame = TransactionSchema.validate(owned(result.frame))
    assert list(result.frame.columns) == column_names(TransactionSchema)
    assert len(frame) == 4 + 6 + 1 and result.rejected == []
    assert frame.groupby("account_id").size().to_dict() == {
        "****": 1, "****1234": 4, "****5678": 6}
    assert set(frame["provider"]) == {"chase_file"}
    assert set(frame["source_file"]) == {
        "Chase1234_Activity_20201201.CSV", "Chase5678_Activity_20260430.csv", "old_card.CSV"}
    assert frame["symbol"].isna().all() and frame["quantity"].isna().all()
    assert frame["amount"].sum() == pytest.approx(494.58 - 88.47 - 54.8)
    assert make_client(inbox, sandbox=True).provider_label == "sandbox:chase_file"


def test_the_same_export_twice_or_renamed_yields_the_same_ids(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, CHECKING_FULL, "Chase1234_Activity_20201201.CSV")
    first = make_client(inbox).fetch_transactions(FetchRequest()).frame
    again = make_client(inbox).fetch_transactions(FetchRequest()).frame
    assert list(first["transaction_id"]) == list(again["transaction_id"])
    # a second download of the same export under a new name: same ids, one row each
    drop(inbox, CHECKING_FULL, "Chase1234_Activity_20201215.CSV")
    both = make_client(inbox).fetch_transactions(FetchRequest()).frame
    assert len(both) == 4 and set(both["transaction_id"]) == set(first["transaction_id"])
    other_account = parse_chase_csv(load_bytes(CHECKING_FULL), "Chase9999_Activity.CSV").rows
    assert not {r["transaction_id"] for r in other_account} & set(first["transaction_id"])


def test_identical_rows_in_one_file_get_distinct_ids() -> None:
    data = load_bytes(MTLYNCH + "credit__test_extracts_spend.csv")
    line = data.splitlines()[1]
    parsed = parse_chase_csv(data.rstrip(b"\n") + b"\n" + line + b"\n", EXPORT_NAME)
    assert [r["amount"] for r in parsed.rows] == [-25.35, -25.35]
    assert parsed.rows[0]["transaction_id"] != parsed.rows[1]["transaction_id"]
    single = parse_chase_csv(data, EXPORT_NAME).rows[0]
    assert single["transaction_id"] == parsed.rows[0]["transaction_id"]


def test_bad_lines_are_rejected_and_good_lines_still_land() -> None:
    data = load_bytes(CHECKING_FULL).rstrip(b"\n") + (
        b"\nDEBIT,13/45/2020,\"Transfer to 123456789012\",-1.00,ACH_DEBIT,1.00,,"
        b"\nCREDIT,10/01/2020,\"Bad amount\",twelve,ACH_CREDIT,1.00,,\n")
    parsed = parse_chase_csv(data, EXPORT_NAME)
    assert len(parsed.rows) == 4 and parsed.file_error is None
    assert [r.reason for r in parsed.rejected] == [
        f"{EXPORT_NAME} line 6: date '13/45/2020' is not MM/DD/YYYY",
        f"{EXPORT_NAME} line 7: Amount is not a number: 'twelve'",
    ]
    assert "123456789012" not in parsed.rejected[0].record
    assert "Transfer to ****9012" in parsed.rejected[0].record


def test_a_non_chase_csv_is_rejected_and_quarantined_beside_the_inbox(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "chase"
    drop(inbox, LEGACY_2013, "Chase1234_Activity_20130901.CSV")
    bogus = inbox / "bank_of_elsewhere.csv"
    bogus.write_text("Date,Payee,Account,Amount\n2024-01-02,Coffee,9876543210,-3.50\n")
    client = make_client(inbox)
    result = client.fetch_transactions(FetchRequest(partition_key="2024-01-02"))
    assert len(result.frame) == 1  # the good export still lands
    [rejected] = result.rejected
    assert rejected.reason.startswith("bank_of_elsewhere.csv is not a Chase export")
    assert "Date,Payee,Account,Amount" in rejected.reason
    assert rejected.record.splitlines()[0] == "Date,Payee,Account,Amount"
    assert "9876543210" not in rejected.record
    # quarantined under the file's own partition key, whatever run read it
    assert rejected.partition_key == file_partition_key(bogus.name, bogus.read_bytes())
    [moved] = client.quarantine_rejected()
    assert moved == tmp_path / "inbox" / "quarantine" / "bank_of_elsewhere.csv"
    assert not bogus.exists() and moved.exists()
    assert "not a Chase export" in (moved.parent / "bank_of_elsewhere.csv.reason.txt").read_text()
    # a second bad file of the same name does not overwrite the first
    bogus.write_text("hello\n")
    again = client.quarantine_file(bogus, "not a Chase export")
    assert again != moved and again.parent == moved.parent and moved.exists()


def test_a_chase_header_with_no_parseable_row_rejects_the_file() -> None:
    data = b"Transaction Date,Post Date,Description,Category,Type,Amount,Memo\nx,y,z,,Sale,abc,\n"
    parsed = parse_chase_csv(data, "broken.csv")
    assert parsed.rows == []
    assert parsed.file_error is not None and "none of its 1 data lines parse" in parsed.file_error
    assert parse_chase_csv(b"", "empty.csv").file_error == "empty.csv is empty"


def test_a_missing_inbox_is_an_empty_import(tmp_path: Path) -> None:
    result = make_client(tmp_path / "nowhere").fetch_transactions(FetchRequest())
    assert result.frame.empty and result.rejected == []
    assert list(result.frame.columns) == column_names(TransactionSchema)


def test_account_numbers_are_masked_but_option_symbols_survive() -> None:
    wire = parse_chase_csv(load_bytes(
        MTLYNCH + "checking__test_extracts_international_wire_transfer.csv"), EXPORT_NAME)
    description = wire.rows[0]["description"]
    assert "DE98850554080404114242" not in description and "BEN:/DE****4242" in description
    assert mask_account("12345678") == "****5678"
    assert mask_account("********") == "****"
    assert mask_account("aba134b6-217d-4fd2-b460-e3c80bbfb9b4") == "****b9b4"
    assert scrub_account_numbers("BUY 1 HIMS  250801P00046000") == "BUY 1 HIMS  250801P00046000"
    assert scrub_account_numbers("fee by PA33WXN7OD4M", known=["PA33WXN7OD4M"]) == (
        "fee by ****OD4M")
