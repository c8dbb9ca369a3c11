"""The one HTTP layer every provider client goes through.

It owns what must be the same for every provider: the base URL and timeout from the
registry and settings, credential injection (query parameter or header), retries with
exponential backoff and jitter on transient failures (honouring ``Retry-After``), error
classification into ``ProviderError``, secret redaction, and a per-call record that the
assets publish as materialization metadata. Clients only say which path to call with
which parameters, and how to read the body.

Later layers (circuit breaker, rate limits, rights, audit trail, DLQ) plug in as
``CallHook`` objects, so neither clients nor assets learn how to retry.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from dashtam_pipeline.errors import ErrorKind, ProviderError, error_for_status
from dashtam_pipeline.settings import ProviderSettings

# httpx logs every request URL at INFO, and provider keys travel in query strings.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

REDACTED = "***"
SECRET_PARAM_NAMES = frozenset(
    {"apikey", "api_key", "apiKey", "token", "access_token", "refresh_token", "client_secret",
     "code", "password"}
)
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(apikey|api_key|access_token|refresh_token|client_secret|token|code)=([^&\s\"']+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove every known secret value and every secret-looking query parameter."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


@dataclass(frozen=True)
class RetryPolicy:
    """3 attempts, waits of about 1 s, 2 s, 4 s with jitter; ``Retry-After`` wins, capped."""

    attempts: int = 3
    initial_wait: float = 1.0
    max_wait: float = 30.0
    jitter: float = 0.25
    retry_after_cap: float = 60.0

    def wait_seconds(self, attempt_number: int, error: BaseException | None) -> float:
        if isinstance(error, ProviderError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.retry_after_cap)
        base = min(self.initial_wait * (2 ** (attempt_number - 1)), self.max_wait)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


@dataclass
class CallRecord:
    """One HTTP attempt, without secrets: what the audit trail and metadata are made of."""

    provider: str
    method: str
    endpoint: str
    attempt: int
    status_code: int | None
    latency_ms: float
    outcome: str  # "ok" or an ErrorKind value
    error: str | None = None


class CallHook(Protocol):
    """Extension point for the resilience layer: consulted before each attempt (may raise a
    ``ProviderError`` to refuse it) and told the result of each attempt."""

    def before_attempt(self, provider: str, endpoint: str) -> None: ...

    def after_attempt(self, record: CallRecord) -> None: ...


@dataclass
class CallStats:
    """Collects ``CallRecord``s; assets turn them into materialization metadata."""

    records: list[CallRecord] = field(default_factory=list)

    def before_attempt(self, provider: str, endpoint: str) -> None:
        return None

    def after_attempt(self, record: CallRecord) -> None:
        self.records.append(record)

    def summary(self) -> dict[str, Any]:
        latencies = sorted(r.latency_ms for r in self.records)

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

        return {
            "calls": len(self.records),
            "retries": sum(1 for r in self.records if r.attempt > 1),
            "failures": sum(1 for r in self.records if r.outcome != "ok"),
            "latency_p50_ms": pct(0.5),
            "latency_p95_ms": pct(0.95),
        }


#: Reads a response (status and decoded JSON, or None when the body is not JSON) and
#: returns the error it carries, or None. Clients supply one for their API's quirks,
#: such as errors sent with HTTP 200.
ErrorClassifier = Callable[[httpx.Response, Any], ProviderError | None]


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class ProviderHTTP:
    """An httpx client bound to one provider: base URL, timeout, auth, retries, redaction."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        label: str,
        transport: httpx.BaseTransport | None = None,
        auth_params: Mapping[str, str] | None = None,
        auth_headers: Mapping[str, str] | None = None,
        classify: ErrorClassifier | None = None,
        retry: RetryPolicy | None = None,
        hooks: Sequence[CallHook] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.label = label
        self.auth_params = dict(auth_params or {})
        self.auth_headers = dict(auth_headers or {})
        self.classify = classify
        self.retry = retry or RetryPolicy()
        self.hooks = list(hooks)
        self.stats = CallStats()
        self._sleep = sleep
        self._secrets = [*settings.secret_values(), *self.auth_params.values(),
                         *self.auth_headers.values()]
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds),
            follow_redirects=False,
        )

    # -- public ------------------------------------------------------------------------
    def add_secret(self, value: str) -> None:
        """Register a value (e.g. a fresh OAuth token) that must never appear in output."""
        if value:
            self._secrets.append(value)

    def set_auth_header(self, name: str, value: str) -> None:
        self.auth_headers[name] = value
        self.add_secret(value)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def url(self, path: str) -> str:
        """``base_url`` + the provider's real path; a path may already be absolute
        (pagination cursors such as Polygon's ``next_url``)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.settings.base_url.rstrip("/") + "/" + path.lstrip("/")

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        return self.request_json("GET", path, params=params, headers=headers)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        use_auth: bool = True,
    ) -> Any:
        """Send with retries; return the decoded JSON body or raise ``ProviderError``."""
        endpoint = self._endpoint_label(path)
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            retry=retry_if_exception(
                lambda e: isinstance(e, ProviderError) and e.retryable
            ),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                return self._attempt(
                    method, path, endpoint, number, params, headers, data, use_auth
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._client.close()

    # -- internals ---------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.retry.wait_seconds(state.attempt_number, error)

    def _endpoint_label(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            path = httpx.URL(path).path
        return self.redact(path)

    def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        attempt: int,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
        use_auth: bool,
    ) -> Any:
        for hook in self.hooks:
            hook.before_attempt(self.label, endpoint)
        url = self.url(path)
        # httpx replaces a URL's own query when params are given: keep a cursor URL's
        # parameters (Polygon's next_url) and add ours on top.
        parsed = httpx.URL(url)
        query = {**dict(parsed.params.multi_items()),
                 **{k: v for k, v in (params or {}).items() if v is not None}}
        url = str(parsed.copy_with(query=None))
        all_headers = {"Accept": "application/json", **(headers or {})}
        if use_auth:
            query.update(self.auth_params)
            all_headers.update(self.auth_headers)
        started = time.perf_counter()
        status: int | None = None
        try:
            try:
                response = self._client.request(
                    method, url, params=query or None, headers=all_headers, data=data
                )
            except httpx.TimeoutException as exc:
                raise ProviderError(
                    self.label, ErrorKind.UNAVAILABLE,
                    f"no answer within {self.settings.timeout_seconds:g} s "
                    f"({type(exc).__name__})",
                    endpoint=endpoint,
                ) from None
            except httpx.TransportError as exc:
                raise ProviderError(
                    self.label, ErrorKind.UNAVAILABLE,
                    f"connection failed: {self.redact(type(exc).__name__ + ': ' + str(exc))}",
                    endpoint=endpoint,
                ) from None
            status = response.status_code
            body = self._decode(response)
            error = self.classify(response, body) if self.classify else None
            if error is None and response.status_code >= 400:
                error = self._default_error(response, body)
            if error is None and body is _NOT_JSON:
                error = ProviderError(
                    self.label, ErrorKind.MALFORMED,
                    f"response is not JSON: {self.redact(response.text[:120])!r}",
                    status_code=status,
                )
            if error is not None:
                error.endpoint = error.endpoint or endpoint
                error.provider = self.label
                error.message = self.redact(error.message)
                if error.retry_after is None and error.kind in (
                    ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE
                ):
                    error.retry_after = _retry_after_seconds(response)
                error.args = (str(error),)
                raise error
            self._record(method, endpoint, attempt, status, started, "ok", None)
            return body
        except ProviderError as error:
            self._record(method, endpoint, attempt, status, started, error.kind.value, str(error))
            raise

    def _record(
        self, method: str, endpoint: str, attempt: int, status: int | None,
        started: float, outcome: str, error: str | None,
    ) -> None:
        record = CallRecord(
            provider=self.label, method=method, endpoint=endpoint, attempt=attempt,
            status_code=status, latency_ms=(time.perf_counter() - started) * 1000,
            outcome=outcome, error=error,
        )
        self.stats.after_attempt(record)
        for hook in self.hooks:
            hook.after_attempt(record)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if not response.content.strip():
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            return _NOT_JSON

    def _default_error(self, response: httpx.Response, body: Any) -> ProviderError:
        message = ""
        if isinstance(body, dict):
            for key in ("message", "error", "Error Message", "error_description", "errors"):
                if body.get(key):
                    message = str(body[key])
                    break
        if not message:
            text = response.text if body is _NOT_JSON else json.dumps(body)
            message = (text or response.reason_phrase or "").strip()[:200]
        return ProviderError(
            self.label, error_for_status(response.status_code), message,
            status_code=response.status_code,
        )


class _NotJson:
    def __repr__(self) -> str:
        return "<not JSON>"


_NOT_JSON: Any = _NotJson()


def is_not_json(body: Any) -> bool:
    """True when the body could not be decoded as JSON (for classifiers)."""
    return body is _NOT_JSON
