"""A Chase export whose file NAME is not valid UTF-8 (``Chase1001_<0xff>.CSV``): Python
sees its byte as a lone surrogate, which no Parquet column can hold. Such a file is refused
as a whole with a sentence naming it (escaped), and quarantined; the good file beside it
lands and the run succeeds, its check warning. No string with a surrogate reaches the lake.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from dagster import DagsterInstance

from dashtam_pipeline.accounts import transactions_frame, without_surrogates
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline_tests.payloads import load_bytes
from dashtam_pipeline_tests.test_attack_inbox import CARD, client
from dashtam_pipeline_tests.test_chase_inbox_sensor import drop, inbox, query, run_partition

#: ``Chase1002_<0xff>.CSV`` as Python names it (``os.fsdecode``: byte 0xff → U+DCFF).
BAD_NAME = os.fsdecode(b"Chase1002_\xff.CSV")
GOOD_NAME = "Chase1001_Activity_20260430.CSV"


def other_export() -> bytes:
    """The card export with other dates: other bytes and other transactions than ``CARD``."""
    return load_bytes(CARD).replace(b"/2026", b"/2019").replace(b"/2025", b"/2018")


def has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def test_a_name_that_is_not_utf8_is_refused_and_quarantined_and_the_good_file_lands(
    instance: DagsterInstance,
) -> None:
    drop(GOOD_NAME, load_bytes(CARD))
    drop(BAD_NAME, other_export())

    report = run_partition(instance, None)  # what `dashtam materialize` runs

    assert report.ok, report.assets
    assert report.warned_checks  # the run succeeds, the asset's check warns
    landed = dict(query("select source_file, count(*) from brokerage.transactions group by 1"))
    assert landed == {GOOD_NAME: 6}
    quarantine = inbox().parent / "quarantine"
    assert not (inbox() / BAD_NAME).exists() and (quarantine / BAD_NAME).is_file()
    reason = (quarantine / f"{BAD_NAME}.reason.txt").read_text()
    assert "'Chase1002_\\udcff.CSV' is not valid UTF-8" in reason
    ((key, stored),) = query("select partition_key, reason from ops.quarantine")
    assert key.startswith("Chase1002_%FF.CSV@")
    assert "'Chase1002_\\udcff.CSV' is not valid UTF-8" in stored and not has_surrogate(stored)
    # the next run has nothing left to trip on
    assert run_partition(instance, None).ok


def test_the_client_refuses_the_file_in_one_sentence_naming_it(data_dir: Path) -> None:
    drop(BAD_NAME, other_export())
    chase = client()
    result = chase.fetch_transactions(FetchRequest())
    assert result.frame.empty
    [rejected] = result.rejected
    assert rejected.reason.startswith("the file name 'Chase1002_\\udcff.CSV' is not valid UTF-8")
    assert rejected.reason.count(". ") == 0 and not has_surrogate(rejected.reason)
    assert not any(has_surrogate(note) for note in result.notes)
    [moved] = chase.quarantine_rejected()
    assert moved.name == BAD_NAME


def test_no_brokerage_string_with_a_surrogate_reaches_arrow() -> None:
    row = {"user_id": "u", "connection_id": "c", "provider": "chase_file",
           "account_id": "****1234", "transaction_id": "chase-1",
           "occurred_at": "2024-01-02T05:00:00Z", "trade_date": None, "type": "OTHER",
           "amount": -1.0, "currency": "USD", "description": "x\ud800y",
           "source_file": BAD_NAME}
    frame = transactions_frame([row])
    assert frame.loc[0, "source_file"] == "Chase1002_\\udcff.CSV"
    assert frame.loc[0, "description"] == "x\\ud800y"
    pa.Table.from_pandas(frame)  # Arrow takes it (it raised UnicodeEncodeError before)
    assert without_surrogates("Relevé 口座") == "Relevé 口座"
