"""The built-in sandbox: every provider's real paths, answered from seeded data.

``SandboxApp`` is the WSGI app (in-process via ``httpx.WSGITransport`` or served over
loopback by ``server.serve``); it is deterministic for a seed (``DASHTAM_SANDBOX_SEED``).
"""

from __future__ import annotations

from dashtam_pipeline.sandbox.app import SandboxApp

__all__ = ["SandboxApp"]
