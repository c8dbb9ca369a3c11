"""What the client tests share: a client over ``httpx.MockTransport`` configured as in
production (sandbox off, no retry waits), and a handler that answers with recorded
payloads (or any body) while recording every request it is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pandas as pd

from dashtam_pipeline.http import RetryPolicy
from dashtam_pipeline.settings import ProviderSettings, load_settings

Handler = Callable[[httpx.Request], httpx.Response]
ClientT = TypeVar("ClientT")

#: Retries without waiting between attempts.
NO_WAIT = RetryPolicy(initial_wait=0.0)


def offline_settings(slug: str, **values: Any) -> ProviderSettings:
    """One provider's settings with the sandbox off and ``values`` (keys, base URL) set."""
    return load_settings(dashtam_sandbox=False, **values).provider(slug)


def mock_client(
    client_class: Callable[..., ClientT],
    handler: Handler,
    settings: ProviderSettings,
    **client_options: Any,
) -> ClientT:
    """A client whose every request is answered by ``handler``, retrying without waits."""
    return client_class(settings, transport=httpx.MockTransport(handler), retry=NO_WAIT,
                        **client_options)


def unused(request: httpx.Request) -> httpx.Response:
    """A handler for tests that must not send any request."""
    raise AssertionError(f"unexpected request {request.url}")


def json_response(body: Any, status: int = 200) -> httpx.Response:
    """A JSON answer sent as bytes with its content type, as a provider sends it."""
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})


def as_response(answer: Any) -> httpx.Response:
    """A response as is; bytes as a JSON body verbatim; anything else encoded as JSON."""
    if isinstance(answer, httpx.Response):
        return answer
    if isinstance(answer, bytes):
        return httpx.Response(200, content=answer, headers={"Content-Type": "application/json"})
    return httpx.Response(200, json=answer)


class Recorder:
    """A mock-transport handler that records every request and answers it with
    ``answer(request)`` (a response, JSON bytes, or a body to encode as JSON)."""

    def __init__(self, answer: Callable[[httpx.Request], Any]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    @classmethod
    def by_path(cls, routes: dict[str, Any]) -> Recorder:
        """Answers by URL path; a callable answer is called with the request (to pick by
        query)."""

        def answer(request: httpx.Request) -> Any:
            found = routes[request.url.path]
            return found(request) if callable(found) else found

        return cls(answer)

    @classmethod
    def in_order(cls, *answers: Any) -> Recorder:
        """Answers each request with the next of ``answers``."""
        queue = list(answers)
        return cls(lambda request: queue.pop(0))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return as_response(self.answer(request))

    def params(self, index: int) -> dict[str, str]:
        """The query parameters of the ``index``-th request."""
        return dict(self.requests[index].url.params)


#: The owner a client test's rows are given before they are validated: clients know the
#: provider, the ingestion stamps whose the rows are (``ingest.stamp_owner``).
TEST_USER_ID = "00000000-0000-5000-8000-000000000001"
TEST_CONNECTION_ID = "11111111-1111-5111-8111-111111111111"


def owned(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``user_id``/``connection_id`` filled where a client left them empty,
    as the ingestion does before validating (the brokerage schemas require them)."""
    frame = frame.copy()
    for name, value in (("user_id", TEST_USER_ID), ("connection_id", TEST_CONNECTION_ID)):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), value) \
            if name in frame else value
    return frame
