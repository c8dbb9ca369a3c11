"""Provider connections at work: encrypted credentials, Schwab's tokens kept fresh, API-key
providers tracked, and the calls the rest of the pipeline makes about them.

Every provider the pipeline talks to has a ``ProviderConnection`` (the domain entity) in
the state store (``ConnectionRepository``). This module is the infrastructure around it:

* **Encryption.** A connection's credentials are a Fernet blob (``cryptography``): the key
  comes from ``DASHTAM_SECRET_KEY`` (comma-separated keys rotate: the first encrypts, all
  decrypt) or is generated once into ``$DASHTAM_DATA_DIR/.secret_key`` with mode 0600. A
  blob the key cannot open is a ``SecretKeyError`` that says what to do, never garbage.
* **OAuth providers (Schwab).** ``connect_oauth_provider`` runs the authorization-code
  flow through the provider's ``OAuthFlow`` (``providers/<slug>/oauth.py``) and makes
  the connection ACTIVE (PENDING → ACTIVE, or EXPIRED → ACTIVE on reconnect). Access tokens
  live 30 minutes, refresh tokens 7 days: ``StoredTokenSource`` hands the client a valid
  access token, refreshing it within 5 minutes of expiry. When refresh is impossible it
  moves the connection to EXPIRED and raises ``NOT_CONNECTED`` with the command to run, so
  the provider's assets are skipped with that reason instead of failing the run.
* **API-key providers.** ``ensure_api_key_connections`` keeps one connection per provider
  in step with the environment (a fingerprint of the keys is stored, never a key);
  ``mark_auth_failure`` records a 401/403; ``record_successful_sync`` a good sync.

Every function takes ``now`` (or a ``clock``) so sensors and tests can move time; the
default is ``utcnow``, the one place this module reads the system clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import httpx
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dashtam_pipeline.clients.base import sandboxed
from dashtam_pipeline.domain.provider_connection import (
    OPERATOR_USER_ID,
    ConnectionStatus,
    CredentialType,
    Failure,
    ProviderConnection,
    ProviderCredentials,
    Result,
    checked_alias,
    provider_id_for,
)
from dashtam_pipeline.errors import ErrorKind, PipelineError, ProviderError
from dashtam_pipeline.private_files import PRIVATE_FILE_MODE, make_private_dirs
from dashtam_pipeline.registry import (
    PROVIDER_REGISTRY,
    ProviderAuthType,
    ProviderMetadata,
    ProviderSlug,
    get_provider_metadata,
    load_attribute,
)
from dashtam_pipeline.settings import ProviderSettings, Settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository, to_text

Clock = Callable[[], dt.datetime]


class OAuthTokensLike(Protocol):
    """A token response as a flow returns it (``StoredTokens.from_oauth`` reads these)."""

    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime


class OAuthFlow(Protocol):
    """An OAuth provider's side of connecting and refreshing, named by its metadata's
    ``oauth_flow`` (Schwab's is ``providers/schwab/oauth.py``).

    Why a protocol: the connection's life (PENDING → ACTIVE, refresh once, EXPIRED with the
    command to run, tokens encrypted) is the same for every OAuth provider and stays here;
    the authorize page, the code's spelling and the token endpoint are the provider's, so
    adding an OAuth provider is its folder and no edit to this module.
    """

    #: How messages name the provider ("Schwab", not "Charles Schwab").
    short_name: str

    def authorize_url(self, settings: Settings) -> str: ...

    def missing_app_credentials(self, provider_settings: ProviderSettings) -> str | None:
        """A sentence naming the unset app credentials, or ``None`` when all are set."""
        ...

    def code_from_redirect_url(self, redirect_url: str) -> str: ...

    def exchange_code(
        self, settings: Settings, provider_settings: ProviderSettings, code: str, *,
        transport: httpx.BaseTransport | None, now: dt.datetime,
    ) -> OAuthTokensLike: ...

    def refresh_tokens(
        self, provider_settings: ProviderSettings, refresh_token: str, *,
        refresh_expires_at: dt.datetime, transport: httpx.BaseTransport | None,
        now: dt.datetime,
    ) -> OAuthTokensLike: ...


def oauth_flow(slug: ProviderSlug | str) -> OAuthFlow:
    """The ``OAuthFlow`` an OAuth provider declares (``METADATA.oauth_flow``)."""
    meta = get_provider_metadata(slug)
    if not meta.is_oauth or not meta.oauth_flow:
        raise PipelineError(
            f"{meta.display_name} declares no OAuth flow (METADATA.oauth_flow in "
            f"providers/{meta.slug.value}/__init__.py)"
        )
    return load_attribute(meta.oauth_flow)  # type: ignore[no-any-return]


class SecretKeyError(PipelineError):
    """The encryption key is missing, malformed, or not the one the data was written with."""


def utcnow() -> dt.datetime:
    """The system clock (the default wherever no ``now``/``clock`` is injected)."""
    return dt.datetime.now(tz=dt.UTC)


# -- encryption --------------------------------------------------------------------------
def load_cipher(settings: Settings) -> MultiFernet:
    """The credential cipher, creating the key file on first use when no key is set.

    Refused (``SecretKeyError``) when it cannot open the credentials already stored: a
    wrong key must stop here, before anything is sealed with it. Otherwise new credentials
    sealed with the wrong key would sit beside old ones sealed with the right key, and no
    single key could open the store again."""
    if settings.dashtam_secret_key is not None:
        raw = [k.strip() for k in settings.dashtam_secret_key.get_secret_value().split(",")]
        source = "DASHTAM_SECRET_KEY"
    else:
        path = settings.data_dir / ".secret_key"
        if not path.exists():
            _write_new_key(path)
        raw = [path.read_text().strip()]
        source = f"the key file {path}"
    try:
        cipher = MultiFernet([Fernet(k.encode()) for k in raw if k])
    except (ValueError, TypeError):
        raise SecretKeyError(
            "DASHTAM_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes); "
            "generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None
    _check_opens_store(cipher, settings, source)
    return cipher


def _check_opens_store(cipher: MultiFernet, settings: Settings, source: str) -> None:
    """The newest stored credentials must open with ``cipher`` (one decryption: a key
    that opens the newest blob is the key the store is being written with)."""
    newest = ConnectionRepository.from_settings(settings).newest_sealed()
    if newest is None:
        return
    slug, blob = newest
    try:
        cipher.decrypt(blob)
    except InvalidToken:
        raise SecretKeyError(
            f"{source} cannot decrypt the credentials already stored (the newest are "
            f"{slug}'s), so nothing was read or sealed with it: use the key they were "
            "sealed with, or rotate by setting DASHTAM_SECRET_KEY to the new key followed "
            "by the old one, comma-separated"
        ) from None


def _write_new_key(path: Path) -> None:
    """Generate the key file, atomically: the key is written (mode 0600) to a private
    temporary file that is then hard-linked into place. Two first runs started together
    on an empty data dir must end up with one key, and neither may read a half-written
    file; the loser of the ``link`` race simply uses the winner's key."""
    make_private_dirs(path.parent)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def seal(
    cipher: MultiFernet,
    payload: dict[str, Any],
    credential_type: CredentialType,
    *,
    expires_at: dt.datetime | None = None,
    refresh_expires_at: dt.datetime | None = None,
) -> ProviderCredentials:
    """Encrypt a credential payload into the entity's opaque blob."""
    blob = cipher.encrypt(json.dumps(payload, default=str, sort_keys=True).encode())
    return ProviderCredentials(blob, credential_type, expires_at, refresh_expires_at)


def unseal(cipher: MultiFernet, credentials: ProviderCredentials, slug: str) -> dict[str, Any]:
    """Decrypt a blob; a key that cannot open it is a ``SecretKeyError``, never garbage."""
    try:
        return json.loads(cipher.decrypt(credentials.encrypted_data))
    except InvalidToken:
        raise SecretKeyError(
            f"stored {slug} credentials cannot be decrypted with the current "
            "DASHTAM_SECRET_KEY (was the key changed? add the old key after the new one, "
            "comma-separated, to rotate)"
        ) from None


# -- OAuth tokens ------------------------------------------------------------------------
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

    @classmethod
    def from_oauth(cls, tokens: Any) -> StoredTokens:
        """From a ``providers.schwab.client.OAuthTokens`` (or anything with the same fields)."""
        return cls(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            refresh_expires_at=tokens.refresh_expires_at,
            token_type=getattr(tokens, "token_type", "Bearer") or "Bearer",
            scope=getattr(tokens, "scope", None),
            id_token=getattr(tokens, "id_token", None),
        )

    def seal(self, cipher: MultiFernet) -> ProviderCredentials:
        secret = {k: v for k, v in asdict(self).items()
                  if k not in ("expires_at", "refresh_expires_at")}
        return seal(cipher, secret, CredentialType.OAUTH2, expires_at=self.expires_at,
                    refresh_expires_at=self.refresh_expires_at)

    @classmethod
    def unseal(
        cls, cipher: MultiFernet, credentials: ProviderCredentials, slug: str
    ) -> StoredTokens:
        if credentials.expires_at is None or credentials.refresh_expires_at is None:
            raise PipelineError(f"the stored {slug} credentials are not OAuth tokens")
        return cls(**unseal(cipher, credentials, slug), expires_at=credentials.expires_at,
                   refresh_expires_at=credentials.refresh_expires_at)


# -- finding the live connection ---------------------------------------------------------
def current_connection(
    repo: ConnectionRepository,
    slug: ProviderSlug | str,
    user_id: uuid.UUID = OPERATOR_USER_ID,
    alias: str | None = None,
) -> ProviderConnection | None:
    """A user's live connection of a provider (default: the operator's own): the one with
    ``alias`` when given (aliases are unique per user and provider), else the newest one
    not DISCONNECTED (those are history)."""
    meta = get_provider_metadata(slug)
    live = [c for c in repo.find_by_user_and_provider(user_id,
                                                      provider_id_for(meta.slug.value))
            if c.status is not ConnectionStatus.DISCONNECTED
            and (alias is None or c.alias == alias)]
    return max(live, key=lambda c: c.created_at) if live else None


def _resolve(
    repo: ConnectionRepository, slug: ProviderSlug, connection_id: uuid.UUID | str | None
) -> ProviderConnection | None:
    """The connection a client works for: the one named, else the operator's own."""
    if connection_id is None:
        return current_connection(repo, slug)
    return repo.find_by_id(uuid.UUID(str(connection_id)))


def operator_connection(
    settings: Settings, slug: ProviderSlug | str
) -> ProviderConnection | None:
    """The operator's own live connection of a provider (an API-key provider's comes from
    the environment and is created on first use): whose rows an unpartitioned brokerage
    run lands."""
    meta = get_provider_metadata(slug)
    repo = ConnectionRepository.from_settings(settings)
    return _existing_or_api_key_connection(repo, settings, meta, utcnow())


def _short_name(slug: ProviderSlug) -> str:
    """How messages name a provider: users say "Schwab", not "Charles Schwab"."""
    meta = get_provider_metadata(slug)
    return oauth_flow(slug).short_name if meta.oauth_flow else meta.display_name


def _command(slug: ProviderSlug, connection: ProviderConnection | None = None) -> str:
    """The command that (re)connects: with ``--user``/``--alias`` for a user's connection,
    so the person reading a skip message can run it as it is."""
    command = f"dashtam connect {slug.value}"
    if connection is not None and connection.user_id != OPERATOR_USER_ID:
        command += f" --user {connection.user_id}"
    if connection is not None and connection.alias:
        command += f" --alias {_quoted(connection.alias)}"
    return command


def reconnect_command(connection: ProviderConnection) -> str:
    """The command a person runs to renew this connection's login or keys."""
    return _command(ProviderSlug(connection.provider_slug), connection)


def _quoted(text: str) -> str:
    """An alias as a shell word (quoted when it holds spaces or quotes)."""
    import shlex

    return shlex.quote(text)


def describe(connection: ProviderConnection) -> str:
    """Whose connection this is, for messages: ``Schwab connection 'IRA' of user <id>``."""
    name = _short_name(ProviderSlug(connection.provider_slug))
    alias = f" {connection.alias!r}" if connection.alias else ""
    owner = "" if connection.user_id == OPERATOR_USER_ID else f" of user {connection.user_id}"
    return f"{name} connection{alias}{owner}"


def _not_connected(slug: ProviderSlug, message: str) -> ProviderError:
    return ProviderError(slug.value, ErrorKind.NOT_CONNECTED, message, retryable=False)


def unusable_reason(connection: ProviderConnection | None, slug: ProviderSlug) -> str:
    """Why a provider cannot sync now, in a sentence that says what to run."""
    name, command = _short_name(slug), _command(slug, connection)
    if connection is None or connection.status is ConnectionStatus.PENDING:
        return f"no {name} connection: run `{command}`"
    whose = ""
    if connection.user_id != OPERATOR_USER_ID or connection.alias:
        name = describe(connection)  # one of many: say whose
        whose = " "
    if connection.status is ConnectionStatus.EXPIRED:
        # the refresh token's end, or when the provider refused it if that came first
        creds = connection.credentials
        when = connection.updated_at
        if creds is not None and creds.refresh_expires_at is not None:
            when = min(when, creds.refresh_expires_at)
        return f"{name} login expired on {when:%Y-%m-%d %H:%M} UTC: run `{command}`"
    reason = f" ({connection.status_reason})" if connection.status_reason else ""
    if whose:
        return f"the {name} is {connection.status.value}{reason}: run `{command}`"
    return f"the {name} connection is {connection.status.value}{reason}: run `{command}`"


# -- OAuth: the token source -------------------------------------------------------------
class StoredTokenSource:
    """Hands an OAuth client a valid access token, refreshing and saving as needed."""

    def __init__(
        self,
        provider: ProviderSlug,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        connection_id: uuid.UUID | str | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        #: The connection whose tokens this source hands out (its own requests only);
        #: ``None``: the operator's own connection.
        self.connection_id = connection_id
        self.transport = transport
        self.clock = clock or (lambda: utcnow())
        self.repo = ConnectionRepository.from_settings(settings)
        self.cipher = load_cipher(settings)

    def access_token(self) -> str:
        connection = _resolve(self.repo, self.provider, self.connection_id)
        if connection is None or not connection.is_connected() or not connection.credentials:
            raise _not_connected(self.provider, unusable_reason(connection, self.provider))
        if not connection.is_credentials_expiring_soon(self.clock()):
            tokens = StoredTokens.unseal(self.cipher, connection.credentials,
                                         self.provider.value)
            return tokens.access_token
        return refresh_oauth_connection(
            self.settings, self.provider, now=self.clock(), transport=self.transport,
            connection_id=self.connection_id,
        ).access_token

    def refresh(self) -> str:
        """A new access token now, whatever the stored one's expiry: for the client when a
        data endpoint refused the current one (the contract's "refreshes it once")."""
        return refresh_oauth_connection(
            self.settings, self.provider, now=self.clock(), transport=self.transport,
            connection_id=self.connection_id,
        ).access_token


def refresh_oauth_connection(
    settings: Settings,
    slug: ProviderSlug | str,
    *,
    now: dt.datetime | None = None,
    transport: httpx.BaseTransport | None = None,
    connection_id: uuid.UUID | str | None = None,
) -> StoredTokens:
    """Refresh a connection's access token now (``connection_id``; default the operator's
    own connection of the provider) (whatever its expiry) and save it.

    For the token source when a token is about to lapse, and for a refresh job that renews
    tokens ahead of time (``ConnectionRepository.find_expiring_soon``). When the refresh
    token has expired, or the provider refuses it (Schwab's 400
    ``refresh_token_authentication_error``), the connection becomes EXPIRED and this raises
    ``ProviderError(NOT_CONNECTED)`` telling the user to run ``dashtam connect``.
    """
    meta = get_provider_metadata(slug)
    now = now or utcnow()
    repo = ConnectionRepository.from_settings(settings)
    cipher = load_cipher(settings)
    connection = _resolve(repo, meta.slug, connection_id)
    if connection is None or not connection.is_connected() or not connection.credentials:
        raise _not_connected(meta.slug, unusable_reason(connection, meta.slug))
    tokens = StoredTokens.unseal(cipher, connection.credentials, meta.slug.value)
    if not connection.credentials.can_refresh(now):
        _expire(repo, connection, now, "the refresh token expired")
    flow = oauth_flow(meta.slug)
    provider_settings, transport = sandboxed(settings.provider(meta.slug), transport)
    try:
        fresh = flow.refresh_tokens(
            provider_settings, tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at, transport=transport, now=now,
        )
    except ProviderError as error:
        if error.kind is ErrorKind.AUTH and error.status_code == 400:
            # the grant itself is refused: only a new login helps
            _expire(repo, connection, now, "the provider refused the refresh token")
        if error.kind is ErrorKind.AUTH:  # the app's key/secret refused: configuration
            raise _not_connected(meta.slug, error.message) from None
        raise
    stored = StoredTokens.from_oauth(fresh)
    latest = repo.find_by_id(connection.id) or connection  # another process may have moved it
    if latest.update_credentials(stored.seal(cipher), now=now):
        repo.save(latest)
    return stored


def _expire(
    repo: ConnectionRepository, connection: ProviderConnection, now: dt.datetime, why: str
) -> NoReturn:
    """Mark EXPIRED (credentials kept, for their dates) and raise NOT_CONNECTED."""
    slug = ProviderSlug(connection.provider_slug)
    if connection.mark_expired(now=now, reason=why):
        repo.save(connection)
    raise _not_connected(slug, unusable_reason(connection, slug))


def token_source_for(
    slug: ProviderSlug,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    connection_id: uuid.UUID | str | None = None,
) -> StoredTokenSource:
    return StoredTokenSource(slug, settings, transport=transport, clock=clock,
                             connection_id=connection_id)


# -- OAuth: connecting -------------------------------------------------------------------
def connect_oauth_provider(
    provider: str,
    settings: Settings,
    *,
    code: str | None = None,
    redirect_url: str | None = None,
    transport: httpx.BaseTransport | None = None,
    alias: str | None = None,
    now: dt.datetime | None = None,
    user_id: uuid.UUID | None = None,
) -> ProviderConnection:
    """Complete the authorization-code flow for ``user_id`` (default: the operator's own
    user); ``alias`` picks which of the user's connections of the provider (a new alias is
    a new connection, an existing one is reconnected); the connection becomes ACTIVE with its tokens
    encrypted (a first connect goes PENDING → ACTIVE, a reconnect EXPIRED → ACTIVE).

    A new connection is stored only once the code was exchanged for tokens: a refused
    code is reported to the person at hand and leaves no record (before, every mistyped
    code under a new alias left a FAILED connection behind, listed and synced-over
    forever). An existing PENDING one that is refused becomes FAILED with the reason.
    A bad ``alias`` (``checked_alias``) is refused before anything is asked or stored.

    Without ``code``/``redirect_url`` it prints the authorize URL and reads the redirected
    URL from standard input (the browser shows it after login).
    """
    meta = get_provider_metadata(provider)
    if not meta.is_oauth:
        raise PipelineError(f"{meta.display_name} does not use OAuth; nothing to connect")
    alias = _alias(alias)
    flow = oauth_flow(meta.slug)
    now = now or utcnow()
    provider_settings, transport = sandboxed(settings.provider(meta.slug), transport)
    if code is None and redirect_url is None:
        print("Open this URL, log in, and paste the URL you are redirected to:")
        print(flow.authorize_url(settings))
        redirect_url = input("redirected URL: ").strip()
    missing = flow.missing_app_credentials(provider_settings)
    if missing:
        raise ProviderError(meta.slug.value, ErrorKind.NOT_CONFIGURED, missing, retryable=False)
    repo = ConnectionRepository.from_settings(settings)
    cipher = load_cipher(settings)
    user = user_id or OPERATOR_USER_ID
    connection = current_connection(repo, meta.slug, user, alias)
    try:
        if code is None:
            code = flow.code_from_redirect_url(redirect_url or "")
        tokens = flow.exchange_code(settings, provider_settings, code, transport=transport,
                                    now=now)
    except ProviderError as error:
        # only a stored PENDING one can fail; a new one was never stored
        if connection is not None and connection.mark_failed(error.message, now=now):
            repo.save(connection)
        raise
    if connection is None:
        connection = ProviderConnection.new(meta.slug.value, now=now, alias=alias,
                                            user_id=user)
    credentials = StoredTokens.from_oauth(tokens).seal(cipher)
    if connection.status is ConnectionStatus.ACTIVE:
        result = connection.update_credentials(credentials, now=now)
    else:
        result = connection.mark_connected(credentials, now=now)
    if isinstance(result, Failure):  # every live status may connect: a bug if not
        raise PipelineError(result.reason)
    if alias is not None:
        connection.alias = alias
    repo.save(connection)
    return connection


# -- API-key providers -------------------------------------------------------------------
def api_key_providers() -> list[ProviderMetadata]:
    return [m for m in PROVIDER_REGISTRY if m.auth_type is ProviderAuthType.API_KEY]


def key_fingerprint(settings: Settings, meta: ProviderMetadata) -> str | None:
    """A digest of the provider's keys (``None`` when unset): tells a key change apart
    without storing the key. In the sandbox no key is needed, so it has its own value."""
    if settings.missing_settings(meta.slug):
        return "sandbox" if settings.dashtam_sandbox else None
    values = settings.provider(meta.slug).secret_values()
    digest = hashlib.sha256("\0".join([meta.slug.value, *values]).encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def _api_key_credentials(cipher: MultiFernet, fingerprint: str) -> ProviderCredentials:
    return seal(cipher, {"fingerprint": fingerprint}, CredentialType.API_KEY)


def _stored_fingerprint(
    cipher: MultiFernet, connection: ProviderConnection
) -> str | None:
    if connection.credentials is None:
        return None
    return unseal(cipher, connection.credentials, connection.provider_slug).get("fingerprint")


def _sync_api_key_connection(
    repo: ConnectionRepository,
    cipher: MultiFernet,
    settings: Settings,
    meta: ProviderMetadata,
    now: dt.datetime,
) -> ProviderConnection | None:
    """One provider's connection brought in line with its keys (saved when changed)."""
    fingerprint = key_fingerprint(settings, meta)
    connection = current_connection(repo, meta.slug)
    if fingerprint is None:
        if connection is not None and connection.mark_disconnected(now=now):
            repo.save(connection)  # keys removed: the record stays, as history
        return connection
    if connection is None:
        connection = ProviderConnection.new(meta.slug.value, now=now)
    if _stored_fingerprint(cipher, connection) == fingerprint and connection.status in (
            ConnectionStatus.ACTIVE, ConnectionStatus.REVOKED, ConnectionStatus.FAILED):
        return connection  # unchanged: refused keys stay refused until they change
    return _activate(repo, connection, _api_key_credentials(cipher, fingerprint), now)


def _activate(
    repo: ConnectionRepository,
    connection: ProviderConnection,
    credentials: ProviderCredentials,
    now: dt.datetime,
) -> ProviderConnection:
    """Put current credentials on a connection: renewed if it is ACTIVE, (re)connected
    otherwise; then saved."""
    if connection.status is ConnectionStatus.ACTIVE:
        connection.update_credentials(credentials, now=now)
    else:
        connection.mark_connected(credentials, now=now)
    repo.save(connection)
    return connection


def ensure_api_key_connections(
    settings: Settings, now: dt.datetime | None = None
) -> list[ProviderConnection]:
    """One connection per API-key provider, in step with the environment: ACTIVE when its
    keys are set (or changed since they were refused), DISCONNECTED when they were removed;
    a provider whose keys were refused (REVOKED/FAILED) stays so while the keys are the
    same. Returns the providers' current connections."""
    now = now or utcnow()
    repo = ConnectionRepository.from_settings(settings)
    cipher = load_cipher(settings)
    found = [_sync_api_key_connection(repo, cipher, settings, meta, now)
             for meta in api_key_providers()]
    return [c for c in found if c is not None]


def reconnect_api_key_provider(
    settings: Settings, slug: ProviderSlug | str, now: dt.datetime | None = None
) -> ProviderConnection:
    """A person says the keys are good again (``dashtam connect fmp``): ACTIVE with the
    current keys, even unchanged ones (e.g. the account was fixed at the provider)."""
    meta = get_provider_metadata(slug)
    if meta.auth_type is not ProviderAuthType.API_KEY:
        raise PipelineError(f"{meta.display_name} does not use API keys")
    now = now or utcnow()
    fingerprint = key_fingerprint(settings, meta)
    if fingerprint is None:
        raise PipelineError(f"set {', '.join(settings.missing_settings(meta.slug))} to "
                            f"connect {meta.display_name}")
    repo = ConnectionRepository.from_settings(settings)
    cipher = load_cipher(settings)
    connection = current_connection(repo, meta.slug) or ProviderConnection.new(
        meta.slug.value, now=now)
    return _activate(repo, connection, _api_key_credentials(cipher, fingerprint), now)


def _existing_or_api_key_connection(
    repo: ConnectionRepository, settings: Settings, meta: ProviderMetadata, now: dt.datetime
) -> ProviderConnection | None:
    """The provider's current connection; an API-key provider without a record gets one
    first (from the keys in the environment)."""
    connection = current_connection(repo, meta.slug)
    if connection is None and meta.auth_type is ProviderAuthType.API_KEY:
        connection = _sync_api_key_connection(repo, load_cipher(settings), settings, meta, now)
    return connection


def mark_auth_failure(
    settings: Settings, slug: ProviderSlug | str, reason: str, now: dt.datetime | None = None,
    *, connection_id: uuid.UUID | str | None = None,
) -> Result:
    """A provider answered 401/403 to the credentials: ACTIVE → REVOKED (they had been
    accepted), PENDING → FAILED (they never were). The reason is kept for
    ``dashtam connections`` and the skip message; it must not contain a secret."""
    meta = get_provider_metadata(slug)
    if meta.is_oauth:
        # An OAuth connection's status is decided by its token endpoint alone (a refused
        # refresh token: EXPIRED, in ``refresh_oauth_connection``); a data endpoint's 401
        # after the one refresh is reported by the run, and the login is left as it is.
        return Failure(f"{meta.slug.value}: a data endpoint's 401 does not change an OAuth "
                       "connection's status")
    now = now or utcnow()
    repo = ConnectionRepository.from_settings(settings)
    connection = (_resolve(repo, meta.slug, connection_id) if connection_id is not None
                  else _existing_or_api_key_connection(repo, settings, meta, now))
    if connection is None:
        return Failure(f"no {meta.slug.value} connection to mark")
    if connection.status is ConnectionStatus.PENDING:
        result = connection.mark_failed(reason, now=now)
    else:
        result = connection.mark_revoked(now=now, reason=reason)
    if result:
        repo.save(connection)
    return result


def require_usable_key(
    settings: Settings, slug: ProviderSlug | str,
    *, connection_id: uuid.UUID | str | None = None,
) -> None:
    """Before calling an API-key provider: bring its connection in step with the keys in
    the environment, and refuse (``NOT_CONNECTED``, so its assets are skipped with the
    reason) when those same keys were refused with a 401/403 before. OAuth providers are
    checked by their token source; file imports need no connection."""
    meta = get_provider_metadata(slug)
    if meta.auth_type is not ProviderAuthType.API_KEY:
        return
    repo = ConnectionRepository.from_settings(settings)
    if connection_id is not None:  # a user's own keys: their connection says if usable
        connection = _resolve(repo, meta.slug, connection_id)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            raise _not_connected(meta.slug, unusable_reason(connection, meta.slug))
        return
    connection = _sync_api_key_connection(repo, load_cipher(settings), settings, meta, utcnow())
    if connection is not None and connection.status in (
        ConnectionStatus.REVOKED, ConnectionStatus.FAILED
    ):
        raise _not_connected(meta.slug, unusable_reason(connection, meta.slug))


def record_successful_sync(
    settings: Settings, slug: ProviderSlug | str, at: dt.datetime | None = None,
    *, connection_id: uuid.UUID | str | None = None,
) -> Result:
    """Note a successful data sync on the provider's ACTIVE connection (``last_sync_at``).
    An API-key provider without a connection record gets one first."""
    meta = get_provider_metadata(slug)
    at = at or utcnow()
    repo = ConnectionRepository.from_settings(settings)
    connection = (_resolve(repo, meta.slug, connection_id) if connection_id is not None
                  else _existing_or_api_key_connection(repo, settings, meta, at))
    if connection is None:
        return Failure(f"no {meta.slug.value} connection to record a sync on")
    result = connection.record_sync(at)
    if result:
        repo.save(connection)
    return result


# -- listing -----------------------------------------------------------------------------
def connection_json(connection: ProviderConnection) -> dict[str, Any]:
    """The contract's ``dashtam connections --json`` object (times: ISO-8601 UTC or null)."""
    creds = connection.credentials
    return {
        "id": str(connection.id),
        "user_id": str(connection.user_id),
        "provider": connection.provider_slug,
        "alias": connection.alias,
        "status": connection.status.value,
        "expires_at": to_text(creds.expires_at) if creds else None,
        "refresh_expires_at": to_text(creds.refresh_expires_at) if creds else None,
        "last_sync_at": to_text(connection.last_sync_at),
        "status_reason": connection.status_reason,
    }


def list_connections(
    settings: Settings, now: dt.datetime | None = None, *, user_id: uuid.UUID | None = None
) -> list[ProviderConnection]:
    """Every connection (of one user when ``user_id`` is given), API-key providers first
    brought in line with the environment."""
    ensure_api_key_connections(settings, now)
    repo = ConnectionRepository.from_settings(settings)
    return repo.find_by_user_id(user_id) if user_id is not None else repo.find_all()


# -- a user's own API keys (Alpaca) --------------------------------------------------------
#: What a user's own key connection stores (encrypted): the names of the provider's
#: settings they stand in for, so the client is built exactly as from the environment.
USER_KEY_FIELDS: dict[ProviderSlug, tuple[str, ...]] = {
    m.slug: m.required_settings for m in PROVIDER_REGISTRY if m.accepts_user_keys
}


def connect_user_keys(
    settings: Settings,
    slug: ProviderSlug | str,
    *,
    user_id: uuid.UUID,
    alias: str,
    key_id: str,
    secret_key: str,
    now: dt.datetime | None = None,
) -> ProviderConnection:
    """Store a user's own API keys (read by the CLI from standard input, never from the
    command line) encrypted, as that user's connection ``alias`` of the provider: a new
    connection, or the same one with new keys (reconnect keeps its id and history)."""
    meta = get_provider_metadata(slug)
    fields = USER_KEY_FIELDS.get(meta.slug)
    if fields is None:
        raise PipelineError(f"{meta.display_name} does not take a user's own keys")
    alias = _alias(alias)
    if not key_id.strip() or not secret_key.strip():
        raise PipelineError("two lines are needed on standard input: the key id, then the "
                            "secret key")
    key_id, secret_key = (_header_safe_key(value, f"the {meta.display_name} {what}")
                          for value, what in ((key_id, "key id"), (secret_key, "secret key")))
    now = now or utcnow()
    repo = ConnectionRepository.from_settings(settings)
    cipher = load_cipher(settings)
    credentials = seal(cipher, {fields[0]: key_id, fields[1]: secret_key},
                       CredentialType.API_KEY)
    connection = current_connection(repo, meta.slug, user_id, alias) or ProviderConnection.new(
        meta.slug.value, now=now, alias=alias, user_id=user_id)
    return _activate(repo, connection, credentials, now)


#: A user's own key is sent as an HTTP header value (Alpaca's ``APCA-API-KEY-ID`` and
#: ``APCA-API-SECRET-KEY``): visible ASCII only, and real keys are 20-64 characters.
MAX_KEY_LENGTH = 256


def _header_safe_key(value: str, what: str) -> str:
    """``value`` stripped, if it can travel in an HTTP header: 1 to ``MAX_KEY_LENGTH``
    visible ASCII characters (``!`` to ``~``). Otherwise one sentence naming ``what``,
    never the key: a key with a space, a non-ASCII letter or a control byte is stored
    without complaint but makes every later sync of the connection fail inside httpx."""
    text = value.strip()
    if not 1 <= len(text) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in text):
        raise PipelineError(
            f"{what} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (letters, "
            "digits, punctuation; no spaces, accents or control characters), and this one "
            "is not (it is not shown: it is a secret); nothing was stored")
    return text


def _alias(alias: str | None) -> str | None:
    """``checked_alias`` as a ``PipelineError`` (bad input a caller reports, not a bug)."""
    try:
        return checked_alias(alias)
    except ValueError as error:
        raise PipelineError(str(error)) from None


def connection_secrets(
    settings: Settings, connection_id: uuid.UUID | str
) -> dict[str, str] | None:
    """A user's own keys stored on a connection (decrypted, in memory only, for building
    its client), or ``None`` when the connection uses the environment's keys."""
    repo = ConnectionRepository.from_settings(settings)
    connection = repo.find_by_id(uuid.UUID(str(connection_id)))
    if connection is None or connection.credentials is None:
        return None
    if connection.credentials.credential_type is not CredentialType.API_KEY:
        return None
    stored = unseal(load_cipher(settings), connection.credentials, connection.provider_slug)
    fields = USER_KEY_FIELDS.get(ProviderSlug(connection.provider_slug), ())
    return {k: str(stored[k]) for k in fields if k in stored} or None


def syncable_connections(
    settings: Settings, slug: ProviderSlug | str
) -> list[ProviderConnection]:
    """The provider's connections of every user that a nightly sync covers: all but
    DISCONNECTED ones (an EXPIRED one is skipped by its run with the reconnect command, so
    the skip is visible rather than silent)."""
    meta = get_provider_metadata(slug)
    if meta.auth_type is ProviderAuthType.API_KEY:
        ensure_api_key_connections(settings)
    repo = ConnectionRepository.from_settings(settings)
    return [c for c in repo.find_by_provider(meta.slug.value)
            if c.status is not ConnectionStatus.DISCONNECTED]
