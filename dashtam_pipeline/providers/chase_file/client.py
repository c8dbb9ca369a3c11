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

Hostile input (the inbox is a folder anyone with the user's rights can drop things in):

* only regular files are read (``list_inbox``, ``read_export``): a symlink, FIFO, device,
  socket or folder is reported by name and kind and left where it is, never opened (the
  entry is ``lstat``-ed, and opened with ``O_NOFOLLOW | O_NONBLOCK`` then ``fstat``-ed,
  so one swapped in between is still refused). An export over ``MAX_FILE_BYTES`` is
  refused as a file. A file whose name is not valid UTF-8 (``unusable_name``) is refused
  as a file too, named with its bytes escaped: no column or log can hold the name;
* a rejected file is moved (``quarantine_file``) between folders opened without following
  links: a ``quarantine`` or ``quarantine/<USER_ID>`` that is a symlink (or a file) is
  refused in one sentence and the file stays in the inbox;
* every row must have its layout's field count (``Layout.trailing_empty``: checking rows
  carry one empty field more than their header): an unquoted ``$1,234.56`` splits into two
  fields and would shift every column after it, so such a row is rejected, never read
  shifted. Amounts and balances parse strictly (``parse_amount``): ``$1,234.56``,
  ``(12.34)``, ``-$5.00`` are read; ``1e400``, ``nan``, ``1,2,3``, other currencies are not;
* a last line with no line ending that does not have its layout's shape is a line cut
  mid-write: rejected with that reason (``ParsedFile.cut_line``), never a phantom row; the
  inbox sensor waits on such a file for a while first (``sensors.chase_inbox``). Real
  exports often end without a line ending, so a complete last line is a row as any other.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import hashlib
import math
import os
import re
import shutil
import stat
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from dashtam_pipeline.accounts import (
    TransactionType,
    market_midnight_utc,
    mask_account,
    mentions_interest,
    scrub_account_numbers,
    transactions_frame,
)
from dashtam_pipeline.assets.partitions import file_partition_key
from dashtam_pipeline.clients.base import FetchRequest, FetchResult, RejectedRecord
from dashtam_pipeline.domain.provider_connection import OPERATOR_USER_ID, PROVIDER_NAMESPACE
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import ProviderSettings, Settings

#: ``Chase1234_Activity_20240131.CSV`` (also ``..._Activity20240131`` and ``Chase1234.CSV``).
_FILE_ACCOUNT = re.compile(r"^chase(\d{4})(?:[_\W]|$)", re.IGNORECASE)
_LEGACY_DATE = re.compile(r"^(\d{14})(?:\[([+-]?\d+(?:\.\d+)?)(?::\w*)?\])?$")
#: Lines of a rejected file kept in its quarantine record.
PREVIEW_LINES = 5
QUARANTINE_DIR = "quarantine"
#: Largest export read. Years of Chase history are a few hundred KB; anything this big
#: is not an export, and reading it whole would only cost memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Integer digits an amount may have: more is no bank transaction, and beyond 15 a float
#: no longer holds the cents exactly (and ``9`` * 400 would be ``inf``).
MAX_AMOUNT_DIGITS = 15
#: Line endings of every Chase era (CRLF, LF, the 2013 export's bare CR), and nothing else:
#: ``str.splitlines`` would also split on form feeds, NEL or U+2028 inside a description.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_AMOUNT = re.compile(
    r"(?P<sign>[+-]?)\$?(?P<sign_after>[+-]?)"
    r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.(?P<cents>[0-9]+))?"
)

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
    #: empty fields a row may carry beyond its header (checking rows end in ``,,``: one
    #: more field than the header names)
    trailing_empty: int = 0

    def field_counts(self, header_fields: int) -> range:
        """How many fields a row of this layout has, given its header's count."""
        base = len(self.positional) if self.positional else header_fields
        return range(base, base + self.trailing_empty + 1)


LAYOUTS: tuple[Layout, ...] = (
    Layout("checking", ("details", "posting date", "description", "amount"),
           "posting date", "checking", trailing_empty=1),
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
    the rejected lines, the reason the whole file was refused (if it was), and the number
    of a last line cut off mid-write (no line ending, not its layout's shape), if any."""

    file_name: str
    layout: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    file_error: str | None = None
    cut_line: int | None = None


@dataclass(frozen=True)
class RefusedEntry:
    """An inbox entry that is not a regular file: never opened, reported, left in place.
    ``detail`` says why a folder is not read (it is not named as a user's folder is), so
    the person who made it can fix it."""

    name: str
    kind: str
    detail: str = ""

    @property
    def message(self) -> str:
        """What the run and sensor logs say (the name quoted, control characters and bytes
        that are not UTF-8 shown as escapes)."""
        detail = f" ({self.detail})" if self.detail else ""
        return (f"chase_file: {self.name!r} is a {self.kind}, not a regular file{detail}: "
                "not read, left where it is")


@dataclass
class InboxListing:
    """An inbox's regular ``.csv`` files, and the entries refused without being opened."""

    files: list[Path] = field(default_factory=list)
    refused: list[RefusedEntry] = field(default_factory=list)


class UnreadableExport(Exception):
    """An inbox entry ``read_export`` refused: not a regular file, or too large."""

    def __init__(self, name: str, reason: str, *, kind: str | None = None) -> None:
        super().__init__(reason)
        self.name, self.reason, self.kind = name, reason, kind


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
    """Chase exports are UTF-8 (sometimes with a BOM); very old ones are Windows-1252; a
    spreadsheet's "Unicode" re-save is UTF-16 with its BOM."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _numbered_lines(text: str) -> tuple[list[tuple[int, str]], bool]:
    """The non-blank lines with their 1-based numbers, and whether the last of them ends
    with a line break (blank lines after it count as one)."""
    parts = _LINE_BREAK.split(text)
    lines = [(number, line) for number, line in enumerate(parts, start=1) if line.strip()]
    terminated = bool(lines) and lines[-1][0] < len(parts)
    return lines, terminated


def parse_chase_csv(data: bytes, file_name: str, *, provider: str = "chase_file") -> ParsedFile:
    """One export → ``brokerage.transactions`` rows. Never raises for bad content: a file
    that is not a Chase export gets ``file_error``; a bad line becomes a rejected record."""
    text = decode_export(data)
    lines, terminated = _numbered_lines(text)
    if not lines:
        return ParsedFile(file_name, None, file_error=f"{file_name} is empty")
    try:
        header = _fields(lines[0][1])
    except ValueError as exc:
        header, header_error = [], str(exc)
    else:
        header_error = ""
    layout = _detect_layout(header)
    if layout is None:
        return ParsedFile(
            file_name, None,
            file_error=f"{file_name} is not a Chase export: unrecognised header "
            f"{_preview(lines[0][1])!r}{header_error and f' ({header_error})'} (expected "
            "e.g. 'Details,Posting Date,Description,Amount,...' or 'Transaction Date,Post "
            "Date,Description,...')",
        )
    if layout.positional:
        columns, body = {name: i for i, name in enumerate(layout.positional)}, lines
    else:
        columns, body = _column_index(header), lines[1:]
    counts = layout.field_counts(len(header))
    file_account = account_from_file_name(file_name)
    parsed = ParsedFile(file_name, layout.name)
    occurrences: Counter[tuple[str, ...]] = Counter()
    for number, line in body:
        try:
            row = _row(layout, columns, counts, _fields(line), file_account)
        except ValueError as exc:
            reason = f"{file_name} line {number}: {exc}"
            if number == body[-1][0] and not terminated:
                parsed.cut_line = number
                reason = (f"{file_name} line {number} is cut off (the file ends mid-line, "
                          f"with no line ending): {exc}")
            parsed.rejected.append(RejectedRecord(reason, scrub_account_numbers(line)))
            continue
        identity = (row["account_id"], row["trade_date"].isoformat(),
                    _normalized(row["description"]), f"{row['amount']:.2f}")
        occurrences[identity] += 1
        row["transaction_id"] = transaction_id(*identity, occurrences[identity])
        parsed.rows.append(row | {"provider": provider, "source_file": file_name})
    if body and not parsed.rows:
        parsed.file_error = (f"{file_name} has a Chase {layout.name} header but none of its "
                             f"{len(body)} data lines parse (first: {parsed.rejected[0].reason})")
    return parsed


def _normalized(description: str) -> str:
    """A description as the transaction's identity sees it: Unicode NFC (an editor's
    re-save may decompose ``É``), runs of whitespace as one space (Chase pads them)."""
    return " ".join(unicodedata.normalize("NFC", description).split())


def transaction_id(account_id: str, day: str, description: str, amount: str,
                   occurrence: int) -> str:
    """Stable across re-imports, renamed files and re-saves (line endings, encoding,
    ``-5`` for ``-5.00``): a hash of what the row says (masked account, trade date,
    normalized description, amount to the cent), plus its occurrence among identical rows
    of the same file (two equal coffees on one day). Never the file's name or bytes."""
    digest = hashlib.sha256(
        "\x1f".join((account_id, day, description, amount, str(occurrence))).encode()
    ).hexdigest()
    return f"chase-{digest[:32]}"


def _fields(line: str) -> list[str]:
    """One CSV line's fields; ``ValueError`` for what ``csv`` refuses (a field over its
    size limit)."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise ValueError(f"not a CSV line ({exc})") from None


def parse_amount(value: str, field_name: str = "Amount") -> Decimal:
    """A Chase money field, strictly: ``-59.17``, ``1,234.56``, ``$1,234.56``, ``-$5.00``,
    ``$-5.00``, ``(12.34)`` (negative), ``+3``, ``.50``. Anything else raises ``ValueError``
    naming the field: exponents (``1e400`` would be an infinity), ``nan``/``inf``,
    misplaced thousands separators (``1,2,3``), another currency's sign, non-ASCII digits,
    more than ``MAX_AMOUNT_DIGITS`` integer digits. Never a guess: a row whose amount is
    not one of these is rejected, not read as something else."""
    text = value.strip()
    negative = False
    if len(text) > 2 and text[0] == "(" and text[-1] == ")":
        text, negative = text[1:-1].strip(), True
    match = _AMOUNT.fullmatch(text)
    if match is None or not (match["whole"] or match["cents"]) or (
        match["sign"] and match["sign_after"]) or (negative and (
            match["sign"] or match["sign_after"])):
        other = [c for c in text if unicodedata.category(c) == "Sc" and c != "$"]
        if other:
            raise ValueError(f"{field_name} {value!r} is in another currency ({other[0]!r}); "
                             "Chase exports are in USD")
        raise ValueError(f"{field_name} is not a number: {value!r}")
    whole = match["whole"].replace(",", "")
    if len(whole.lstrip("0")) > MAX_AMOUNT_DIGITS:
        raise ValueError(f"{field_name} {value!r} is out of range (more than "
                         f"{MAX_AMOUNT_DIGITS} digits)")
    try:
        number = Decimal(f"{whole or '0'}.{match['cents'] or '0'}")
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        raise ValueError(f"{field_name} is not a number: {value!r}") from None
    if negative or "-" in (match["sign"], match["sign_after"]):
        number = -number
    if not math.isfinite(float(number)):  # pragma: no cover - bounded by the digit limit
        raise ValueError(f"{field_name} {value!r} is not a finite number")
    return number


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


def _row(layout: Layout, columns: Mapping[str, int], counts: range, values: Sequence[str],
         file_account: str | None) -> dict[str, Any]:
    def get(name: str) -> str:
        index = columns.get(name)
        return values[index].strip() if index is not None and index < len(values) else ""

    _check_shape(layout, counts, values, get)
    amount = parse_amount(get("amount"), "Amount")
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


def _check_shape(layout: Layout, counts: range, values: Sequence[str],
                 get: Callable[[str], str]) -> None:
    """A row has its layout's field count, its extra trailing fields are empty, and the
    columns around the amount still hold what they should: otherwise a field was split
    (an unquoted ``$1,234.56`` is two fields) or lost, and every column after it would be
    read shifted."""
    expected = (str(counts.start) if len(counts) == 1
                else f"{counts.start} or {counts.stop - 1}")
    hint = " (an unquoted amount such as $1,234.56 splits into two fields)"
    if len(values) not in counts:
        raise ValueError(f"{len(values)} fields where a {layout.name} row has {expected}"
                         + (hint if len(values) > counts.stop - 1 else ""))
    if any(v.strip() for v in values[counts.start:]):
        raise ValueError(f"{len(values)} fields where a {layout.name} row has "
                         f"{counts.start} (and an empty one after){hint}")
    balance = get("balance")
    if balance:
        parse_amount(balance, "Balance")
    chase_type = get("type")
    if chase_type and chase_type[-1].isdigit():
        raise ValueError(f"Type {chase_type!r} is a number: the columns are shifted{hint}")


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
def entry_kind(mode: int) -> str | None:
    """What an ``lstat`` mode is, for a message; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


# -- whose a file is: the inbox folder it is in --------------------------------------------
def user_folder_id(name: str) -> uuid.UUID | None:
    """The user a folder of the inbox belongs to: its name, when that is a UUID in its
    canonical (lower-case, hyphenated) spelling; any other folder is refused as before."""
    try:
        user = uuid.UUID(name)
    except ValueError:
        return None
    return user if str(user) == name else None


def owner_of(relative_name: str) -> uuid.UUID:
    """The user of an inbox file named relative to the inbox: ``<USER_ID>/<file>`` is that
    user's, a file dropped directly in the inbox is the operator's own."""
    folder, sep, _ = relative_name.partition("/")
    user = user_folder_id(folder) if sep else None
    return user or OPERATOR_USER_ID


def chase_connection_id(user_id: uuid.UUID) -> uuid.UUID:
    """A user's Chase "connection" (their inbox folder): derived from the user, so every
    process agrees on it without a table, and stable across runs."""
    return uuid.uuid5(PROVIDER_NAMESPACE, f"chase_file:{user_id}")


def relative_name(inbox: Path, path: Path) -> str:
    """An inbox file's name relative to the inbox (``<USER_ID>/<file>`` in a user folder)."""
    return Path(path).relative_to(inbox).as_posix()


def unusable_name(name: str) -> str | None:
    """Why an inbox file cannot be imported under its name, or None when it can.

    A name whose bytes are not UTF-8 reaches Python as lone surrogates (``os.fsdecode``:
    byte ``0xff`` is ``'\\udcff'``), which no UTF-8 column, Parquet file or log can hold:
    such a file is refused as a whole, named with its bytes escaped (``repr``), so the run
    goes on and the person who dropped it knows which file to rename."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return (f"the file name {name!r} is not valid UTF-8 (its undecodable bytes are shown "
                "as \\udcXX escapes): not imported; rename it and drop it in the inbox again")
    return None


def _folder_detail(name: str, *, top: bool) -> str:
    """Why a folder of the inbox is not read: only ``<USER_ID>/`` folders at the top are."""
    if not top:
        return "a user's folder holds files only"
    try:
        uuid.UUID(name)
    except ValueError:
        return "only a folder named by a user id, a UUID, is read"
    return "a user's folder is named by the user id in lower case"


def _list_entries(inbox: Path, prefix: str, listing: InboxListing, *, top: bool) -> None:
    try:
        names = sorted(os.listdir(inbox / prefix if prefix else inbox))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        shown = f"{prefix}/{name}" if prefix else name
        try:
            kind = entry_kind(os.lstat(inbox / shown).st_mode)
        except FileNotFoundError:  # gone between the listing and now
            continue
        if kind == "folder" and top and user_folder_id(name) is not None:
            _list_entries(inbox, name, listing, top=False)  # a user's own inbox folder
        elif kind is not None:
            detail = _folder_detail(name, top=top) if kind == "folder" else ""
            listing.refused.append(RefusedEntry(shown, kind, detail))
        elif name.lower().endswith(".csv"):
            listing.files.append(inbox / shown)


def list_inbox(inbox: Path) -> InboxListing:
    """The regular ``.csv`` files of an inbox (any case), by name, and every entry that is
    not a regular file (whatever its name), judged by ``lstat``: a symlink is a symlink,
    never the file it points to. Nothing is opened. A folder named by a user id
    (``<USER_ID>/``, one level, never a symlink) is that user's inbox: its files are listed
    too, as ``<USER_ID>/<file>``; any other folder is refused like before."""
    listing = InboxListing()
    _list_entries(Path(inbox), "", listing, top=True)
    return listing


def inbox_files(inbox: Path) -> list[Path]:
    """The exports waiting in an inbox, by name (regular ``.csv`` files in any case): what
    the client imports and what the inbox sensor turns into partitions."""
    return list_inbox(inbox).files


def read_export(path: Path) -> bytes:
    """An inbox file's bytes, only if it is a regular file of at most ``MAX_FILE_BYTES``.

    Opened with ``O_NOFOLLOW`` (a symlink fails instead of being followed) and
    ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a writer), then checked with
    ``fstat`` on the open descriptor before a byte is read: an entry swapped for a symlink,
    FIFO or device after ``list_inbox`` looked at it is refused all the same. Raises
    ``UnreadableExport`` for those, ``OSError`` for the file system's own errors."""
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if stat.S_ISLNK(_lstat_mode(path)):
            raise UnreadableExport(path.name, RefusedEntry(path.name, "symlink").message,
                                   kind="symlink") from None
        raise exc
    try:
        kind = entry_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise UnreadableExport(path.name, RefusedEntry(path.name, kind).message, kind=kind)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise UnreadableExport(
                    path.name, f"{path.name} is larger than {MAX_FILE_BYTES // 2**20} MiB: "
                    "not a Chase export")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


class ChaseFileClient:
    """Reads the ``*.csv`` exports in the inbox — the files a run's partitions name, or all
    of them; not an HTTP client (no network, no credentials)."""

    slug: ClassVar[ProviderSlug] = ProviderSlug.CHASE_FILE

    @classmethod
    def from_settings(cls, provider: ProviderSettings, settings: Settings) -> ChaseFileClient:
        """How ``clients.build_client`` makes a file import: no HTTP, resilience hooks or
        credentials, only its inbox (``CHASE_IMPORT_DIR``) and the sandbox flag."""
        return cls(provider, inbox=settings.chase_inbox, sandbox=settings.dashtam_sandbox)

    def __init__(self, settings: ProviderSettings, *, inbox: Path, sandbox: bool = False) -> None:
        self.settings = settings
        self.inbox = Path(inbox)
        self.sandbox = sandbox or settings.sandbox
        #: Files refused by the last ``fetch_transactions``, for ``quarantine_rejected``.
        self.rejected_files: list[RejectedFile] = []
        #: Why ``quarantine_rejected`` left files in the inbox (a refused quarantine folder).
        self.quarantine_refusals: list[str] = []

    @property
    def provider_label(self) -> str:
        """What lands in the ``provider`` column: ``chase_file`` or ``sandbox:chase_file``."""
        return f"sandbox:{self.slug.value}" if self.sandbox else self.slug.value

    @property
    def quarantine_dir(self) -> Path:
        """``quarantine/`` beside the inbox (the contract's rule for rejected files)."""
        return self.inbox.parent / QUARANTINE_DIR

    def files(self) -> list[Path]:
        """The exports waiting in the inbox, by name (regular ``.csv`` files)."""
        return inbox_files(self.inbox)

    def requested_files(self, names: Sequence[str]) -> tuple[list[Path], list[str]]:
        """The inbox files a per-file run asks for, and notes for the names it cannot read:
        no longer there (already quarantined by an earlier run, or removed by hand), or no
        longer a regular file (never opened). A name is an entry of this inbox, never a
        path elsewhere."""
        present: list[Path] = []
        notes: list[str] = []
        for name in dict.fromkeys(names):
            path = self.inbox / name
            folder, _, base = name.rpartition("/")
            if (folder and (user_folder_id(folder) is None or not _is_real_dir(
                    self.inbox / folder))) or os.path.basename(base) != base or base in (
                    "", ".", ".."):
                notes.append(f"chase_file: {name!r} is not a file name of the inbox; not read")
                continue
            try:
                kind = entry_kind(os.lstat(path).st_mode)
            except OSError:
                notes.append(f"chase_file: {name!r} is no longer in the inbox; nothing to "
                             "import")
                continue
            if kind is None:
                present.append(path)
            else:
                notes.append(RefusedEntry(name, kind).message)
        return present, notes

    def fetch_transactions(self, request: FetchRequest) -> FetchResult:
        """Every row of the requested exports (``request.files``; every export in the inbox
        when none is named). The request's window is not applied: an export is imported
        whole, and re-importing it never duplicates (stable ids)."""
        self.rejected_files = []
        rows: list[dict[str, Any]] = []
        rejected: list[RejectedRecord] = []
        notes: list[str] = []
        if request.files:
            paths, unreadable = self.requested_files(request.files)
            notes += unreadable
        else:
            listing = list_inbox(self.inbox)
            paths = listing.files
            notes += [entry.message for entry in listing.refused]
        for path in paths:
            try:
                data = read_export(path)
            except UnreadableExport as exc:
                notes.append(exc.reason if exc.kind else f"chase_file: {exc.reason}")
                if exc.kind is None:  # too large: a regular file, refused as a whole
                    self.rejected_files.append(RejectedFile(path, exc.reason))
                    rejected.append(RejectedRecord(exc.reason, "", None))
                continue
            except FileNotFoundError:
                notes.append(f"chase_file: {path.name!r} is no longer in the inbox; nothing "
                             "to import")
                continue
            except OSError as exc:
                notes.append(f"chase_file: {path.name!r} could not be read: {exc.strerror}")
                continue
            # The file's own partition key (the one its sensor registers for these bytes),
            # not the run's: a run over many files, or none, quarantines a bad line under
            # the same key as the file's own run, so a re-import lands on the same
            # ``ops.quarantine`` rows instead of adding new ones.
            name = relative_name(self.inbox, path)
            user = owner_of(name)
            owner = {"user_id": str(user), "connection_id": str(chase_connection_id(user))}
            own_key = file_partition_key(name, data)
            file_error = unusable_name(name)
            if file_error is None:
                parsed = parse_chase_csv(data, path.name, provider=self.provider_label)
                file_error = parsed.file_error
            if file_error:
                self.rejected_files.append(RejectedFile(path, file_error))
                rejected.append(RejectedRecord(file_error, file_preview(data), own_key,
                                               user_id=str(user)))
                notes.append(f"chase_file: rejected {name!r}: {file_error}")
                continue
            rows += [row | owner for row in parsed.rows]
            rejected += [RejectedRecord(r.reason, r.record, own_key, user_id=str(user))
                         for r in parsed.rejected]
            notes.append(f"chase_file: {name!r} ({parsed.layout}): {len(parsed.rows)} rows"
                         + (f", {len(parsed.rejected)} lines rejected" if parsed.rejected
                            else ""))
        return FetchResult(_dedupe(transactions_frame(rows)), rejected, notes)

    def quarantine_file(self, path: Path, reason: str) -> Path:
        """Move a refused file to ``<inbox>/../quarantine/`` (``quarantine/<USER_ID>/`` for
        a user's file) with a ``.reason.txt`` beside it; a name already there gets a
        timestamp suffix instead of being overwritten.

        Every folder on the way is opened relative to the one before it, never through a
        symlink (``_open_folder``), and the file is renamed between those open folders: a
        ``quarantine`` or ``quarantine/<USER_ID>`` planted as a link (to ``/etc``, to
        another user's folder) cannot redirect the move, even if it is swapped in after a
        check. Such a folder raises ``QuarantineRefused`` and the file stays where it is;
        the file system's own errors raise a retryable ``ProviderError``."""
        source = Path(path)
        user_folder = source.parent.name if source.parent != self.inbox else None
        shown = self.quarantine_dir / user_folder if user_folder else self.quarantine_dir
        try:
            with contextlib.ExitStack() as stack:
                inbox = _enter_inbox(stack, self.inbox)
                source_dir = inbox if user_folder is None else _enter_folder(
                    stack, user_folder, inbox, at=source.parent)
                target_dir = _enter_quarantine(stack, self.inbox, create=True)
                if user_folder is not None:
                    target_dir = _enter_folder(stack, user_folder, target_dir, at=shown,
                                               create=True)
                target = _free_name(source, target_dir)
                _move_between(source.name, source_dir, target, target_dir)
                _write_new_text(target + ".reason.txt", reason + "\n", target_dir)
        except QuarantineRefused as exc:
            raise QuarantineRefused(
                f"chase_file: {relative_name(self.inbox, source)!r} is left in the inbox, not "
                f"moved to quarantine: {exc} (a quarantine folder must be a real folder, "
                "never a link)") from None
        except OSError as exc:
            raise ProviderError(
                self.slug.value, ErrorKind.INVALID_FILE,
                f"could not move {source.name!r} to {shown}: {exc.strerror}",
                retryable=True,
            ) from None
        return shown / target

    def quarantine_rejected(self) -> list[Path]:
        """Quarantine every file the last fetch refused; returns where they went. A file
        whose quarantine folder is refused (``QuarantineRefused``) stays in the inbox, and
        the sentence saying so is kept in ``quarantine_refusals``."""
        moved: list[Path] = []
        self.quarantine_refusals = []
        for rejected in self.rejected_files:
            if not rejected.path.is_file() or rejected.path.is_symlink():
                continue
            try:
                moved.append(self.quarantine_file(rejected.path, rejected.reason))
            except QuarantineRefused as exc:
                self.quarantine_refusals.append(str(exc))
        self.rejected_files = []
        return moved

    def after_landed(self) -> list[str]:
        """Called by the ingestion once rows and quarantine records are written: only then
        are refused files moved out of the inbox, so a crash never loses a file. A refused
        quarantine folder is reported, not raised: the bad file's records are written and
        the good files landed, so the run goes on (the asset's check warns)."""
        moved = self.quarantine_rejected()
        return [f"chase_file: moved refused file {p.name!r} to {p.parent}" for p in moved] + (
            self.quarantine_refusals)

    def close(self) -> None:
        """Nothing to release (for symmetry with the HTTP clients)."""


class QuarantineRefused(Exception):
    """A quarantine folder that is not a real folder (a symlink, a file): nothing moved."""


_FOLDER_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))


def _open_folder(name: str, dir_fd: int | None, *, at: Path, follow: bool = False,
                 create: bool = False) -> int:
    """A descriptor of the folder ``name`` (relative to ``dir_fd``; ``at`` is its path, for
    messages), created first when ``create``. Unless ``follow``, a symlink is refused,
    never followed (``O_NOFOLLOW``): ``QuarantineRefused`` names what is there instead."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=dir_fd)
    flags = _FOLDER_FLAGS | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        kind = _kind_at(name, dir_fd)
        if kind not in ("folder", "missing"):
            raise QuarantineRefused(f"{at} is a {kind}, not a folder") from None
        raise
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # no O_DIRECTORY on this system
        os.close(fd)
        raise QuarantineRefused(f"{at} is a {_kind_at(name, dir_fd)}, not a folder")
    return fd


def _enter_folder(stack: contextlib.ExitStack, name: str, dir_fd: int | None, *, at: Path,
                  follow: bool = False, create: bool = False) -> int:
    """``_open_folder``, closed when ``stack`` closes."""
    fd = _open_folder(name, dir_fd, at=at, follow=follow, create=create)
    stack.callback(os.close, fd)
    return fd


def _enter_inbox(stack: contextlib.ExitStack, inbox: Path) -> int:
    """The inbox folder itself: the operator's setting, so followed if it is a link."""
    return _enter_folder(stack, str(inbox), None, at=inbox, follow=True)


def _enter_quarantine(stack: contextlib.ExitStack, inbox: Path, *, create: bool = False) -> int:
    """``quarantine/`` beside the inbox, never through a link (the inbox's parent, part of
    the operator's setting, is followed)."""
    parent = _enter_folder(stack, str(inbox.parent), None, at=inbox.parent, follow=True)
    return _enter_folder(stack, QUARANTINE_DIR, parent, at=inbox.parent / QUARANTINE_DIR,
                         create=create)


def _kind_at(name: str, dir_fd: int | None) -> str:
    """``entry_kind`` of ``name`` in ``dir_fd`` (``"regular file"`` for one, ``"missing"``
    when there is nothing)."""
    try:
        mode = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return "missing"
    return entry_kind(mode.st_mode) or "regular file"


def _free_name(source: Path, folder: int) -> str:
    """``source``'s name, or with a timestamp suffix when the quarantine folder already
    holds an entry of that name (a link counts: it is never replaced or followed)."""
    if _kind_at(source.name, folder) == "missing":
        return source.name
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{source.stem}.{stamp}{source.suffix}"


def _move_between(name: str, source_dir: int, target: str, target_dir: int) -> None:
    """Rename ``name`` from one open folder to another; across file systems (the inbox a
    mount of its own), copy it into a new file (never through a link) and then unlink
    it, so the file is whole in one place or the other."""
    try:
        os.rename(name, target, src_dir_fd=source_dir, dst_dir_fd=target_dir)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    reader = os.open(name, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0),
                     dir_fd=source_dir)
    try:
        writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o644,
                         dir_fd=target_dir)
        try:
            with os.fdopen(reader, "rb", closefd=False) as src, os.fdopen(
                    writer, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(writer)
        except BaseException:
            os.unlink(target, dir_fd=target_dir)
            raise
        finally:
            os.close(writer)
    finally:
        os.close(reader)
    os.unlink(name, dir_fd=source_dir)


def _write_new_text(name: str, text: str, dir_fd: int) -> None:
    """Write ``text`` to ``name`` in an open folder without following a symlink planted
    there (a ``.reason.txt`` must never overwrite the file a link points to)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(text)


@dataclass
class UserFilesErased:
    """What ``erase_user_files`` did: files removed per folder, the user's folders removed,
    and the entries it left alone (not regular files), each as a sentence."""

    removed: dict[Path, int] = field(default_factory=dict)
    folders_removed: list[Path] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(self.removed.values())


def erase_user_files(inbox: Path, user_id: uuid.UUID) -> UserFilesErased:
    """Delete a user's Chase files, so a later import cannot bring back erased rows: the
    regular files of ``<inbox>/<USER_ID>/`` and of ``quarantine/<USER_ID>/`` beside the
    inbox, then those folders once empty (for the operator's own user, also the regular
    ``.csv`` files dropped directly in the inbox and the regular files directly in
    ``quarantine/``, which are theirs by the contract).

    Nothing is followed: each folder is opened relative to its parent without following a
    link (``_open_folder``), so a ``<USER_ID>`` or ``quarantine`` link to another user's
    folder or to ``/etc`` is reported and left, never emptied; in a user's folder an entry
    that is not a regular file (a link, a FIFO, a folder) is reported and left too, and the
    folder with it. Other users' folders are never opened."""
    inbox = Path(inbox)
    quarantine = inbox.parent / QUARANTINE_DIR
    erased = UserFilesErased()
    places: list[tuple[Path, str, Callable[[str], bool] | None]] = [
        (inbox, str(user_id), None), (quarantine, str(user_id), None)]
    if user_id == OPERATOR_USER_ID:
        places += [(inbox, "", lambda name: name.lower().endswith(".csv")),
                   (quarantine, "", lambda name: True)]
    for parent, folder, loose in places:
        where = parent / folder if folder else parent
        try:
            with contextlib.ExitStack() as stack:
                top = (_enter_quarantine(stack, inbox) if parent == quarantine
                       else _enter_inbox(stack, inbox))
                if loose is not None:  # the operator's files among everyone's folders
                    _erase_files(top, where, loose, erased, report_others=False)
                elif _erase_files(_enter_folder(stack, folder, top, at=where), where,
                                  lambda _: True, erased, report_others=True):
                    os.rmdir(folder, dir_fd=top)
                    erased.folders_removed.append(where)
        except QuarantineRefused as exc:
            erased.left.append(f"{exc}: left alone")
        except FileNotFoundError:
            continue
        except OSError as exc:
            erased.left.append(f"{where} could not be emptied: {exc.strerror}")
    return erased


def _erase_files(folder: int, where: Path, wanted: Callable[[str], bool],
                 erased: UserFilesErased, *, report_others: bool) -> bool:
    """Unlink the regular files of an open folder whose names are ``wanted`` (judged by
    ``lstat``, never followed); whether nothing else was left in it. An entry left alone
    is reported when ``report_others`` (in a user's own folder, everything is theirs)."""
    emptied = True
    for name in sorted(os.listdir(folder)):
        kind = _kind_at(name, folder)
        if kind == "missing":
            continue
        if kind == "regular file" and wanted(name):
            os.unlink(name, dir_fd=folder)
            erased.removed[where] = erased.removed.get(where, 0) + 1
            continue
        emptied = False
        if report_others:
            erased.left.append(f"{os.fspath(where / name)!r} is a {kind}, not a regular "
                               "file: left alone")
    return emptied


def _is_real_dir(path: Path) -> bool:
    """A folder itself, never a symlink to one (judged by ``lstat``)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """The same export dropped twice (under two names) yields the same ids: keep one (per
    user's connection: two users' identical exports are two users' rows)."""
    subset = ["connection_id", "transaction_id"] if "connection_id" in frame else [
        "transaction_id"]
    return frame.drop_duplicates(subset=subset, keep="first").reset_index(drop=True)
