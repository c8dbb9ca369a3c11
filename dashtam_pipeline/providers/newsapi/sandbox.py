"""NewsAPI ``/v2/everything`` with the developer plan's limits.

The key may come as ``apiKey``, ``X-Api-Key`` or ``Authorization``. ``totalResults``
counts every match, but a developer key can only page through the first 100: a request
with ``page * pageSize > 100`` gets HTTP 426 ``maximumResultsReached``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashtam_pipeline.providers.newsapi.sandbox_data import search
from dashtam_pipeline.sandbox.common import (
    Request,
    Response,
    fail,
    json_response,
    parse_instant,
)
from dashtam_pipeline.sandbox.routing import Provider, World, route

DEVELOPER_MAX_RESULTS = 100
MAX_PAGE_SIZE = 100
DEFAULT_WINDOW = dt.timedelta(days=7)

_CODES = {
    401: ("apiKeyInvalid", "Your API key is invalid or incorrect. Check your key, or go to "
          "https://newsapi.org to create a free API key."),
    429: ("rateLimited", "You have made too many requests recently. Developer accounts are "
          "limited to 100 requests over a 24 hour period (50 requests available every 12 "
          "hours). Please upgrade to a paid plan if you need more requests."),
}


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    if code is None and status in _CODES:
        code, message = _CODES[status]
    return {"status": "error", "code": code or "unexpectedError", "message": message}


def _checked(request: Request) -> None:
    key = (
        request.param("apiKey")
        or request.header("x-api-key")
        or (request.header("authorization") or "").removeprefix("Bearer ").strip()
    )
    if key == "invalid":
        raise fail(error_body(401, ""), 401)


def everything(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    query = request.param("q") or request.param("qInTitle")
    if not query:
        raise fail(
            error_body(400, "Required parameters are missing, the scope of your search is too "
                       "broad. Please set any of the following required parameters and try "
                       "again: q, qInTitle, sources, domains.", "parametersMissing"),
            400,
        )
    try:
        page = request.int_param("page", 1)
        page_size = min(request.int_param("pageSize", MAX_PAGE_SIZE), MAX_PAGE_SIZE)
        now = world.now()
        end = min(parse_instant(request.param("to"), end_of_day=True) or now, now)
        start = parse_instant(request.param("from")) or end - DEFAULT_WINDOW
    except ValueError as exc:
        raise fail(error_body(400, f"Invalid parameter: {exc}", "parameterInvalid"), 400) from exc
    if page < 1 or page_size < 1:
        raise fail(error_body(400, "page and pageSize must be positive.", "parameterInvalid"), 400)
    if page * page_size > DEVELOPER_MAX_RESULTS:
        raise fail(
            error_body(
                426,
                "You have requested too many results. Developer accounts are limited to a max "
                f"of {DEVELOPER_MAX_RESULTS} results. You are trying to request results "
                f"{(page - 1) * page_size} to {page * page_size}. Please upgrade to a paid plan "
                "if you need more results.",
                "maximumResultsReached",
            ),
            426,
        )
    language = request.param("language", "en")
    found = [] if language != "en" else search(
        world.seed, query, start, end, request.param("sortBy", "publishedAt") or "publishedAt"
    )
    window = found[(page - 1) * page_size : page * page_size]
    return json_response(
        {"status": "ok", "totalResults": len(found), "articles": [a.body for a in window]}
    )


PROVIDER = Provider(
    slug="newsapi",
    routes=(route("GET", r"/v2/everything", everything),),
    error_body=error_body,
)
