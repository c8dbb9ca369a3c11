"""OAuth connections: tokens stored encrypted in the state store, refreshed when needed.

Schwab access tokens live 30 minutes and refresh tokens 7 days. The client asks a token
source for an access token; the source refreshes it shortly before it expires and saves
the new pair. When refresh is impossible (the 7-day login lapsed) it raises
``NOT_CONNECTED`` with the command to run, so the provider's assets are skipped with
that reason instead of failing the run.

Tokens are encrypted with Fernet (``cryptography``) before they reach the database: the
key comes from ``DASHTAM_SECRET_KEY`` (comma-separated keys rotate: the first encrypts,
all decrypt) or is generated once into ``$DASHTAM_DATA_DIR/.secret_key`` with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dashtam_pipeline.clients.base import sandboxed
from dashtam_pipeline.errors import ErrorKind, PipelineError, ProviderError
from dashtam_pipeline.registry import ProviderSlug, get_provider_metadata
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.store import state_store

#: Refresh an access token this long before it expires.
REFRESH_MARGIN = dt.timedelta(minutes=5)


class SecretKeyError(PipelineError):
    """The encryption key is missing, malformed, or not the one the data was written with."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


def load_cipher(settings: Settings) -> MultiFernet:
    """The credential cipher, creating the key file on first use when no key is set."""
    if settings.dashtam_secret_key is not None:
        raw = [k.strip() for k in settings.dashtam_secret_key.get_secret_value().split(",")]
    else:
        path = settings.data_dir / ".secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        raw = [path.read_text().strip()]
    try:
        return MultiFernet([Fernet(k.encode()) for k in raw if k])
    except (ValueError, TypeError):
        raise SecretKeyError(
            "DASHTAM_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes); "
            "generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


@dataclass
class StoredTokens:
    """A provider's OAuth tokens as stored (decrypted only in memory)."""

    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime
    token_type: str = "Bearer"
    scope: str | None = None
    id_token: str | None = None


class TokenStore:
    """Encrypted OAuth tokens per provider in the state store (SQLite or PostgreSQL)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS oauth_tokens (provider TEXT PRIMARY KEY, "
        "ciphertext BLOB NOT NULL, expires_at TEXT NOT NULL, "
        "refresh_expires_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )

    def __init__(self, settings: Settings) -> None:
        self.store = state_store(settings)
        self.cipher = load_cipher(settings)
        self.store.ensure_schema("oauth_tokens", self.SCHEMA)

    def save(self, provider: ProviderSlug, tokens: StoredTokens) -> None:
        payload = json.dumps(asdict(tokens), default=str).encode()
        self.store.execute(
            "INSERT INTO oauth_tokens VALUES (?, ?, ?, ?, ?) ON CONFLICT(provider) DO "
            "UPDATE SET ciphertext=excluded.ciphertext, expires_at=excluded.expires_at, "
            "refresh_expires_at=excluded.refresh_expires_at, updated_at=excluded.updated_at",
            (
                provider.value,
                self.cipher.encrypt(payload),
                tokens.expires_at.isoformat(),
                tokens.refresh_expires_at.isoformat(),
                _utcnow().isoformat(),
            ),
        )

    def load(self, provider: ProviderSlug) -> StoredTokens | None:
        rows = self.store.query(
            "SELECT ciphertext FROM oauth_tokens WHERE provider = ?", (provider.value,)
        )
        if not rows:
            return None
        try:
            data = json.loads(self.cipher.decrypt(bytes(rows[0][0])))
        except InvalidToken:
            raise SecretKeyError(
                f"stored {provider.value} credentials cannot be decrypted with the current "
                "DASHTAM_SECRET_KEY (was the key changed? add the old key after the new one, "
                "comma-separated, to rotate)"
            ) from None
        for field_name in ("expires_at", "refresh_expires_at"):
            data[field_name] = dt.datetime.fromisoformat(data[field_name])
        return StoredTokens(**data)


def _from_oauth(tokens: Any) -> StoredTokens:
    return StoredTokens(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        refresh_expires_at=tokens.refresh_expires_at,
        token_type=getattr(tokens, "token_type", "Bearer") or "Bearer",
        scope=getattr(tokens, "scope", None),
        id_token=getattr(tokens, "id_token", None),
    )


class StoredTokenSource:
    """Hands the Schwab client a valid access token, refreshing and saving as needed."""

    def __init__(
        self,
        provider: ProviderSlug,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.transport = transport
        self.store = TokenStore(settings)

    def access_token(self) -> str:
        tokens = self.store.load(self.provider)
        command = f"dashtam connect {self.provider.value}"
        if tokens is None:
            raise ProviderError(
                self.provider.value, ErrorKind.NOT_CONNECTED,
                f"no {self.provider.value} connection: run `{command}`",
            )
        now = _utcnow()
        if tokens.expires_at - REFRESH_MARGIN > now:
            return tokens.access_token
        if tokens.refresh_expires_at <= now:
            raise ProviderError(
                self.provider.value, ErrorKind.NOT_CONNECTED,
                f"the {self.provider.value} login expired on "
                f"{tokens.refresh_expires_at:%Y-%m-%d %H:%M} UTC: run `{command}`",
            )
        from dashtam_pipeline.clients import schwab

        provider_settings, transport = sandboxed(
            self.settings.provider(self.provider), self.transport
        )
        try:
            fresh = schwab.refresh_tokens(
                schwab.oauth_http(provider_settings, transport=transport),
                tokens.refresh_token,
                refresh_expires_at=tokens.refresh_expires_at,
            )
        except ProviderError as error:
            if error.kind is ErrorKind.AUTH:
                raise ProviderError(
                    self.provider.value, ErrorKind.NOT_CONNECTED,
                    f"{error.message} (run `{command}`)",
                ) from None
            raise
        self.store.save(self.provider, _from_oauth(fresh))
        return fresh.access_token


def token_source_for(
    slug: ProviderSlug, settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> StoredTokenSource:
    return StoredTokenSource(slug, settings, transport=transport)


def connect_oauth_provider(
    provider: str,
    settings: Settings,
    *,
    code: str | None = None,
    redirect_url: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> StoredTokens:
    """Complete the authorization-code flow and store the tokens encrypted.

    Without ``code``/``redirect_url`` it prints the authorize URL and reads the redirected
    URL from standard input (the browser shows it after login).
    """
    meta = get_provider_metadata(provider)
    if not meta.is_oauth:
        raise PipelineError(f"{meta.display_name} does not use OAuth; nothing to connect")
    from dashtam_pipeline.clients import schwab

    provider_settings, transport = sandboxed(settings.provider(meta.slug), transport)
    if code is None and redirect_url is None:
        print("Open this URL, log in, and paste the URL you are redirected to:")
        print(schwab.authorize_url(settings))
        redirect_url = input("redirected URL: ").strip()
    if code is None:
        code = schwab.code_from_redirect_url(redirect_url or "")
    tokens = schwab.exchange_code(
        schwab.oauth_http(provider_settings, transport=transport),
        code,
        callback_url=settings.schwab_callback_url,
    )
    stored = _from_oauth(tokens)
    TokenStore(settings).save(meta.slug, stored)
    return stored
