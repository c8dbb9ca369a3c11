"""Access to the recorded provider payloads, which live in their provider's folder
(``dashtam_pipeline/providers/<slug>/payloads/``, a verbatim copy of that provider's part
of ``../shared/payloads``; their provenance is ``docs/payloads.md``).

A payload is named ``<slug>/<file>`` (``fmp/stable_quote_AAPL.json``,
``chase_file/legacy_2009_checking_noheader_reckon.csv``). Every such file is a test case:
``conftest.py`` fails a full run of the suite if a file there was never read by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dashtam_pipeline.providers

#: The built-in provider folders, each with its ``payloads/``.
PROVIDERS_DIR = Path(next(iter(dashtam_pipeline.providers.__path__)))
#: Files read through ``load_json``/``load_text``/``payload_path`` during the test session.
USED: set[str] = set()


def payload_path(relative: str, *, record: bool = True) -> Path:
    """The file's path. ``record=False`` for sweeps over every file of a folder (e.g.
    "no success body is classified as an error"): such a sweep is a check, but not the
    test case a payload is owed, so it does not count for the coverage rule."""
    slug, _, name = relative.partition("/")
    path = PROVIDERS_DIR / slug / "payloads" / name
    if not name or not path.is_file():
        raise FileNotFoundError(f"no recorded payload {relative!r} (looked for {path})")
    if record:
        USED.add(relative)
    return path


def load_json(relative: str, *, record: bool = True) -> Any:
    return json.loads(payload_path(relative, record=record).read_bytes())


def load_bytes(relative: str, *, record: bool = True) -> bytes:
    return payload_path(relative, record=record).read_bytes()


def payload_files() -> dict[str, Path]:
    """Every payload file by its name (``<slug>/<file>``)."""
    return {
        f"{folder.parent.name}/{path.relative_to(folder)}": path
        for folder in sorted(PROVIDERS_DIR.glob("*/payloads"))
        for path in folder.rglob("*")
        if path.is_file()
    }


def all_payloads(prefix: str = "") -> list[str]:
    """Names of every payload file, optionally those starting with ``prefix``."""
    return sorted(name for name in payload_files() if name.startswith(prefix))
