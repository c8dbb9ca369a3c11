"""The provider folders' payloads are a verbatim copy of ``../shared/payloads`` (the
recorded ground truth): same files, same bytes, each recording folder in its provider's
folder (``chase/`` is the ``chase_file`` provider's) and the provenance index in
``docs/payloads.md``. A new recording there must be copied into its provider's
``payloads/``, where the coverage rule in conftest.py then demands a test that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam_pipeline_tests.payloads import payload_files

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "payloads"
#: Recording folders of ``../shared/payloads`` named otherwise than their provider.
RECORDING_FOLDERS = {"chase_file": "chase"}


def _recording_name(name: str) -> str:
    """``chase_file/x.csv`` -> ``chase/x.csv``: where ``../shared/payloads`` keeps it."""
    slug, _, rest = name.partition("/")
    return f"{RECORDING_FOLDERS.get(slug, slug)}/{rest}"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/payloads is not beside this clone")
def test_copy_matches_shared_payloads() -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    shared = files(SHARED)
    copied = {_recording_name(name): path.read_bytes() for name, path in payload_files().items()}
    copied["README.md"] = (REPO / "docs" / "payloads.md").read_bytes()  # the provenance
    assert sorted(shared) == sorted(copied)
    changed = [name for name in shared if shared[name] != copied[name]]
    assert not changed, f"payload copies differ from ../shared/payloads: {changed}"
