"""Idempotent under renames, re-saves and re-runs: the same transaction of the same account
is one row whatever the file's name, line endings, encoding or Unicode normalization, and
importing again (one file's run, or `dashtam materialize` over every file) adds no row to
``brokerage.transactions`` nor to ``ops.quarantine``."""

from __future__ import annotations

import re
import unicodedata

import pytest
from dagster import DagsterInstance

from dashtam_pipeline.providers.chase_file.client import parse_chase_csv
from dashtam_pipeline.validation import QuarantineRecord
from dashtam_pipeline_tests.payloads import load_bytes
from dashtam_pipeline_tests.test_chase_inbox_sensor import (
    drop,
    query,
    run_partition,
    tick,
)

CARD = "chase_file/credit_card_personal_test_fixture_sample.csv"
CAFE = "CAFÉ DÉJÀ VU"  # what an editor may re-save decomposed (NFD)


def export() -> bytes:
    """The recorded card export (LF) with one accented merchant added."""
    return load_bytes(CARD) + f"08/01/2025,08/02/2025,{CAFE},Food & Drink,Sale,-4.50,\n".encode()


def resaved(data: bytes, line_end: bytes, *, nfd: bool = False, utf16: bool = False) -> bytes:
    text = re.sub(rb"\r\n|\r|\n", line_end, data).decode()
    if nfd:
        text = unicodedata.normalize("NFD", text)
    return text.encode("utf-16") if utf16 else text.encode()


RESAVES = {
    "Chase1234_Activity_20250901 (CRLF copy).CSV": dict(line_end=b"\r\n"),
    "chase1234 activity.csv": dict(line_end=b"\r"),
    "Chase1234_resaved_on_a_mac.csv": dict(line_end=b"\n", nfd=True),
    "Chase1234_unicode_text.csv": dict(line_end=b"\r\n", utf16=True),
}


def test_a_resave_under_another_name_is_the_same_transactions() -> None:
    original = parse_chase_csv(export(), "Chase1234_Activity_20250901.CSV").rows
    for name, how in RESAVES.items():
        again = parse_chase_csv(resaved(export(), **how), name).rows  # type: ignore[arg-type]
        assert [r["transaction_id"] for r in again] == [
            r["transaction_id"] for r in original], name


def transactions() -> list[tuple]:
    return query("select transaction_id, count(*) from brokerage.transactions group by 1 "
                 "order by 1")


def quarantine_ids() -> list[str]:
    return sorted(row[0] for row in query("select quarantine_id from ops.quarantine"))


@pytest.mark.integration
def test_resaves_under_other_names_land_no_duplicate(instance: DagsterInstance) -> None:
    drop("Chase1234_Activity_20250901.CSV", export())
    first = tick(instance, None)
    assert run_partition(instance, first.run_requests[0].partition_key).ok
    landed = transactions()
    assert len(landed) == 7 and {count for _, count in landed} == {1}

    for name, how in RESAVES.items():
        drop(name, resaved(export(), **how))  # type: ignore[arg-type]
    result = tick(instance, first.cursor)
    assert len(result.run_requests) == len(RESAVES)  # other bytes: imported, but...
    for request in result.run_requests:
        assert run_partition(instance, request.partition_key).ok
    assert transactions() == landed  # ...the same seven transactions, once each
    assert run_partition(instance, None).ok  # and every file again at once
    assert transactions() == landed


@pytest.mark.integration
def test_reimporting_adds_no_quarantine_rows(instance: DagsterInstance) -> None:
    bad = b"01/02/2024,01/02/2024,BROKEN,Shopping,Sale,twelve,\n"
    drop("Chase1234_Activity_20240131.CSV", load_bytes(CARD) + bad)
    drop("Chase5678_Activity_20240131.CSV", export() + bad)
    result = tick(instance, None)
    assert len(result.run_requests) == 2
    for request in result.run_requests:  # as the sensor's runs do: one file each
        assert run_partition(instance, request.partition_key).ok
    once = quarantine_ids()
    assert len(once) == 2

    assert run_partition(instance, None).ok  # `dashtam materialize`: both in one run
    assert run_partition(instance, result.run_requests[0].partition_key).ok
    assert quarantine_ids() == once
    keys = {row[0] for row in query("select partition_key from ops.quarantine")}
    assert keys == {r.partition_key for r in result.run_requests}  # each file's own key


def test_a_quarantine_id_depends_on_what_and_why_not_when() -> None:
    def record(**changes: str) -> QuarantineRecord:
        fields = dict(provider="chase_file", dataset="brokerage.transactions",
                      partition_key="f.csv@0123456789ab", reason="bad", record="a,b")
        return QuarantineRecord(**(fields | changes))  # type: ignore[arg-type]

    assert record().quarantine_id == record().quarantine_id  # another time, same id
    for change in ("provider", "dataset", "partition_key", "reason", "record"):
        assert record(**{change: "other"}).quarantine_id != record().quarantine_id
