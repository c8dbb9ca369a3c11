"""The provider connection: a user's link to one data provider, and its lifecycle.

After the Dashtam domain model. The entity is authentication-agnostic: credentials are an
opaque encrypted blob with a type hint (``oauth2``, ``api_key``, ``file``) and expiries;
what the blob means, how it is encrypted and how it is refreshed is the infrastructure's
business (``dashtam_pipeline.connections``). Nothing here touches HTTP, OAuth or a database,
and nothing reads a clock: every transition and query takes ``now``, so sensors and tests
can run on a fake clock.

State machine (``TRANSITIONS``)::

    PENDING ──mark_connected──▶ ACTIVE ──mark_expired──▶ EXPIRED
       │                         ▲  │ ──mark_revoked──▶ REVOKED
       │ mark_failed             │
       ▼                         └── mark_connected (reconnect) from EXPIRED, REVOKED, FAILED
     FAILED
    every status but DISCONNECTED ──mark_disconnected──▶ DISCONNECTED (terminal)

Why these edges:

* FAILED only from PENDING: an authentication attempt that never produced usable
  credentials (a refused code, keys refused at first use).
* Credentials that worked and are later refused (an API key answered 401/403, a revoked
  OAuth grant) go ACTIVE → REVOKED, not FAILED: the connection existed and a person must
  re-authenticate. EXPIRED is kept for "time ran out" (Schwab's 7-day refresh token).
* EXPIRED, REVOKED and FAILED all go back to ACTIVE through ``mark_connected`` with new
  credentials: that is reconnecting, and it keeps the connection's id and history.
* DISCONNECTED is terminal (credentials cleared): connecting again is a new connection.

Transitions return ``Success`` or ``Failure(reason)`` instead of raising, so callers
handle a refused transition as data (``match result: case Failure(reason): ...``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from dashtam_pipeline.setting_values import shown

#: The operator's own user: the owner of the connections made from the environment
#: (``ALPACA_*`` keys, ``dashtam connect schwab`` without ``--user``) and of Chase files
#: dropped directly in ``CHASE_IMPORT_DIR``. Fixed (not generated) so that every machine
#: and every process agrees on it without a lookup, and a UUID like every Dashtam user id.
OPERATOR_USER_ID: Final = uuid.UUID("00000000-0000-5000-8000-000000000001")
#: The former name of ``OPERATOR_USER_ID`` (the pipeline was single-user then).
DEFAULT_USER_ID: Final = OPERATOR_USER_ID
#: Namespace of provider ids: ``provider_id_for(slug)`` is stable across machines.
PROVIDER_NAMESPACE: Final = uuid.UUID("7c0f3c52-3b1e-5a59-9d3e-446173687461")
#: ``is_credentials_expiring_soon`` looks this far ahead (refresh before a call fails).
EXPIRING_SOON: Final = dt.timedelta(minutes=5)
#: An alias is a label a person reads in ``dashtam connections`` and types after
#: ``--alias``: a few words ("My Schwab IRA"), never a document.
MAX_ALIAS_LENGTH: Final = 64


def checked_alias(alias: str | None, name: str = "alias") -> str | None:
    """A connection's alias as stored: ``None`` (no alias) stays ``None``; text is stripped
    and must then be 1 to ``MAX_ALIAS_LENGTH`` printable characters.

    Why: an alias is printed to terminals and into skip messages and reconnect commands.
    A control or format character (Unicode categories Cc, Cf: a newline, an ANSI escape,
    a right-to-left override) would rewrite what a person sees there; an empty or blank
    alias reads as none at all; a 100 KB one floods every listing. ``ProviderConnection.new``
    checks it, so every way of creating a connection (the CLI, the app through the
    ``ConnectionRepository``) is held to it. Raises ``ValueError`` with one sentence
    naming ``name`` (the CLI passes ``"--alias"``)."""
    if alias is None:
        return None
    what = (f"{name} must be 1 to {MAX_ALIAS_LENGTH} printable characters (no control or "
            "formatting characters such as newlines or terminal escapes)")
    if not isinstance(alias, str):
        raise ValueError(f"{what}, got a {type(alias).__name__}")
    text = alias.strip()
    if len(text) > MAX_ALIAS_LENGTH:
        raise ValueError(f"{what}, got {len(text)} characters")
    if not text or not text.isprintable():
        raise ValueError(f"{what}, got {shown(alias)}")
    return text


def provider_id_for(slug: str) -> uuid.UUID:
    """The provider's id, derived from its slug so every process agrees without a table."""
    return uuid.uuid5(PROVIDER_NAMESPACE, slug)


# -- result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Success:
    """A transition that happened."""

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Failure:
    """A transition that was refused, and why (the entity is unchanged)."""

    reason: str

    def __bool__(self) -> bool:
        return False


Result = Success | Failure


# -- values ------------------------------------------------------------------------------
class ConnectionStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    FAILED = "FAILED"
    DISCONNECTED = "DISCONNECTED"


class CredentialType(StrEnum):
    """A hint for the infrastructure on how to open the blob."""

    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    FILE = "file"


_S = ConnectionStatus
#: status → the statuses it may move to.
TRANSITIONS: Final[dict[ConnectionStatus, frozenset[ConnectionStatus]]] = {
    _S.PENDING: frozenset({_S.ACTIVE, _S.FAILED, _S.DISCONNECTED}),
    _S.ACTIVE: frozenset({_S.ACTIVE, _S.EXPIRED, _S.REVOKED, _S.DISCONNECTED}),
    _S.EXPIRED: frozenset({_S.ACTIVE, _S.DISCONNECTED}),
    _S.REVOKED: frozenset({_S.ACTIVE, _S.DISCONNECTED}),
    _S.FAILED: frozenset({_S.ACTIVE, _S.DISCONNECTED}),
    _S.DISCONNECTED: frozenset(),
}


def _require_aware(value: dt.datetime | None, name: str) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")


@dataclass(frozen=True)
class ProviderCredentials:
    """Encrypted credentials: the blob is never readable here, only its expiries are.

    ``expires_at`` is when the usable credential (an access token) lapses, ``None`` for
    credentials that do not expire (API keys); ``refresh_expires_at`` is when it can no
    longer be renewed without a person (Schwab's 7-day refresh token).
    """

    encrypted_data: bytes = field(repr=False)
    credential_type: CredentialType
    expires_at: dt.datetime | None = None
    refresh_expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.encrypted_data:
            raise ValueError("credentials need a non-empty encrypted blob")
        _require_aware(self.expires_at, "expires_at")
        _require_aware(self.refresh_expires_at, "refresh_expires_at")

    def is_expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def is_expiring_soon(self, now: dt.datetime, within: dt.timedelta = EXPIRING_SOON) -> bool:
        return self.expires_at is not None and self.expires_at <= now + within

    def can_refresh(self, now: dt.datetime) -> bool:
        """Whether renewal without a person is still possible (no limit: always)."""
        return self.refresh_expires_at is None or self.refresh_expires_at > now


# -- the entity --------------------------------------------------------------------------
@dataclass
class ProviderConnection:
    """One connection between the (single) user and a provider."""

    id: uuid.UUID
    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_slug: str
    status: ConnectionStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    alias: str | None = None
    credentials: ProviderCredentials | None = None
    connected_at: dt.datetime | None = None
    last_sync_at: dt.datetime | None = None
    #: Why the connection is FAILED/REVOKED/EXPIRED, for the person who must act.
    status_reason: str | None = None

    def __post_init__(self) -> None:
        if not self.provider_slug:
            raise ValueError("provider_slug is required")
        for name in ("created_at", "updated_at", "connected_at", "last_sync_at"):
            _require_aware(getattr(self, name), name)

    @classmethod
    def new(
        cls,
        provider_slug: str,
        *,
        now: dt.datetime,
        alias: str | None = None,
        user_id: uuid.UUID = DEFAULT_USER_ID,
        connection_id: uuid.UUID | None = None,
    ) -> ProviderConnection:
        """A PENDING connection: authentication has not happened yet. Its alias is checked
        (``checked_alias``: stripped, 1-64 printable characters; ``ValueError`` if not)."""
        return cls(
            id=connection_id or uuid.uuid4(),
            user_id=user_id,
            provider_id=provider_id_for(provider_slug),
            provider_slug=provider_slug,
            alias=checked_alias(alias),
            status=ConnectionStatus.PENDING,
            created_at=now,
            updated_at=now,
        )

    # -- queries ---------------------------------------------------------------------------
    def is_connected(self) -> bool:
        return self.status is ConnectionStatus.ACTIVE and self.credentials is not None

    def needs_reauthentication(self) -> bool:
        """Only a person can fix it (log in again, set new keys)."""
        return self.status in (ConnectionStatus.EXPIRED, ConnectionStatus.REVOKED,
                               ConnectionStatus.FAILED)

    def is_credentials_expired(self, now: dt.datetime) -> bool:
        return self.credentials is not None and self.credentials.is_expired(now)

    def is_credentials_expiring_soon(self, now: dt.datetime) -> bool:
        """Within ``EXPIRING_SOON`` (5 minutes) of expiry, or past it: refresh now."""
        return self.credentials is not None and self.credentials.is_expiring_soon(now)

    def is_refresh_expiring_within(self, now: dt.datetime, window: dt.timedelta) -> bool:
        """The re-login deadline falls within ``window`` (warn the person ahead of it)."""
        return (
            self.credentials is not None
            and self.credentials.refresh_expires_at is not None
            and self.credentials.refresh_expires_at <= now + window
        )

    def can_sync(self, now: dt.datetime) -> bool:
        """Connected with credentials that are usable now or can be renewed unattended."""
        if not self.is_connected() or self.credentials is None:
            return False
        return not self.credentials.is_expired(now) or self.credentials.can_refresh(now)

    # -- transitions -----------------------------------------------------------------------
    def _move(self, target: ConnectionStatus, now: dt.datetime, action: str) -> Result:
        if target not in TRANSITIONS[self.status]:
            return Failure(
                f"cannot {action} a {self.status.value} {self.provider_slug} connection "
                f"(allowed from {self.status.value}: "
                f"{', '.join(sorted(s.value for s in TRANSITIONS[self.status])) or 'nothing'})"
            )
        self.status = target
        self.updated_at = now
        return Success()

    def mark_connected(self, credentials: ProviderCredentials, *, now: dt.datetime) -> Result:
        """Authenticated: ACTIVE with these credentials (first connect or reconnect)."""
        if credentials is None:
            return Failure("mark_connected needs credentials")
        if self.status is ConnectionStatus.ACTIVE:
            return Failure(f"the {self.provider_slug} connection is already ACTIVE: use "
                           "update_credentials")
        result = self._move(ConnectionStatus.ACTIVE, now, "connect")
        if result:
            self.credentials = credentials
            self.connected_at = self.connected_at or now
            self.status_reason = None
        return result

    def mark_expired(self, *, now: dt.datetime, reason: str | None = None) -> Result:
        """Credentials lapsed and cannot be renewed unattended (credentials kept)."""
        if self.status is not ConnectionStatus.ACTIVE:
            return Failure(f"only an ACTIVE connection can expire ({self.provider_slug} is "
                           f"{self.status.value})")
        result = self._move(ConnectionStatus.EXPIRED, now, "expire")
        if result:
            self.status_reason = reason
        return result

    def mark_revoked(self, *, now: dt.datetime, reason: str | None = None) -> Result:
        """The provider refused credentials that had worked (credentials kept for audit)."""
        if self.status is not ConnectionStatus.ACTIVE:
            return Failure(f"only an ACTIVE connection can be revoked "
                           f"({self.provider_slug} is {self.status.value})")
        result = self._move(ConnectionStatus.REVOKED, now, "revoke")
        if result:
            self.status_reason = reason
        return result

    def mark_failed(self, reason: str, *, now: dt.datetime) -> Result:
        """An authentication attempt failed before the connection ever became ACTIVE."""
        result = self._move(ConnectionStatus.FAILED, now, "fail")
        if result:
            self.status_reason = reason
        return result

    def mark_disconnected(self, *, now: dt.datetime) -> Result:
        """Removed on purpose: terminal, credentials cleared."""
        if self.status is ConnectionStatus.DISCONNECTED:
            return Success()
        result = self._move(ConnectionStatus.DISCONNECTED, now, "disconnect")
        if result:
            self.credentials = None
            self.status_reason = None
        return result

    def update_credentials(
        self, credentials: ProviderCredentials, *, now: dt.datetime
    ) -> Result:
        """Renewed without a person (a token refresh): only while ACTIVE."""
        if credentials is None:
            return Failure("update_credentials needs credentials")
        if self.status is not ConnectionStatus.ACTIVE:
            return Failure(f"cannot update the credentials of a {self.status.value} "
                           f"{self.provider_slug} connection: reconnect it instead")
        self.credentials = credentials
        self.updated_at = now
        return Success()

    def record_sync(self, at: dt.datetime) -> Result:
        """A data sync succeeded at ``at`` (only while ACTIVE)."""
        _require_aware(at, "at")
        if self.status is not ConnectionStatus.ACTIVE:
            return Failure(f"cannot record a sync on a {self.status.value} "
                           f"{self.provider_slug} connection")
        self.last_sync_at = at if self.last_sync_at is None else max(self.last_sync_at, at)
        self.updated_at = at
        return Success()
