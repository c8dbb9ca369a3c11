"""The test tree's payloads are a verbatim copy of ``../shared/payloads`` (the recorded
ground truth): same files, same bytes. A new recording there must be copied here, where
the coverage rule in conftest.py then demands a test that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam_pipeline_tests.payloads import PAYLOAD_DIR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "payloads"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/payloads is not beside this clone")
def test_copy_matches_shared_payloads() -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    shared, copied = files(SHARED), files(PAYLOAD_DIR)
    assert sorted(shared) == sorted(copied)
    changed = [name for name in shared if shared[name] != copied[name]]
    assert not changed, f"payload copies differ from ../shared/payloads: {changed}"
