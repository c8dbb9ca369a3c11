"""What every provider client shares: the request it is given, the result it returns,
and its construction from registry + settings over the shared HTTP layer.

A client knows one provider's HTTP: paths, parameters, pagination, and how to turn the
provider's bodies into DataFrames with the contract's columns. Parsing lives in module
level ``parse_*`` functions so tests can feed them the recorded payloads directly.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import urlparse

import httpx
import pandas as pd

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.http import CallHook, ProviderHTTP, RetryPolicy
from dashtam_pipeline.registry import Dataset, ProviderSlug, get_provider_metadata
from dashtam_pipeline.settings import ProviderSettings

#: Host used for the in-process sandbox transport (never resolved: no socket is opened).
SANDBOX_ROOT = "http://sandbox.dashtam.invalid"


@dataclass(frozen=True)
class FetchRequest:
    """What an asset asks a client for. Fields a dataset does not use stay empty.

    ``start``/``end`` are an inclusive window of dates (a partition's trading day, or a
    look-back window for transactions, or for FRED the observation dates of a backfill,
    where both empty mean the whole history); ``as_of`` is the trading date a snapshot is for.
    ``files`` names the inbox files a file import reads (its run's partitions); empty
    means every file in the inbox, for callers that do not partition by file.
    ``user_id``/``connection_id`` name the brokerage connection the rows belong to (the
    run's connection partition): they are stamped on every row landed, and the client is
    built with that connection's credentials only. A ``start`` of ``None`` on a brokerage
    request asks for the whole history the provider offers (a connection's first sync).
    ``connection_ids`` are the connection partitions of a brokerage run: the connections
    it syncs, each on its own (empty: every connection of the provider).
    """

    symbols: tuple[str, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    as_of: dt.date | None = None
    series_ids: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    partition_key: str | None = None
    files: tuple[str, ...] = ()
    user_id: str | None = None
    connection_id: str | None = None
    connection_ids: tuple[str, ...] = ()


@dataclass
class RejectedRecord:
    """A raw record (or file) a client could not turn into a row, with the reason, and the
    user it belonged to when known (a Chase file in a user's inbox folder)."""

    reason: str
    record: Any
    partition_key: str | None = None
    user_id: str | None = None


@dataclass
class FetchResult:
    """Rows in the contract's columns, plus what was rejected and notes for the run log.

    ``companions`` holds rows of other datasets the same calls returned (FRED's ``/series``
    answer decides whether observations are pulled *and* is the series' metadata), so one
    request lands in both tables; see ``DatasetSpec.companions``.
    """

    frame: pd.DataFrame
    rejected: list[RejectedRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    companions: dict[Dataset, FetchResult] = field(default_factory=dict)


def sandbox_base_url(slug: ProviderSlug | str, root: str = SANDBOX_ROOT) -> str:
    """Where the sandbox answers a provider: ``<root>/<slug>`` + the path of the provider's
    real base URL, so clients append the same real paths as in production."""
    meta = get_provider_metadata(slug)
    path = urlparse(meta.default_base_url or "").path.rstrip("/")
    return f"{root.rstrip('/')}/{meta.slug.value}{path}"


def sandbox_transport() -> httpx.BaseTransport:
    """An in-process transport answering every provider from the sandbox app."""
    from dashtam_pipeline.sandbox.app import SandboxApp

    return httpx.WSGITransport(app=SandboxApp.shared())


class ProviderClient:
    """Base of every HTTP provider client. Subclasses set ``slug`` and implement the
    ``fetch_*`` methods of their capabilities (see ``registry.CAPABILITY_METHODS``)."""

    slug: ClassVar[ProviderSlug]

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        hooks: Sequence[CallHook] = (),
    ) -> None:
        settings, transport = sandboxed(settings, transport)
        self.settings = settings
        auth_headers = self.auth_headers()
        check_sendable_headers(self.slug, auth_headers)
        self.http = ProviderHTTP(
            settings,
            label=self.slug.value,
            transport=transport,
            auth_params=self.auth_params(),
            auth_headers=auth_headers,
            classify=self.classify,
            retry=retry,
            hooks=hooks,
        )

    # -- overridables ------------------------------------------------------------------
    def auth_params(self) -> dict[str, str]:
        """Query parameters that carry credentials (e.g. FMP's ``apikey``)."""
        return {}

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry credentials (e.g. Alpaca's ``APCA-API-KEY-ID``)."""
        return {}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        """The error a response carries, if any; ``None`` lets the shared layer decide
        from the HTTP status. Override for errors sent with HTTP 200."""
        return None

    # -- helpers -----------------------------------------------------------------------
    @property
    def provider_label(self) -> str:
        """What lands in the ``provider`` column: the slug, or ``sandbox:<slug>``."""
        return f"sandbox:{self.slug.value}" if self.settings.sandbox else self.slug.value

    def malformed(self, message: str, endpoint: str | None = None) -> ProviderError:
        return ProviderError(self.slug.value, ErrorKind.MALFORMED, message, endpoint=endpoint)

    def close(self) -> None:
        self.http.close()


class UnsendableCredentials(ProviderError):
    """Credentials that no request can carry (a key with non-ASCII or control characters
    for a header): refused before any request is built, so one user's unusable stored
    keys fail that connection alone with a sentence, instead of an ``UnicodeEncodeError``
    from deep in httpx that fails every connection of the run (or an illegal header that
    the HTTP layer would retry and count against the provider's shared circuit breaker).
    """


#: What an HTTP header value may hold (RFC 9110 field-value): visible ASCII, space, tab.
_SENDABLE_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def check_sendable_headers(slug: ProviderSlug, headers: Mapping[str, object]) -> None:
    """Raise ``UnsendableCredentials`` (kind ``auth``) naming the provider and the header,
    never its value (a secret), when a credential header cannot be sent over HTTP."""
    for name, value in headers.items():
        if isinstance(value, str) and _SENDABLE_HEADER_VALUE.fullmatch(value):
            continue
        display = get_provider_metadata(slug).display_name
        raise UnsendableCredentials(
            slug.value, ErrorKind.AUTH,
            f"the stored {display} credentials cannot be sent: the {name} header would "
            "hold characters an HTTP header cannot carry (only printable ASCII is allowed); "
            f"store the keys {display} issued again",
            retryable=False,
        )


def sandboxed(
    settings: ProviderSettings, transport: httpx.BaseTransport | None
) -> tuple[ProviderSettings, httpx.BaseTransport | None]:
    """In sandbox mode (and unless a transport is given), point a provider at the
    in-process sandbox: its sandbox base URL and the WSGI transport. Otherwise unchanged."""
    if not settings.sandbox or transport is not None:
        return settings, transport
    return replace(settings, base_url=sandbox_base_url(settings.meta.slug)), sandbox_transport()
