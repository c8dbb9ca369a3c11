"""Typed errors: every failure names the provider, what happened, and whether a retry helps.

The shared HTTP layer (``http.py``) and each client's classifier raise these; the retry
policy, the asset factory (skip vs fail) and, later, the circuit breaker and DLQ decide
on ``retryable`` and ``kind`` alone, never on message text.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    AUTH = "auth"  # bad or expired credentials (401, most 403s)
    NOT_ENTITLED = "not_entitled"  # the plan does not include this endpoint
    RATE_LIMITED = "rate_limited"  # 429 or a quota message
    BAD_REQUEST = "bad_request"  # a parameter the provider refuses
    NOT_FOUND = "not_found"  # unknown symbol / series / resource
    UNAVAILABLE = "unavailable"  # 5xx, timeouts, connection errors
    MALFORMED = "malformed"  # a body that is not what the API documents
    NOT_CONFIGURED = "not_configured"  # required settings missing
    NOT_CONNECTED = "not_connected"  # OAuth provider with no usable connection
    RIGHTS_DENIED = "rights_denied"  # license profile forbids the dataset
    INVALID_FILE = "invalid_file"  # a file import that is not the expected export
    CIRCUIT_OPEN = "circuit_open"  # refused without a request: the provider's breaker is open
    QUOTA_EXHAUSTED = "quota_exhausted"  # refused without a request: the daily quota is used up


RETRYABLE_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE, ErrorKind.MALFORMED})

#: Kinds worth replaying later (the provider was down, busy or out of quota), as opposed
#: to permanent ones (auth, bad input, schema) that need a person.
TRANSIENT_KINDS = frozenset(
    {*RETRYABLE_KINDS, ErrorKind.CIRCUIT_OPEN, ErrorKind.QUOTA_EXHAUSTED}
)

#: Kinds that mean "this provider cannot run now, through no fault of the data": the asset
#: is skipped with its reason instead of failing the run.
SKIPPABLE_KINDS = frozenset(
    {ErrorKind.NOT_CONFIGURED, ErrorKind.NOT_CONNECTED, ErrorKind.RIGHTS_DENIED}
)


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose (the CLI prints these plainly)."""


class ConfigurationError(PipelineError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


class ProviderError(PipelineError):
    """A provider call or import failed. The message never contains a secret."""

    def __init__(
        self,
        provider: str,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" on {self.endpoint}" if self.endpoint else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        advice = "a retry may help" if self.retryable else "retrying will not help"
        return f"{self.provider}: {self.kind.value}{where}{status}: {self.message}; {advice}"

    def __reduce__(self) -> tuple[object, ...]:
        # keep the fields when Dagster pickles the error across processes
        return (
            _rebuild_provider_error,
            (
                type(self),
                self.provider,
                self.kind,
                self.message,
                self.status_code,
                self.endpoint,
                self.retry_after,
                self.retryable,
            ),
        )


def _rebuild_provider_error(
    cls: type[ProviderError],
    provider: str,
    kind: ErrorKind,
    message: str,
    status_code: int | None,
    endpoint: str | None,
    retry_after: float | None,
    retryable: bool,
) -> ProviderError:
    return cls(
        provider,
        kind,
        message,
        status_code=status_code,
        endpoint=endpoint,
        retry_after=retry_after,
        retryable=retryable,
    )


def error_for_status(status_code: int) -> ErrorKind:
    """The usual meaning of an HTTP status; clients refine it from the body."""
    if status_code in (401, 403):
        return ErrorKind.AUTH
    if status_code == 404:
        return ErrorKind.NOT_FOUND
    if status_code == 429:
        return ErrorKind.RATE_LIMITED
    if status_code >= 500 or status_code in (408, 425):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_REQUEST
