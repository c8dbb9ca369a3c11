"""The built-in sandbox: every provider's real paths, answered from seeded data.

``SandboxApp`` is the WSGI app (in-process via ``httpx.WSGITransport`` or served over
loopback by ``server.serve``); it is deterministic for a seed (``DASHTAM_SANDBOX_SEED``).

``SandboxApp`` is imported on first use: the app imports every provider's sandbox routes,
and those import this package's helpers, so an eager import here would make importing any
``providers.<slug>.sandbox`` first a circular import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashtam_pipeline.sandbox.app import SandboxApp

__all__ = ["SandboxApp"]


def __getattr__(name: str) -> Any:
    if name == "SandboxApp":
        from dashtam_pipeline.sandbox.app import SandboxApp

        return SandboxApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
