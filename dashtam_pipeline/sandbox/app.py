"""The sandbox: one WSGI app answering every provider's real paths.

The routes are each provider's own (``providers/<slug>/sandbox.py``, named by its
metadata's ``sandbox_routes``); this core knows no provider and imports none.

Requests arrive as ``/<slug>`` + the provider's real path (``/fmp/stable/quote``,
``/fred/fred/series/observations``...). The app counts them, applies injected faults,
dispatches to the provider's route and wraps errors in that provider's error shape.
``/_sandbox/...`` is the control plane for tests driving a server in another process.

The same app serves ``httpx.WSGITransport`` (in-process, no socket: ``SandboxApp.shared()``)
and ``sandbox.server`` (a real loopback HTTP server).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.registry import PROVIDER_REGISTRY, load_attribute
from dashtam_pipeline.sandbox.common import (
    Clock,
    HTTPFailure,
    Request,
    Response,
    json_response,
    system_clock,
)
from dashtam_pipeline.sandbox.faults import ConnectionResetFault, FaultSet
from dashtam_pipeline.sandbox.routing import Provider, World
from dashtam_pipeline.settings import (
    DEFAULT_SANDBOX_USERS,
    SANDBOX_USERS_ENV,
    sandbox_user_count,
)

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
SEED_ENV = "DASHTAM_SANDBOX_SEED"
CONTROL_PREFIX = "/_sandbox"



def sandbox_providers() -> dict[str, Provider]:
    """Every provider that declares sandbox routes (``METADATA.sandbox_routes``), by slug.

    Read from the registry rather than imported here: the sandbox core knows no provider,
    so a provider folder brings its own routes and the app answers them unchanged.
    """
    found: dict[str, Provider] = {}
    for meta in PROVIDER_REGISTRY:
        if meta.sandbox_routes:
            provider = load_attribute(meta.sandbox_routes)
            if not isinstance(provider, Provider) or provider.slug != meta.slug.value:
                raise TypeError(
                    f"{meta.sandbox_routes} is not the sandbox routes of {meta.slug.value!r} "
                    "(a dashtam_pipeline.sandbox.routing.Provider with that slug)"
                )
            found[meta.slug.value] = provider
    return found


PROVIDERS: dict[str, Provider] = sandbox_providers()

StartResponse = Callable[..., Any]


def seed_from_env() -> int:
    """``DASHTAM_SANDBOX_SEED`` or 42."""
    raw = os.environ.get(SEED_ENV, "").strip()
    return int(raw) if raw else DEFAULT_SEED


def users_from_env() -> int:
    """``DASHTAM_SANDBOX_USERS`` or 3; a bad value is the settings' one sentence (a
    ``ConfigurationError``), as every command reports it."""
    raw = os.environ.get(SANDBOX_USERS_ENV)
    if raw is None:
        return DEFAULT_SANDBOX_USERS
    try:
        return sandbox_user_count(raw)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


class SandboxApp:
    """The WSGI callable, its fault set and its request counters.

    ``seed`` fixes every generated value (default: ``DASHTAM_SANDBOX_SEED`` or 42);
    ``clock`` returns an aware UTC datetime and is what "today" and token expiry follow,
    so tests can move time without sleeping; ``users`` is how many sandbox users the
    brokerages answer for (default: ``DASHTAM_SANDBOX_USERS`` or 3).
    """

    _shared: SandboxApp | None = None
    _shared_lock = threading.Lock()

    def __init__(
        self, *, seed: int | None = None, clock: Clock | None = None, users: int | None = None
    ) -> None:
        self.seed = seed_from_env() if seed is None else seed
        self.world = World(self.seed, clock or system_clock,
                           users_from_env() if users is None else users)
        self.faults = FaultSet()
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._rate_limits: dict[str, tuple[int, float, deque[float]]] = {}

    @classmethod
    def shared(cls) -> SandboxApp:
        """The process-wide instance the in-process transport uses."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @classmethod
    def shared_if_started(cls) -> SandboxApp | None:
        """The process-wide instance if something has used it, else None (never builds one)."""
        with cls._shared_lock:
            return cls._shared

    # -- control -------------------------------------------------------------------------
    def add_fault(
        self,
        route_regex: str,
        *,
        status: int | None = None,
        delay_seconds: float = 0,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        count: int | None = None,
        reset_connection: bool = False,
    ) -> int:
        """Make the next ``count`` requests whose path matches ``route_regex`` (searched in
        the full path, e.g. ``/fmp/stable/quote``) misbehave; returns the fault's id."""
        fault = self.faults.add(
            route_regex,
            status=status,
            delay_seconds=delay_seconds,
            body=body,
            headers=headers,
            count=count,
            reset_connection=reset_connection,
        )
        return fault.id

    def clear_faults(self) -> None:
        """Remove every fault and cut short any delay in progress."""
        self.faults.clear()
        self._interrupt_delays()

    def set_rate_limit(self, slug: str, requests: int | None, window_seconds: float = 60.0) -> None:
        """Answer a provider as its server enforces its rate limit: a request arriving
        when ``requests`` others arrived in the last ``window_seconds`` (real time, a
        sliding window: the strictest reading of "N per minute") gets the provider's 429,
        counted under ``"<slug> 429"``. ``None`` removes the limit."""
        with self._lock:
            if requests is None:
                self._rate_limits.pop(slug, None)
            else:
                self._rate_limits[slug] = (requests, window_seconds, deque())

    def _over_rate_limit(self, slug: str) -> bool:
        """Whether this arrival exceeds ``slug``'s limit; arrivals refused do not count
        towards it (caller holds ``_lock``)."""
        limit = self._rate_limits.get(slug)
        if limit is None:
            return False
        requests, window, arrivals = limit
        now = time.monotonic()
        while arrivals and arrivals[0] <= now - window:
            arrivals.popleft()
        if len(arrivals) >= requests:
            self._counts[f"{slug} 429"] += 1
            return True
        arrivals.append(now)
        return False

    def request_counts(self) -> dict[str, int]:
        """Requests received, keyed ``"<slug> <path>"`` and ``"<slug>"`` (the total)."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Faults, counters and every OAuth grant forgotten; generated data is unchanged."""
        self.clear_faults()
        with self._lock:
            self._counts.clear()
        self.world.oauth.reset()

    def _interrupt_delays(self) -> None:
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()

    # -- WSGI ----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_environ(environ)
        response = self.handle(request)
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {_reason(response.status)}", headers)
        return [response.body]

    def handle(self, request: Request) -> Response:
        """Answer one request (raises ``ConnectionResetFault`` for a reset fault)."""
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            return self._control(request)
        provider = PROVIDERS.get(request.slug)
        if provider is None:
            return _index(request, status=404 if request.path not in ("", "/") else 200)
        with self._lock:
            self._counts[f"{request.slug} {request.subpath}"] += 1
            self._counts[request.slug] += 1
            wake = self._wake
            limited = self._over_rate_limit(request.slug)
        if limited:
            body = json.dumps(provider.error_body(429, "Too Many Requests")).encode("utf-8")
            return Response(429, body, [("Content-Type", "application/json")])
        fault = self.faults.take(request.path)
        if fault is not None:
            if fault.delay_seconds:
                wake.wait(fault.delay_seconds)
            if fault.reset_connection:
                raise ConnectionResetFault(request.path)
            if fault.replaces_response:
                status = fault.status or 200
                body = (
                    fault.body.encode("utf-8")
                    if fault.body is not None
                    else json.dumps(provider.error_body(status, f"Sandbox fault: HTTP {status}"))
                    .encode("utf-8")
                )
                return Response(
                    status,
                    body,
                    [("Content-Type", "application/json"), *fault.headers.items()],
                )
        response = self._dispatch(provider, request)
        if fault is not None:
            response.headers.extend(fault.headers.items())
        return response

    def _dispatch(self, provider: Provider, request: Request) -> Response:
        chosen, groups, path_known = provider.match(request.method, request.subpath)
        if chosen is None:
            status = 405 if path_known else 404
            message = f"No sandbox route for {request.method} {request.path}"
            return json_response(provider.error_body(status, message), status)
        try:
            return chosen.handler(self.world, request, groups)
        except HTTPFailure as failure:
            return failure.response
        except ValueError as exc:  # a parameter the handler could not read
            return json_response(provider.error_body(400, f"Bad request: {exc}"), 400)
        except Exception:
            log.exception("sandbox handler failed on %s %s", request.method, request.path)
            return json_response(provider.error_body(500, "Internal sandbox error"), 500)

    # -- /_sandbox -----------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        method = request.method
        if action == "/faults" and method == "POST":
            try:
                args = json.loads(request.body or b"{}")
                fault_id = self.add_fault(**args)
            except (TypeError, ValueError) as exc:
                return json_response({"error": f"bad fault: {exc}"}, 400)
            return json_response({"id": fault_id}, 201)
        if action == "/faults" and method == "DELETE":
            self.clear_faults()
            return json_response({"cleared": True})
        if action == "/faults" and method == "GET":
            return json_response(self.faults.describe())
        if action == "/requests" and method == "GET":
            return json_response(self.request_counts())
        if action == "/reset" and method == "POST":
            self.reset()
            return json_response({"reset": True})
        if action == "/callback" and method == "GET":
            # a stand-in OAuth callback page: shows what the redirect carried
            return json_response({"code": request.param("code"),
                                  "session": request.param("session"),
                                  "redirect_url": f"{request.root_url}{request.path}?"
                                  f"{request.query_string}"})
        return json_response({"error": f"no control route {method} {request.path}"}, 404)


def request_from_environ(environ: dict[str, Any]) -> Request:
    """The handler's view of a WSGI environ."""
    path = environ.get("PATH_INFO", "") or "/"
    query_string = environ.get("QUERY_STRING", "")
    query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    form: dict[str, str] = {}
    if "application/x-www-form-urlencoded" in headers.get("content-type", ""):
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    parts = path.split("/", 2)
    slug = parts[1] if len(parts) > 1 else ""
    subpath = "/" + parts[2] if len(parts) > 2 else ""
    return Request(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=path,
        slug=slug,
        subpath=subpath,
        query=query,
        headers=headers,
        body=body,
        root_url=f"{environ.get('wsgi.url_scheme', 'http')}://{host}",
        form=form,
        query_string=query_string,
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _index(request: Request, status: int) -> Response:
    """What the sandbox serves, and where (also the body of an unknown route's 404)."""
    from dashtam_pipeline.clients.base import sandbox_base_url

    body: dict[str, Any] = {
        "sandbox": "dashtam",
        "providers": {slug: sandbox_base_url(slug, request.root_url) for slug in PROVIDERS},
    }
    if status == 404:
        body = {"error": "not_found",
                "message": f"No sandbox route for {request.method} {request.path}"} | body
    return json_response(body, status)
