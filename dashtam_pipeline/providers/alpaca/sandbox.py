"""The Alpaca sandbox's per-user keys: what a demo, a benchmark or a test hands a user.

Kept apart from the sandbox routes (``sandbox_routes``) on purpose: importing those
imports the ``dashtam_pipeline.sandbox`` package, whose app loads every provider's routes
(``METADATA.sandbox_routes``) while it initializes. A module that is both imported first
and named in ``sandbox_routes`` is then found half-initialized (the circular import
``partially initialized module ... has no attribute 'PROVIDER'``). This module imports
nothing of the sandbox at load time, so ``from dashtam_pipeline.providers.alpaca.sandbox
import sandbox_keys`` works in a fresh interpreter.
"""

from __future__ import annotations

SANDBOX_KEY_PREFIX = "PKSBX"


def sandbox_keys(seed: int, user: int) -> tuple[str, str]:
    """(key id, secret key) of sandbox user ``user`` for this seed: the key id
    ``PKSBX<user, 4 digits><11 hex>`` and a 40-hex secret, both derived from the seed."""
    # imported here, not at load time: see the module docstring (the sandbox package
    # loads the routes, which import this module)
    from dashtam_pipeline.sandbox.common import stable_hex

    key_id = f"{SANDBOX_KEY_PREFIX}{user:04d}" + stable_hex(seed, "alpaca-key-id", user,
                                                           length=11).upper()
    return key_id, stable_hex(seed, "alpaca-secret-key", user, length=40)
