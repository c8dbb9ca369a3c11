"""Access to the recorded provider payloads (a verbatim copy of ``../shared/payloads``).

Every file under ``payloads/`` is a test case: ``conftest.py`` fails a full run of the
suite if a file there was never read by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAYLOAD_DIR = Path(__file__).parent / "payloads"
#: Files read through ``load_json``/``load_text``/``payload_path`` during the test session.
USED: set[str] = set()


def payload_path(relative: str, *, record: bool = True) -> Path:
    """The file's path. ``record=False`` for sweeps over every file of a folder (e.g.
    "no success body is classified as an error"): such a sweep is a check, but not the
    test case a payload is owed, so it does not count for the coverage rule."""
    path = PAYLOAD_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"no recorded payload {relative!r} under {PAYLOAD_DIR}")
    if record:
        USED.add(relative)
    return path


def load_json(relative: str, *, record: bool = True) -> Any:
    return json.loads(payload_path(relative, record=record).read_bytes())


def load_bytes(relative: str, *, record: bool = True) -> bytes:
    return payload_path(relative, record=record).read_bytes()


def all_payloads(prefix: str = "") -> list[str]:
    """Relative paths of every payload file (README excluded), optionally under a folder."""
    return sorted(
        str(p.relative_to(PAYLOAD_DIR))
        for p in PAYLOAD_DIR.rglob("*")
        if p.is_file()
        and p.name != "README.md"
        and str(p.relative_to(PAYLOAD_DIR)).startswith(prefix)
    )
