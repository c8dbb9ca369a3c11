"""Access to the recorded provider payloads (a verbatim copy of ``../shared/payloads``).

Every file under ``payloads/`` is a test case: ``dashtam_pipeline_tests/test_payload_coverage.py``
fails if a file is added there without a test that reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAYLOAD_DIR = Path(__file__).parent / "payloads"
#: Files read through ``load_json``/``load_text``/``payload_path`` during the test session.
USED: set[str] = set()


def payload_path(relative: str) -> Path:
    path = PAYLOAD_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"no recorded payload {relative!r} under {PAYLOAD_DIR}")
    USED.add(relative)
    return path


def load_json(relative: str) -> Any:
    return json.loads(payload_path(relative).read_bytes())


def load_bytes(relative: str) -> bytes:
    return payload_path(relative).read_bytes()


def all_payloads(prefix: str = "") -> list[str]:
    """Relative paths of every payload file (README excluded), optionally under a folder."""
    return sorted(
        str(p.relative_to(PAYLOAD_DIR))
        for p in PAYLOAD_DIR.rglob("*")
        if p.is_file() and p.name != "README.md" and str(p.relative_to(PAYLOAD_DIR)).startswith(prefix)
    )
