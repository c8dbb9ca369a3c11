"""Tiers that drive a real machine program (PostgreSQL, redis-server, Chromium) skip with
a one-line reason where the program is missing, except in CI (``CI=true``, exported by
``.ci/run``): there a missing program is a failure, so a green CI run never means "the
deployment tests were skipped"."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_unless_available(reason: str | None) -> pytest.MarkDecorator:
    """A ``skipif`` marker for a missing program (``reason`` None: it is there). In CI
    it raises instead, at import, which fails the module's collection."""
    if reason is not None and in_ci():
        raise RuntimeError(f"this tier cannot run in CI (CI=true): {reason}")
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def skip_or_fail(reason: str) -> None:
    """Inside a fixture: skip for ``reason``, or fail in CI."""
    if in_ci():
        pytest.fail(f"this tier cannot run in CI (CI=true): {reason}")
    pytest.skip(reason)
