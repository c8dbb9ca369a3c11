"""FRED / ALFRED client: series metadata and every vintage of every observation.

Observations are fetched as ALFRED vintages (``realtime_start=1776-07-04`` to
``realtime_end=9999-12-31``) so the warehouse can answer "what was known on day X"
(``macro.fred_as_of``), not only today's revised values. FRED sends values as strings with
``"."`` for a missing value, and marks the current vintage with ``realtime_end=9999-12-31``,
a date outside pandas' nanosecond range: dates therefore stay ``datetime.date`` objects.
Parsing is vectorized over a handful of distinct date strings, because a daily series'
full vintage history runs to tens of thousands of rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import httpx
import pandas as pd

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.clients.records import combine_results, concat_frames, typed_frame
from dashtam_pipeline.errors import ErrorKind, ProviderError, error_for_status
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.macro import FredObservationSchema, FredSeriesSchema

#: ALFRED's whole real-time period: every vintage ever published, up to the current one.
REALTIME_START = dt.date(1776, 7, 4)
REALTIME_END = dt.date(9999, 12, 31)
#: The largest page FRED serves.
PAGE_LIMIT = 100_000
MISSING_VALUE = "."

SERIES_COLUMNS = column_names(FredSeriesSchema)
OBSERVATION_COLUMNS = column_names(FredObservationSchema)
_OBSERVATION_FIELDS = ("date", "value", "realtime_start", "realtime_end")


# -- pure parsers (tests feed them the recorded payloads) ----------------------------------
def parse_series(body: Any) -> pd.DataFrame:
    """``/series`` body → rows of ``macro.fred_series`` (the array is FRED's ``seriess``)."""
    if not isinstance(body, dict) or not isinstance(body.get("seriess"), list):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "series response has no 'seriess' array", endpoint="/series",
        )
    rows = [
        {
            "series_id": item.get("id"),
            "title": item.get("title"),
            "frequency": item.get("frequency"),
            "units": item.get("units"),
            "seasonal_adjustment": item.get("seasonal_adjustment"),
            "observation_start": _date_or_none(item.get("observation_start")),
            "observation_end": _date_or_none(item.get("observation_end")),
            "last_updated": item.get("last_updated"),
            "notes": item.get("notes"),
        }
        for item in body["seriess"]
    ]
    frame = pd.DataFrame(rows, columns=SERIES_COLUMNS)
    # FRED writes "2024-12-19 07:55:01-06" (US Central with an hour-only offset)
    frame["last_updated"] = pd.to_datetime(
        frame["last_updated"], utc=True, format="ISO8601"
    ).dt.as_unit("us")
    return frame


def parse_observations(body: Any, series_id: str) -> FetchResult:
    """``/series/observations`` body → rows of ``macro.fred_observations``.

    ``"."`` becomes NaN (NULL). A row whose value is neither a number nor ``"."``, or whose
    dates do not parse, is rejected with its reason instead of failing the whole series.
    """
    observations = _observations_array(body)
    if not observations:
        return FetchResult(typed_frame(FredObservationSchema))
    raw = pd.DataFrame.from_records(observations, columns=list(_OBSERVATION_FIELDS))
    frame = pd.DataFrame({"series_id": series_id}, index=raw.index)
    bad = pd.Series("", index=raw.index, dtype=object)

    for column in ("date", "realtime_start", "realtime_end"):
        frame[column] = _parse_dates(raw[column])
        bad = bad.where(frame[column].notna(), f"unparseable {column}")

    text = raw["value"].astype(object)
    missing = text.isna() | (text == MISSING_VALUE)
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = bad.where(missing | values.notna(), "value is neither a number nor '.'")
    frame["value"] = values.astype("float64")

    rejected_mask = bad != ""
    rejected = [
        RejectedRecord(reason=f"FRED {series_id}: {bad[i]}", record=observations[i])
        for i in raw.index[rejected_mask]
    ]
    frame = frame.loc[~rejected_mask, OBSERVATION_COLUMNS].reset_index(drop=True)
    notes = [f"{series_id}: rejected {len(rejected)} observation(s)"] if rejected else []
    return FetchResult(frame, rejected, notes)


def parse_vintage_dates(body: Any) -> list[dt.date]:
    """``/series/vintagedates`` body → the days a series' values were published or revised."""
    if not isinstance(body, dict) or not isinstance(body.get("vintage_dates"), list):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "vintagedates response has no 'vintage_dates' array",
            endpoint="/series/vintagedates",
        )
    return [dt.date.fromisoformat(value) for value in body["vintage_dates"]]


def classify_fred_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """FRED answers every refusal with HTTP 400 and ``{"error_code", "error_message"}``; the
    message says which refusal it is. Other statuses (429, 5xx, often with an HTML page
    from a proxy) mean what their status means."""
    status = response.status_code
    fred_refusal = isinstance(body, dict) and bool(body.get("error_message"))
    if status < 400 and not fred_refusal:
        return None
    message = _error_message(response, body)
    kind = error_for_status(status) if status >= 400 else ErrorKind.BAD_REQUEST
    if fred_refusal and status in (400, 200):
        lowered = message.lower()
        if "variable api_key" in lowered or "api key" in lowered:
            kind = ErrorKind.AUTH
        elif "series does not exist" in lowered:
            kind = ErrorKind.NOT_FOUND
    return ProviderError(ProviderSlug.FRED.value, kind, message, status_code=status)


def _error_message(response: httpx.Response, body: Any) -> str:
    if isinstance(body, dict) and body.get("error_message"):
        text = str(body["error_message"])
    else:
        text = response.text[:200] or response.reason_phrase or "no error message"
    return " ".join(text.split())


def _observations_array(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("observations"), list):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "observations response has no 'observations' array",
            endpoint="/series/observations",
        )
    return body["observations"]


def _date_or_none(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def _parse_dates(values: pd.Series) -> pd.Series:
    """ISO dates → ``datetime.date`` (None where unparseable), parsing each distinct string
    once: a vintage history repeats a few hundred dates across thousands of rows."""
    lookup = {text: _date_or_none(text) for text in values.dropna().unique()}
    return values.map(lookup).astype(object)


def _iso(value: dt.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


# -- the client ------------------------------------------------------------------------------
class FredClient(ProviderClient):
    """FRED over the shared HTTP layer: ``api_key`` and ``file_type=json`` on every call."""

    slug = ProviderSlug.FRED

    def auth_params(self) -> dict[str, str]:
        return {"api_key": self.settings.secret("fred_api_key")}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_fred_error(response, body)

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        return self.http.get_json(path, {**params, "file_type": "json"})

    # -- datasets ------------------------------------------------------------------------
    def fetch_fred_series(self, request: FetchRequest) -> FetchResult:
        """Metadata of each of ``request.series_ids`` (one ``/series`` call per id)."""
        frames: list[pd.DataFrame] = []
        result = FetchResult(typed_frame(FredSeriesSchema))
        for series_id in request.series_ids:
            body = self._per_series(result, series_id, "/series", {"series_id": series_id})
            if body is not None:
                frames.append(parse_series(body))
        result.frame = concat_frames(frames, result.frame)
        return result

    def fetch_fred_observations(self, request: FetchRequest) -> FetchResult:
        """Every vintage of every observation of each of ``request.series_ids``."""
        results = [self.fetch_observations(series_id) for series_id in request.series_ids]
        return combine_results(results, typed_frame(FredObservationSchema))

    def fetch_observations(
        self,
        series_id: str,
        *,
        realtime_start: dt.date | str = REALTIME_START,
        realtime_end: dt.date | str = REALTIME_END,
        observation_start: dt.date | str | None = None,
        observation_end: dt.date | str | None = None,
        limit: int = PAGE_LIMIT,
    ) -> FetchResult:
        """One series' observations in a real-time window (default: every vintage) and an
        optional observation window, paging with ``offset`` while ``offset + limit < count``.

        Narrow windows serve incremental loads: e.g. ``realtime_start`` = the last vintage
        date already stored fetches only the vintages published since.
        """
        params = {
            "series_id": series_id,
            "realtime_start": _iso(realtime_start),
            "realtime_end": _iso(realtime_end),
            "observation_start": _iso(observation_start),
            "observation_end": _iso(observation_end),
            "limit": limit,
        }
        skipped = FetchResult(typed_frame(FredObservationSchema))
        pages = [skipped]
        offset = 0
        while True:
            page_params = {**params, "offset": offset}
            body = self._per_series(skipped, series_id, "/series/observations", page_params)
            if body is None:
                break
            pages.append(parse_observations(body, series_id))
            if not _observations_array(body) or offset + limit >= _count(body):
                break
            offset += limit
        return combine_results(pages, skipped.frame)

    def fetch_vintage_dates(self, series_id: str) -> list[dt.date]:
        """Days on which the series' values were published or revised."""
        body = self._get(
            "/series/vintagedates",
            {"series_id": series_id, "realtime_start": REALTIME_START.isoformat(),
             "realtime_end": REALTIME_END.isoformat(), "limit": 10_000},
        )
        return parse_vintage_dates(body)

    # -- helpers -------------------------------------------------------------------------
    def _per_series(
        self, result: FetchResult, series_id: str, path: str, params: Mapping[str, Any]
    ) -> Any:
        """The body for one series, or None when FRED says the series does not exist: an
        unknown id in the configured list is bad input (quarantined with its reason), not a
        reason to fail the other series. Every other error propagates."""
        try:
            return self._get(path, params)
        except ProviderError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
            result.rejected.append(
                RejectedRecord(reason=str(error), record={"series_id": series_id})
            )
            result.notes.append(f"{series_id}: FRED has no such series; skipped")
            return None


def _count(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("count", 0))
    except (TypeError, ValueError):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            f"observations 'count' is not a number: {json.dumps(body.get('count'))}",
            endpoint="/series/observations",
        ) from None
