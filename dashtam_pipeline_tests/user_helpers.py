"""What the many-user tests share: two users, and a Schwab connection made through the
OAuth flow against the in-process sandbox, as ``dashtam connect schwab --user --alias``
makes one."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import httpx

from dashtam_pipeline.clients.base import sandbox_transport
from dashtam_pipeline.connections import connect_oauth_provider
from dashtam_pipeline.domain.provider_connection import ProviderConnection
from dashtam_pipeline.providers.schwab import client as schwab
from dashtam_pipeline.providers.schwab.sandbox import LOGIN_HINT, login_hint
from dashtam_pipeline.settings import load_settings

ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")


def connect_schwab(
    user: uuid.UUID, alias: str, *, sandbox_user: int | None = None
) -> ProviderConnection:
    """One user's Schwab connection, through the sandbox's authorization-code flow, logged
    in as ``sandbox_user`` (that sandbox user's accounts; default: the sandbox's first)."""
    settings = load_settings()
    with httpx.Client(transport=sandbox_transport(), follow_redirects=False) as browser:
        url = schwab.authorize_url(settings.provider("schwab")).replace(
            "https://api.schwabapi.com", "http://sandbox.dashtam.invalid/schwab")
        if sandbox_user is not None:
            url += "&" + urlencode({LOGIN_HINT: login_hint(sandbox_user)})
        response = browser.get(url)
    return connect_oauth_provider("schwab", settings, redirect_url=response.headers["location"],
                                  user_id=user, alias=alias)
