"""NewsAPI client: articles per symbol or free-text query, with a sentiment score.

NewsAPI's quirks handled here: errors arrive as ``{"status": "error", "code", "message"}``,
sometimes with HTTP 200; a developer key may read only the first 100 results, and asking
for more answers HTTP 426 ``maximumResultsReached`` (paging stops there, keeping what
came); titles and descriptions carry HTML entities (``&#039;``) and trailing spaces;
withdrawn articles stay in results as ``"[Removed]"`` placeholders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.clients.records import combine_results, typed_frame
from dashtam_pipeline.errors import ErrorKind, ProviderError, error_for_status
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.news import NewsArticleSchema
from dashtam_pipeline.sentiment import score_article

ARTICLE_COLUMNS = column_names(NewsArticleSchema)
PAGE_SIZE = 100
#: Pages read per query at most: a developer key gets 100 requests a day in all.
MAX_PAGES = 5
REMOVED_TITLE = "[Removed]"
MARKET_TZ = ZoneInfo("America/New_York")

#: NewsAPI error codes whose meaning the HTTP status does not carry (it may be 200).
ERROR_KINDS: dict[str, ErrorKind] = {
    "apiKeyInvalid": ErrorKind.AUTH,
    "apiKeyMissing": ErrorKind.AUTH,
    "apiKeyDisabled": ErrorKind.AUTH,
    "apiKeyExhausted": ErrorKind.RATE_LIMITED,
    "rateLimited": ErrorKind.RATE_LIMITED,
    "maximumResultsReached": ErrorKind.BAD_REQUEST,
    "parameterInvalid": ErrorKind.BAD_REQUEST,
    "parametersMissing": ErrorKind.BAD_REQUEST,
    "sourcesTooMany": ErrorKind.BAD_REQUEST,
    "sourceDoesNotExist": ErrorKind.NOT_FOUND,
    "unexpectedError": ErrorKind.UNAVAILABLE,
}
#: NewsAPI truncates ``content`` with "… [+1234 chars]"; the marker is not prose to score.
_TRUNCATION_MARKER = re.compile(r"\s*…?\s*\[\+\d+ chars\]\s*$")


# -- pure functions (tests feed them the recorded payloads) --------------------------------
def article_id(url: str) -> str:
    """Stable id of an article: the first 32 hex digits of the SHA-256 of its URL with
    surrounding whitespace removed (the same article found by two queries gets one id)."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:32]


def request_window(start: dt.date, end: dt.date) -> tuple[str, str]:
    """``from``/``to`` for an inclusive window of New York trading dates: ``start`` at
    00:00 New York time to the day after ``end`` at 00:00 New York time, as UTC ISO 8601."""

    def utc_midnight(day: dt.date) -> str:
        local = dt.datetime.combine(day, dt.time(0), tzinfo=MARKET_TZ)
        return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return utc_midnight(start), utc_midnight(end + dt.timedelta(days=1))


def parse_articles(
    body: Any, *, query: str, symbol: str | None, provider: str
) -> FetchResult:
    """An ``/everything`` or ``/top-headlines`` body → rows of ``news.articles``.

    ``"[Removed]"`` placeholders are dropped with a note; an article without a usable URL,
    title or publication time is rejected with its reason.
    """
    rows: list[dict[str, Any]] = []
    result = FetchResult(typed_frame(NewsArticleSchema))
    removed = 0
    for raw in _articles_array(body):
        reason = _rejection_reason(raw)
        if reason == REMOVED_TITLE:
            removed += 1
        elif reason:
            reason = f"NewsAPI {query!r}: {reason}"
            result.rejected.append(RejectedRecord(reason=reason, record=raw))
        else:
            rows.append(_row(raw, query=query, symbol=symbol, provider=provider))
    if removed:
        result.notes.append(f"{query!r}: dropped {removed} '[Removed]' placeholder article(s)")
    if rows:
        frame = pd.DataFrame(rows, columns=ARTICLE_COLUMNS)
        frame["published_at"] = pd.to_datetime(
            frame["published_at"], utc=True, format="ISO8601"
        ).dt.as_unit("us")
        result.frame = frame
    return result


def classify_newsapi_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """The error a NewsAPI answer carries: its ``code`` decides the kind (the status may be
    200); without a code, the HTTP status does."""
    is_error_body = isinstance(body, dict) and body.get("status") == "error"
    if not is_error_body and response.status_code < 400:
        return None
    code = str(body.get("code") or "") if isinstance(body, dict) else ""
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message or response.reason_phrase or "no error message").split())
    kind = ERROR_KINDS.get(code)
    if kind is None:
        kind = error_for_status(response.status_code) if response.status_code >= 400 else (
            ErrorKind.BAD_REQUEST
        )
    return ProviderError(
        ProviderSlug.NEWSAPI.value, kind, f"{code}: {text}" if code else text,
        status_code=response.status_code,
    )


def _is_result_cap(error: ProviderError) -> bool:
    """The plan's cap on readable results (HTTP 426 ``maximumResultsReached``)."""
    return error.status_code == 426 or error.message.startswith("maximumResultsReached")


def _total_results(body: dict[str, Any]) -> int:
    try:
        return int(body.get("totalResults") or 0)
    except (TypeError, ValueError):
        raise ProviderError(
            ProviderSlug.NEWSAPI.value, ErrorKind.MALFORMED,
            f"'totalResults' is not a number: {body.get('totalResults')!r}",
        ) from None


def _articles_array(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("articles"), list):
        raise ProviderError(
            ProviderSlug.NEWSAPI.value, ErrorKind.MALFORMED,
            "news response has no 'articles' array",
        )
    return body["articles"]


def _rejection_reason(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return "article is not an object"
    title = _clean(raw.get("title"))
    if title == REMOVED_TITLE:
        return REMOVED_TITLE
    if not title:
        return "article has no title"
    url = raw.get("url")
    if not isinstance(url, str) or not re.match(r"^\s*https?://", url):
        return f"article has no http(s) url: {url!r}"
    if not raw.get("publishedAt"):
        return "article has no publishedAt"
    try:
        pd.Timestamp(raw["publishedAt"])
    except (TypeError, ValueError):
        return f"unparseable publishedAt {raw['publishedAt']!r}"
    return None


def _clean(value: Any) -> str | None:
    """HTML entities unescaped and surrounding whitespace stripped; empty → None."""
    if not isinstance(value, str):
        return None
    text = html.unescape(value).strip()
    return text or None


def _row(raw: dict[str, Any], *, query: str, symbol: str | None, provider: str) -> dict[str, Any]:
    url = raw["url"].strip()
    title = _clean(raw.get("title"))
    description = _clean(raw.get("description"))
    content = raw.get("content") if isinstance(raw.get("content"), str) else None
    source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
    return {
        "article_id": article_id(url),
        "symbol": symbol,
        "query": query,
        "published_at": raw["publishedAt"],
        "source_name": _clean(source.get("name")),
        "author": _clean(raw.get("author")),
        "title": title,
        "description": description,
        "url": url,
        "content": content,
        "sentiment": score_article(
            title, description, _TRUNCATION_MARKER.sub("", content) if content else None
        ),
        "provider": provider,
    }


# -- the client ------------------------------------------------------------------------------
class NewsApiClient(ProviderClient):
    """NewsAPI ``/everything`` over the shared HTTP layer, key in the ``X-Api-Key`` header."""

    slug = ProviderSlug.NEWSAPI
    page_size: int = PAGE_SIZE
    max_pages: int = MAX_PAGES

    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.settings.secret("news_api_key")}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_newsapi_error(response, body)

    def fetch_news_articles(self, request: FetchRequest) -> FetchResult:
        """Articles published in the request's window for each of ``request.queries``.

        A query equal to one of ``request.symbols`` tags its rows with that symbol; any
        other query leaves ``symbol`` NULL. Rows are unique on (article_id, symbol).
        """
        start = request.start or request.as_of or request.end
        end = request.end or start
        if start is None or end is None:
            raise ValueError("NewsAPI fetch needs a date window (request.start/end or as_of)")
        window = request_window(start, end)
        symbols = set(request.symbols)
        results = [
            page
            for query in request.queries
            for page in self._pages(query, query if query in symbols else None, window)
        ]
        result = combine_results(results, typed_frame(NewsArticleSchema))
        before = len(result.frame)
        result.frame = result.frame.drop_duplicates(["article_id", "symbol"]).reset_index(drop=True)
        if len(result.frame) < before:
            result.notes.append(f"dropped {before - len(result.frame)} duplicate article(s)")
        return result

    def _pages(
        self, query: str, symbol: str | None, window: tuple[str, str]
    ) -> Iterator[FetchResult]:
        """Pages 1..n of one query while ``page * pageSize < totalResults``; a 426
        ``maximumResultsReached`` on a later page (the plan's result cap) ends paging with
        a note, keeping the pages already read."""
        params = {
            "q": query, "from": window[0], "to": window[1], "language": "en",
            "sortBy": "publishedAt", "pageSize": self.page_size,
        }
        for page in range(1, self.max_pages + 1):
            try:
                body = self.http.get_json("/everything", {**params, "page": page})
            except ProviderError as error:
                if page == 1 or not _is_result_cap(error):
                    raise
                yield FetchResult(
                    typed_frame(NewsArticleSchema),
                    notes=[f"{query!r}: stopped at page {page}, the plan's result cap "
                           f"(maximumResultsReached)"],
                )
                return
            yield parse_articles(body, query=query, symbol=symbol, provider=self.provider_label)
            if page * self.page_size >= _total_results(body):
                return
        yield FetchResult(
            typed_frame(NewsArticleSchema),
            notes=[f"{query!r}: read the first {self.max_pages} pages only (MAX_PAGES)"],
        )
