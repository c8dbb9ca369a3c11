"""Schwab's authorization-code flow, as the ``connections.OAuthFlow`` the core drives.

``connections.py`` keeps what every OAuth provider shares (the connection's state machine,
encrypted tokens, refresh-once-then-EXPIRED); what is Schwab's (its authorize page, its
codes ending in ``@``, its token endpoint and error shapes, ``SCHWAB_CALLBACK_URL``) is here
and in ``client.py``, named by ``METADATA.oauth_flow``.
"""

from __future__ import annotations

import datetime as dt

import httpx

from dashtam_pipeline.providers.schwab import client
from dashtam_pipeline.settings import ProviderSettings, Settings


class SchwabOAuthFlow:
    """Schwab's side of connecting and refreshing (satisfies ``connections.OAuthFlow``)."""

    #: How messages name the provider: users say "Schwab", not "Charles Schwab".
    short_name = "Schwab"

    def authorize_url(self, settings: Settings) -> str:
        return client.authorize_url(settings)

    def missing_app_credentials(self, provider_settings: ProviderSettings) -> str | None:
        if all(client.app_credentials(provider_settings)):
            return None
        return "SCHWAB_APP_KEY and SCHWAB_APP_SECRET must be set to connect Schwab"

    def code_from_redirect_url(self, redirect_url: str) -> str:
        return client.code_from_redirect_url(redirect_url)

    def exchange_code(
        self,
        settings: Settings,
        provider_settings: ProviderSettings,
        code: str,
        *,
        transport: httpx.BaseTransport | None,
        now: dt.datetime,
    ) -> client.OAuthTokens:
        return client.exchange_code(
            client.oauth_http(provider_settings, transport=transport),
            code, callback_url=settings.provider("schwab").urls["callback_url"], now=now,
        )

    def refresh_tokens(
        self,
        provider_settings: ProviderSettings,
        refresh_token: str,
        *,
        refresh_expires_at: dt.datetime,
        transport: httpx.BaseTransport | None,
        now: dt.datetime,
    ) -> client.OAuthTokens:
        return client.refresh_tokens(
            client.oauth_http(provider_settings, transport=transport),
            refresh_token, refresh_expires_at=refresh_expires_at, now=now,
        )


FLOW = SchwabOAuthFlow()
