"""Chase CSV imports: every export layout Chase has produced, read from an inbox folder.

Chase has no API for personal accounts; users download CSV exports and drop them in
``CHASE_IMPORT_DIR``. The layouts differ by account kind and era (see ``LAYOUTS``), and
their quirks are real: checking rows carry one more field than the header, a Balance may
be a single space, the 2009 export has no header and ``YYYYMMDDhhmmss[0:GMT]`` dates, the
2013 card export uses bare CR line endings and two-digit years. Columns are found by
header name, not position, so a reordered or trimmed export still reads.

Amounts keep Chase's sign, which is already "+ money in, - money out" for checking and
cards alike. Types (``TransactionType``) follow what the money did:

* checking ``Type``: ``ACH_CREDIT``/``DEPOSIT``/``WIRE_INCOMING``/``MISC_CREDIT`` ... →
  DEPOSIT; ``ACH_DEBIT``/``ACH_PAYMENT``/``WIRE_OUTGOING``/``BILLPAY``/``CHECK_PAID`` ... →
  WITHDRAWAL; ``ACCT_XFER`` → TRANSFER; ``FEE_TRANSACTION`` → FEE; ``DEBIT_CARD`` → OTHER
  (spending); ``REFUND_TRANSACTION`` → FEE when it reverses a fee (a positive FEE nets the
  fee out), else OTHER; an unknown type falls back on ``Details`` (``DSLIP`` deposit
  slip, ``CHECK``) and then on the sign (DEPOSIT / WITHDRAWAL);
* card ``Type``: ``Sale`` → OTHER (spending), ``Return`` → OTHER (its reversal, positive),
  ``Payment`` → TRANSFER (money moved from another account), ``Fee`` → FEE,
  ``Adjustment`` → OTHER;
* any row whose description names interest (``INTEREST PAYMENT``, ``PURCHASE INTEREST
  CHARGE``) is INTEREST, signed as Chase sends it.

A file that is not a Chase export is not an error for the run: it comes back as a
``RejectedRecord`` naming the file and the problem, and ``quarantine_file`` moves it to
``quarantine/`` beside the inbox (the contract's rule). Bad lines inside a good export are
rejected one by one; the good lines still land. Account and reference numbers inside
descriptions and rejected lines are masked (``accounts.scrub_account_numbers``).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from dashtam_pipeline.accounts import (
    TransactionType,
    decimal_value,
    market_midnight_utc,
    mask_account,
    mentions_interest,
    scrub_account_numbers,
    transactions_frame,
)
from dashtam_pipeline.clients.base import FetchRequest, FetchResult, RejectedRecord
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import ProviderSettings

#: ``Chase1234_Activity_20240131.CSV`` (also ``..._Activity20240131`` and ``Chase1234.CSV``).
_FILE_ACCOUNT = re.compile(r"^chase(\d{4})(?:[_\W]|$)", re.IGNORECASE)
_LEGACY_DATE = re.compile(r"^(\d{14})(?:\[([+-]?\d+(?:\.\d+)?)(?::\w*)?\])?$")
#: Lines of a rejected file kept in its quarantine record.
PREVIEW_LINES = 5
QUARANTINE_DIR = "quarantine"

_CHECKING_TYPES: Mapping[str, TransactionType] = {
    "ACH_CREDIT": TransactionType.DEPOSIT,
    "DEPOSIT": TransactionType.DEPOSIT,
    "CHECK_DEPOSIT": TransactionType.DEPOSIT,
    "ATM_DEPOSIT": TransactionType.DEPOSIT,
    "WIRE_INCOMING": TransactionType.DEPOSIT,
    "MISC_CREDIT": TransactionType.DEPOSIT,
    "QUICKPAY_CREDIT": TransactionType.DEPOSIT,
    "PARTNERFI_TO_CHASE": TransactionType.DEPOSIT,
    "ACH_DEBIT": TransactionType.WITHDRAWAL,
    "ACH_PAYMENT": TransactionType.WITHDRAWAL,
    "WIRE_OUTGOING": TransactionType.WITHDRAWAL,
    "BILLPAY": TransactionType.WITHDRAWAL,
    "CHECK_PAID": TransactionType.WITHDRAWAL,
    "ATM": TransactionType.WITHDRAWAL,
    "MISC_DEBIT": TransactionType.WITHDRAWAL,
    "QUICKPAY_DEBIT": TransactionType.WITHDRAWAL,
    "CHASE_TO_PARTNERFI": TransactionType.WITHDRAWAL,
    "LOAN_PMT": TransactionType.WITHDRAWAL,
    "ACCT_XFER": TransactionType.TRANSFER,
    "FEE_TRANSACTION": TransactionType.FEE,
    "DEBIT_CARD": TransactionType.OTHER,
}
_DETAILS_TYPES: Mapping[str, TransactionType] = {
    "DSLIP": TransactionType.DEPOSIT,
    "CHECK": TransactionType.WITHDRAWAL,
}
_CARD_TYPES: Mapping[str, TransactionType] = {
    "SALE": TransactionType.OTHER,
    "RETURN": TransactionType.OTHER,
    "PAYMENT": TransactionType.TRANSFER,
    "FEE": TransactionType.FEE,
    "ADJUSTMENT": TransactionType.OTHER,
}


@dataclass(frozen=True)
class Layout:
    """One Chase export layout: how to recognise its header and which columns hold what."""

    name: str
    #: lower-case header names that identify the layout (all must be present)
    marker: tuple[str, ...]
    date_column: str
    kind: str  # "checking" or "card": which type table applies
    #: headerless layouts give their columns by position instead
    positional: tuple[str, ...] = ()


LAYOUTS: tuple[Layout, ...] = (
    Layout("checking", ("details", "posting date", "description", "amount"),
           "posting date", "checking"),
    Layout("card", ("transaction date", "post date", "description", "amount"),
           "transaction date", "card"),
    Layout("legacy_card_2013", ("type", "trans date", "post date", "description", "amount"),
           "trans date", "card"),
)
LEGACY_CHECKING = Layout("legacy_checking_2009", (), "date", "checking",
                         positional=("details", "date", "description", "amount"))


@dataclass
class ParsedFile:
    """What one file yielded: its layout (None when it is not a Chase export), the rows,
    the rejected lines, and the reason the whole file was refused (if it was)."""

    file_name: str
    layout: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    file_error: str | None = None


@dataclass(frozen=True)
class RejectedFile:
    """A file refused as a whole, for ``quarantine_rejected``."""

    path: Path
    reason: str


# -- pure parsing (tests feed it the recorded exports) --------------------------------------
def account_from_file_name(file_name: str) -> str | None:
    """The last four digits Chase puts in its export names (``Chase1234_Activity_...``)."""
    match = _FILE_ACCOUNT.match(Path(file_name).name)
    return match.group(1) if match else None


def decode_export(data: bytes) -> str:
    """Chase exports are UTF-8 (sometimes with a BOM); very old ones are Windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_chase_csv(data: bytes, file_name: str, *, provider: str = "chase_file") -> ParsedFile:
    """One export → ``brokerage.transactions`` rows. Never raises for bad content: a file
    that is not a Chase export gets ``file_error``; a bad line becomes a rejected record."""
    text = decode_export(data)
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip()]
    if not lines:
        return ParsedFile(file_name, None, file_error=f"{file_name} is empty")
    header = _fields(lines[0][1])
    layout = _detect_layout(header)
    if layout is None:
        return ParsedFile(
            file_name, None,
            file_error=f"{file_name} is not a Chase export: unrecognised header "
            f"{_preview(lines[0][1])!r} (expected e.g. 'Details,Posting Date,Description,"
            "Amount,...' or 'Transaction Date,Post Date,Description,...')",
        )
    if layout.positional:
        columns, body = {name: i for i, name in enumerate(layout.positional)}, lines
    else:
        columns, body = _column_index(header), lines[1:]
    file_account = account_from_file_name(file_name)
    parsed = ParsedFile(file_name, layout.name)
    occurrences: Counter[tuple[str, ...]] = Counter()
    for number, line in body:
        try:
            row = _row(layout, columns, _fields(line), file_account)
        except ValueError as exc:
            parsed.rejected.append(RejectedRecord(
                f"{file_name} line {number}: {exc}", scrub_account_numbers(line)))
            continue
        identity = (row["account_id"], row["trade_date"].isoformat(),
                    " ".join(row["description"].split()), f"{row['amount']:.2f}")
        occurrences[identity] += 1
        row["transaction_id"] = transaction_id(*identity, occurrences[identity])
        parsed.rows.append(row | {"provider": provider, "source_file": file_name})
    if body and not parsed.rows:
        parsed.file_error = (f"{file_name} has a Chase {layout.name} header but none of its "
                             f"{len(body)} data lines parse (first: {parsed.rejected[0].reason})")
    return parsed


def transaction_id(account_id: str, day: str, description: str, amount: str,
                   occurrence: int) -> str:
    """Stable across re-imports and renamed files: a hash of what the row says, plus its
    occurrence among identical rows of the same file (two equal coffees on one day)."""
    digest = hashlib.sha256(
        "\x1f".join((account_id, day, description, amount, str(occurrence))).encode()
    ).hexdigest()
    return f"chase-{digest[:32]}"


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _detect_layout(header: Sequence[str]) -> Layout | None:
    names = {h.strip().lower() for h in header}
    for layout in LAYOUTS:
        if set(layout.marker) <= names:
            return layout
    if len(header) >= 4 and _LEGACY_DATE.match(header[1].strip()):
        return LEGACY_CHECKING
    return None


def _column_index(header: Sequence[str]) -> dict[str, int]:
    return {name.strip().lower(): i for i, name in enumerate(header)}


def _row(layout: Layout, columns: Mapping[str, int], values: Sequence[str],
         file_account: str | None) -> dict[str, Any]:
    def get(name: str) -> str:
        index = columns.get(name)
        return values[index].strip() if index is not None and index < len(values) else ""

    needed = max(columns[c] for c in ("description", "amount", layout.date_column)) + 1
    if len(values) < needed:
        raise ValueError(f"{len(values)} fields, expected at least {needed}")
    amount = decimal_value(get("amount"), "Amount")
    occurred, day = _when(get(layout.date_column))
    description = get("description")
    account = file_account or (get("card") if get("card").isdigit() else "")
    kind = _row_type(layout.kind, get("type"), get("details"), description, amount)
    return {
        "account_id": mask_account(account),
        "occurred_at": occurred,
        "trade_date": day,
        "type": kind.value,
        "symbol": None,
        "quantity": None,
        "price": None,
        "amount": float(amount),
        "currency": "USD",
        "description": scrub_account_numbers(description),
    }


def _when(value: str) -> tuple[dt.datetime, dt.date]:
    """``MM/DD/YYYY`` or ``M/D/YY`` (midnight in New York), or the 2009 export's
    ``YYYYMMDDhhmmss[offset:TZ]`` (an instant at that UTC offset)."""
    legacy = _LEGACY_DATE.match(value)
    if legacy:
        local = dt.datetime.strptime(legacy.group(1), "%Y%m%d%H%M%S")
        offset = dt.timezone(dt.timedelta(hours=float(legacy.group(2) or 0)))
        return local.replace(tzinfo=offset).astimezone(dt.UTC), local.date()
    for pattern in ("%m/%d/%Y", "%m/%d/%y"):
        try:
            day = dt.datetime.strptime(value, pattern).date()
        except ValueError:
            continue
        return market_midnight_utc(day), day
    raise ValueError(f"date {value!r} is not MM/DD/YYYY")


def _row_type(kind: str, chase_type: str, details: str, description: str,
              amount: Decimal) -> TransactionType:
    if mentions_interest(description):
        return TransactionType.INTEREST
    code = chase_type.upper()
    if kind == "card":
        return _CARD_TYPES.get(code, TransactionType.OTHER)
    if code == "REFUND_TRANSACTION":
        return TransactionType.FEE if "FEE" in description.upper() else TransactionType.OTHER
    if code in _CHECKING_TYPES:
        return _CHECKING_TYPES[code]
    if details.upper() in _DETAILS_TYPES:
        return _DETAILS_TYPES[details.upper()]
    return TransactionType.DEPOSIT if amount >= 0 else TransactionType.WITHDRAWAL


def _preview(text: str, limit: int = 120) -> str:
    return scrub_account_numbers(text[:limit]) or ""


def file_preview(data: bytes) -> str:
    """The first lines of a file as text, account numbers masked: a rejected file's record."""
    lines = decode_export(data).splitlines()[:PREVIEW_LINES]
    return scrub_account_numbers("\n".join(line[:300] for line in lines)) or ""


# -- the client ----------------------------------------------------------------------------
def inbox_files(inbox: Path) -> list[Path]:
    """The exports waiting in an inbox, by name (``.csv`` in any case): what the client
    imports and what the inbox sensor turns into partitions."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


class ChaseFileClient:
    """Reads the ``*.csv`` exports in the inbox — the files a run's partitions name, or all
    of them; not an HTTP client (no network, no credentials)."""

    slug: ClassVar[ProviderSlug] = ProviderSlug.CHASE_FILE

    def __init__(self, settings: ProviderSettings, *, inbox: Path, sandbox: bool = False) -> None:
        self.settings = settings
        self.inbox = Path(inbox)
        self.sandbox = sandbox or settings.sandbox
        #: Files refused by the last ``fetch_transactions``, for ``quarantine_rejected``.
        self.rejected_files: list[RejectedFile] = []

    @property
    def provider_label(self) -> str:
        """What lands in the ``provider`` column: ``chase_file`` or ``sandbox:chase_file``."""
        return f"sandbox:{self.slug.value}" if self.sandbox else self.slug.value

    @property
    def quarantine_dir(self) -> Path:
        """``quarantine/`` beside the inbox (the contract's rule for rejected files)."""
        return self.inbox.parent / QUARANTINE_DIR

    def files(self) -> list[Path]:
        """The exports waiting in the inbox, by name (``.csv`` in any case)."""
        return inbox_files(self.inbox)

    def requested_files(self, names: Sequence[str]) -> tuple[list[Path], list[str]]:
        """The inbox files a per-file run asks for, and the names no longer there (already
        quarantined by an earlier run, or removed by hand: nothing left to import)."""
        present, gone = [], []
        for name in dict.fromkeys(names):
            path = self.inbox / name
            # a name is a file of this inbox, never a path elsewhere
            if Path(name).name == name and path.is_file():
                present.append(path)
            else:
                gone.append(name)
        return present, gone

    def fetch_transactions(self, request: FetchRequest) -> FetchResult:
        """Every row of the requested exports (``request.files``; every export in the inbox
        when none is named). The request's window is not applied: an export is imported
        whole, and re-importing it never duplicates (stable ids)."""
        self.rejected_files = []
        rows: list[dict[str, Any]] = []
        rejected: list[RejectedRecord] = []
        notes: list[str] = []
        if request.files:
            paths, gone = self.requested_files(request.files)
            notes += [f"chase_file: {name} is no longer in the inbox; nothing to import"
                      for name in gone]
        else:
            paths = self.files()
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                rejected.append(RejectedRecord(f"{path.name} could not be read: {exc.strerror}",
                                               "", request.partition_key))
                continue
            parsed = parse_chase_csv(data, path.name, provider=self.provider_label)
            if parsed.file_error:
                self.rejected_files.append(RejectedFile(path, parsed.file_error))
                rejected.append(RejectedRecord(parsed.file_error, file_preview(data),
                                               request.partition_key))
                notes.append(f"chase_file: rejected {path.name}")
                continue
            rows += parsed.rows
            rejected += [RejectedRecord(r.reason, r.record, request.partition_key)
                         for r in parsed.rejected]
            notes.append(f"chase_file: {path.name} ({parsed.layout}): {len(parsed.rows)} rows"
                         + (f", {len(parsed.rejected)} lines rejected" if parsed.rejected
                            else ""))
        return FetchResult(_dedupe(transactions_frame(rows)), rejected, notes)

    def quarantine_file(self, path: Path, reason: str) -> Path:
        """Move a refused file to ``<inbox>/../quarantine/`` with a ``.reason.txt`` beside
        it; a name already there gets a timestamp suffix instead of being overwritten."""
        source = Path(path)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / source.name
        if target.exists():
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
            target = target.with_name(f"{source.stem}.{stamp}{source.suffix}")
        try:
            shutil.move(str(source), str(target))
        except OSError as exc:
            raise ProviderError(
                self.slug.value, ErrorKind.INVALID_FILE,
                f"could not move {source.name} to {self.quarantine_dir}: {exc.strerror}",
                retryable=True,
            ) from None
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        return target

    def quarantine_rejected(self) -> list[Path]:
        """Quarantine every file the last fetch refused; returns where they went."""
        moved = [self.quarantine_file(f.path, f.reason) for f in self.rejected_files
                 if f.path.exists()]
        self.rejected_files = []
        return moved

    def after_landed(self) -> list[str]:
        """Called by the ingestion once rows and quarantine records are written: only then
        are refused files moved out of the inbox, so a crash never loses a file."""
        return [f"chase_file: moved refused file {p.name} to {p.parent}"
                for p in self.quarantine_rejected()]

    def close(self) -> None:
        """Nothing to release (for symmetry with the HTTP clients)."""


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """The same export dropped twice (under two names) yields the same ids: keep one."""
    return frame.drop_duplicates(subset=["transaction_id"], keep="first").reset_index(drop=True)
