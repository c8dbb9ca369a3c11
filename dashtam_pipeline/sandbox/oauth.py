"""Schwab's OAuth authorization-code flow, as the sandbox plays it.

Codes and tokens are opaque strings that carry their own signed expiry (an HMAC keyed by
the sandbox seed), so a token issued by one sandbox process is honoured by another with
the same seed — the CLI's ``dashtam connect schwab`` and a later pipeline run are
separate processes. The instance also remembers what it issued and what was used, so a
code works once and ``reset()`` forgets every grant. Expiry follows the app's clock.

Every grant names the sandbox user who logged in at the authorize step; the code, the
refresh token and every access token it leads to carry that user, so a token answers for
that user's accounts only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.sandbox.common import Clock, stable_seed

ACCESS_TTL = dt.timedelta(minutes=30)
REFRESH_TTL = dt.timedelta(days=7)
CODE_TTL = dt.timedelta(minutes=10)
_JWT_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256"}').decode().rstrip("=")


class OAuthError(Exception):
    """A token-endpoint refusal: the HTTP status and Schwab's body for it."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


def invalid_client() -> OAuthError:
    return OAuthError(401, {"error": "invalid_client", "error_description": "Unauthorized"})


def invalid_grant(reason: str) -> OAuthError:
    return OAuthError(400, {"error_description": reason, "error": "invalid_grant"})


def refresh_refused(token: str) -> OAuthError:
    digest = base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()[:44]
    return OAuthError(
        400,
        {
            "error_description": "Exception while authenticating refresh token "
            f"[tokenDigest={digest}, Exception=Failed refresh token authentication "
            f"[tokenDigest={digest}]]",
            "error": "refresh_token_authentication_error",
        },
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """What a signed code or token says about itself."""

    kind: str  # code | access | refresh
    client_id: str
    expires: dt.datetime
    redirect_uri: str
    nonce: str
    user: int = 1  # the sandbox user who logged in


class OAuthServer:
    """Issues and checks codes and tokens (thread-safe)."""

    def __init__(self, seed: int, clock: Clock) -> None:
        self._key = hashlib.sha256(f"dashtam-sandbox-oauth|{seed}".encode()).digest()
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every code, token and revocation; restart the code sequence."""
        with self._lock:
            self._codes = random.Random(stable_seed("oauth-codes", self._seed))
            self._used_codes: set[str] = set()
            self._issued: dict[str, Grant] = {}
            self._revoked: set[str] = set()

    # -- signing -------------------------------------------------------------------------
    def _sign(self, grant: Grant, prefix: str) -> str:
        payload = json.dumps(
            [grant.kind, grant.client_id, int(grant.expires.timestamp()), grant.redirect_uri,
             grant.nonce, grant.user],
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
        return f"{prefix}{_b64(payload)}.{_b64(mac)}@"

    def _open(self, token: str, kind: str) -> Grant | None:
        """The grant a token carries if its signature, kind and expiry are good."""
        try:
            payload_text, mac_text = token.rstrip("@").split(".")[-2:]
            payload = _unb64(payload_text)
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
            if not hmac.compare_digest(expected, _unb64(mac_text)):
                return None
            # tokens signed before sandbox users existed have no user: they were user 1's
            found_kind, client, expires, redirect, nonce, *rest = json.loads(payload)
            user = int(rest[0]) if rest else 1
        except (ValueError, IndexError, TypeError):
            return None
        grant = Grant(found_kind, client, dt.datetime.fromtimestamp(expires, dt.UTC), redirect,
                      nonce, user)
        if grant.kind != kind or grant.expires <= self._clock() or token in self._revoked:
            return None
        return grant

    # -- the flow ------------------------------------------------------------------------
    def authorize(self, client_id: str, redirect_uri: str, user: int = 1) -> tuple[str, str]:
        """A new code for ``client_id`` granted by sandbox user ``user``, and the login
        session id (deterministic per instance: the n-th code of a fresh sandbox is always
        the same)."""
        with self._lock:
            nonce = f"{self._codes.getrandbits(96):024x}"
            session = str(uuid.UUID(int=self._codes.getrandbits(128), version=4))
        grant = Grant("code", client_id, self._clock() + CODE_TTL, redirect_uri, nonce, user)
        return self._sign(grant, "C0."), session

    def exchange_code(self, client_id: str, code: str, redirect_uri: str | None) -> dict:
        grant = self._open(code, "code")
        if grant is None:
            raise invalid_grant("Bad authorization code: code is unknown or expired")
        if grant.client_id != client_id:
            raise invalid_grant("Bad authorization code: issued to another client")
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            raise invalid_grant("Bad authorization code: redirect_uri does not match")
        with self._lock:
            if code in self._used_codes:
                raise invalid_grant("Bad authorization code: code was already used")
            self._used_codes.add(code)
        now = self._clock()
        refresh = self._issue("refresh", client_id, now + REFRESH_TTL, "", grant.user)
        return self._token_body(client_id, refresh, now, grant.user)

    def refresh(self, client_id: str, refresh_token: str) -> dict:
        grant = self._open(refresh_token, "refresh")
        if grant is None or grant.client_id != client_id:
            raise refresh_refused(refresh_token)
        return self._token_body(client_id, refresh_token, self._clock(), grant.user)

    def access_grant(self, token: str) -> Grant | None:
        """The grant of a valid, unexpired access token, else ``None``."""
        return self._open(token, "access")

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def _issue(
        self, kind: str, client_id: str, expires: dt.datetime, prefix: str, user: int
    ) -> str:
        token = self._sign(Grant(kind, client_id, expires, "", secrets.token_hex(12), user),
                           prefix)
        with self._lock:
            self._issued[token] = Grant(kind, client_id, expires, "", "", user)
        return token

    def _token_body(
        self, client_id: str, refresh_token: str, now: dt.datetime, user: int
    ) -> dict:
        """Schwab's token response, keys in the order Schwab sends them."""
        access = self._issue("access", client_id, now + ACCESS_TTL, "I0.", user)
        claims = _b64(json.dumps({"sub": client_id, "iat": int(now.timestamp())}).encode())
        return {
            "expires_in": int(ACCESS_TTL.total_seconds()),
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": refresh_token,
            "access_token": access,
            "id_token": f"{_JWT_HEADER}.{claims}.{_b64(secrets.token_bytes(16))}",
        }
