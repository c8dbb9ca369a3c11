"""How ``dashtam query`` writes a result: CSV, JSON or a terminal table, row batches in.

A result can be far larger than memory (``select * from range(60000000)``), so every format
takes the rows as an iterable of batches, as DuckDB streams them, and holds at most one batch
(the table: its bounded preview):

* CSV goes straight to the output, batch by batch; cells a spreadsheet would run as
  formulas are neutralised (``csv_cell``), newlines stay real (CSV quoting carries them);
* JSON is one valid document or nothing: rows are spooled to an anonymous temporary file
  (in memory while small) and copied out only once the last row arrived, so a query that
  fails half way (time or memory limit) never leaves a truncated document on stdout. Every
  value is JSON (NaN and infinities become ``null``: ``json.loads`` of the output and
  ``allow_nan=False`` both pass), and duplicate column names are made unique;
* the table shows at most ``TABLE_ROWS`` rows (column widths need the rows before the
  first line is printed) with a notice when there were more, and shows control and format
  characters as escapes, so a value cannot forge rows, recolour the terminal or reverse the
  text that follows it.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, TextIO

#: One batch of result rows, as ``cursor.fetchmany`` returns it.
Batch = Sequence[Sequence[Any]]

#: Rows a table shows: a screenful or a few hundred of them is what a person reads; more
#: is for ``--format csv`` or ``json``.
TABLE_ROWS = 1000
#: A JSON document is kept in memory up to this size, then spooled to a temporary file.
JSON_SPOOL_BYTES = 16 * 1024 * 1024

#: Leading characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- CSV -----------------------------------------------------------------------------------
def csv_cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet: a text cell that starts like a formula
    (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a leading ``'`` so Excel, Sheets
    and LibreOffice show it as text instead of running it (``=HYPERLINK(...)`` in a news
    title). Only text is touched: a DOUBLE of -12.5 arrives as a float and stays a number."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(columns: Sequence[str], batches: Iterable[Batch], out: TextIO) -> int:
    """The result as CSV (header first), written as the batches arrive, with every text
    cell, header included, neutralised by ``csv_cell``. Returns the number of rows written
    (the caller says how far a stream that failed got)."""
    writer = csv.writer(out)
    writer.writerow([csv_cell(c) for c in columns])
    written = 0
    for batch in batches:
        writer.writerows(_neutralised(batch))
        written += len(batch)
    return written


def _neutralised(batch: Batch) -> Batch:
    """``batch`` with ``csv_cell`` applied, copied only when some cell needs it: most
    batches have none, and one scan is cheaper than a call per cell."""
    if any(isinstance(v, str) and v.startswith(FORMULA_STARTS) for row in batch for v in row):
        return [[csv_cell(v) for v in row] for row in batch]
    return batch


# --- JSON ----------------------------------------------------------------------------------
def unique_names(columns: Sequence[str]) -> list[str]:
    """``columns`` with every repeated name made unique, the way DuckDB itself names them
    (``a``, ``a_1``, ``a_2``): JSON objects have one value per key, so ``select 1 as a, 2 as
    a`` would otherwise lose a column. Renaming keeps every value (a join's ``select *``
    repeats key columns all the time) where refusing would make the analyst spell out every
    column; a suffix never takes a name the query itself uses."""
    taken = set(columns)
    seen: set[str] = set()
    names = []
    for name in columns:
        unique = name
        if name in seen:
            suffix = 1
            while f"{name}_{suffix}" in taken:
                suffix += 1
            unique = f"{name}_{suffix}"
            taken.add(unique)
        seen.add(name)
        names.append(unique)
    return names


def json_value(value: Any) -> Any:
    """``value`` (nested lists, structs and maps included) as plain JSON: NaN and the
    infinities, which ``json`` would write as the invalid tokens ``NaN``/``Infinity``, become
    ``null`` (what JSON has for "no number"; a string would turn a numeric column into a
    mixed one), and map keys that JSON cannot hold (a DATE key) become their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def _json_object(names: Sequence[str], row: Sequence[Any]) -> str:
    """One row as a JSON object. ``json.dumps`` in strict mode is the fast path (C, no
    Python per value); only a row it refuses (a NaN, an odd map key) is cleaned first.
    Values JSON has no type for (DECIMAL, DATE, TIMESTAMP, UUID...) are written as text."""
    record = dict(zip(names, row, strict=True))
    try:
        return json.dumps(record, allow_nan=False, default=str)
    except (TypeError, ValueError):
        return json.dumps(json_value(record), allow_nan=False, default=str)


def write_json(columns: Sequence[str], batches: Iterable[Batch], out: TextIO) -> None:
    """The result as one JSON array of objects, one object per line, keyed by
    ``unique_names(columns)``. Nothing is written to ``out`` unless every batch arrived: an
    error while fetching leaves ``out`` untouched, never half a document."""
    names = unique_names(columns)
    with tempfile.SpooledTemporaryFile(
        max_size=JSON_SPOOL_BYTES, mode="w+", encoding="utf-8"
    ) as spool:
        spool.write("[")
        separator = "\n"
        for batch in batches:
            for row in batch:
                spool.write(separator + _json_object(names, row))
                separator = ",\n"
        spool.write("\n]\n" if separator != "\n" else "]\n")
        spool.seek(0)
        shutil.copyfileobj(spool, out)


# --- the terminal table --------------------------------------------------------------------
#: Character categories shown as escapes: controls (Cc: newline, tab, ESC), format (Cf:
#: U+202E RIGHT-TO-LEFT OVERRIDE, zero-width characters), lone surrogates (Cs), and the
#: Unicode line and paragraph separators (Zl, Zp), which terminals may break lines at.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(value: Any) -> str:
    """A cell for the terminal table, with control and format characters shown as escapes
    (``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``): a newline in a value would forge table rows,
    an ANSI escape could recolour, retitle or rewrite the analyst's terminal, and a bidi
    override reverses what follows. A backslash already in the text is left as it is (paths
    and regexes stay readable), so the table is for reading: CSV and JSON carry the exact
    values."""
    text = "" if value is None else str(value)
    if text.isprintable():  # no Cc/Cf/Cs/Zl/Zp: the common case, in C
        return text
    return "".join(
        _escape(c) if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in text
    )


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters two, combining marks
    none, so columns of Japanese names or accented text still line up."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One table line: cells padded to their column's display width, two spaces apart, the
    last one not padded (no trailing blanks beyond the value's own)."""
    padded = [c + " " * (w - display_width(c)) for c, w in zip(cells[:-1], widths, strict=False)]
    return "  ".join([*padded, *cells[-1:]]) + "\n"


def write_table(
    columns: Sequence[str], batches: Iterable[Batch], out: TextIO, *, limit: int = TABLE_ROWS
) -> None:
    """The result as an aligned table of at most ``limit`` rows, then the row count, or a
    notice that more rows were left out (the rest are not fetched: the query stops there)."""
    rows: list[list[str]] = []
    more = False
    for row in chain.from_iterable(batches):
        if len(rows) == limit:
            more = True
            break
        rows.append([printable(v) for v in row])
    header = [printable(c) for c in columns]
    widths = [max([display_width(h), *(display_width(r[i]) for r in rows)])
              for i, h in enumerate(header)]
    out.write(_line(header, widths))
    out.write(_line(["-" * w for w in widths], widths))
    for row in rows:
        out.write(_line(row, widths))
    if more:
        out.write(f"(the first {limit:,} rows; the query returned more: add LIMIT or an "
                  "aggregation, or use --format csv or json for every row)\n")
    else:
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
