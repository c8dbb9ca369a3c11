"""FRED/ALFRED: ``/series``, ``/series/observations``, ``/series/vintagedates`` and
``/series/updates``.

Envelopes, parameter names and error texts follow the recorded responses: values are
strings with ``"."`` for missing, every row carries its vintage's ``realtime_start`` and
``realtime_end`` (clipped to the requested real-time window, as FRED does), and an
unknown ``series_id`` is HTTP 400, not 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashtam_pipeline.sandbox.common import (
    CHICAGO,
    Request,
    Response,
    fail,
    json_response,
    parse_date,
)
from dashtam_pipeline.sandbox.fred_data import OPEN_END, SeriesSpec, Vintage, series_spec
from dashtam_pipeline.sandbox.routing import Provider, World, route

EARLIEST = dt.date(1776, 7, 4)
MAX_OBSERVATIONS = 100_000
MAX_VINTAGE_DATES = 10_000
#: The most vintage dates one observations request may span (FRED's rule, undocumented).
MAX_VINTAGES_PER_REQUEST = 2_000


def error_body(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        message = "Too Many Requests.  Exceeded Rate Limit"
    return {"error_code": status, "error_message": message or f"Bad Request.  HTTP {status}."}


def _bad(message: str) -> Exception:
    return fail(error_body(400, f"Bad Request.  {message}"), 400)


def _checked(request: Request) -> None:
    if request.param("api_key") == "invalid":
        raise _bad(
            "The value for variable api_key is not registered.  Read "
            "https://fred.stlouisfed.org/docs/api/api_key.html for more information."
        )
    file_type = request.param("file_type", "xml")
    if file_type != "json":
        raise _bad(f"The sandbox answers file_type=json only (got {file_type!r}).")


def _series(request: Request) -> SeriesSpec:
    series_id = request.param("series_id")
    if not series_id:
        raise _bad("Variable series_id is not set.")
    spec = series_spec(series_id)
    if spec is None:
        raise _bad("The series does not exist.")
    return spec


def _date_param(request: Request, name: str, default: dt.date) -> dt.date:
    try:
        return parse_date(request.param(name)) or default
    except ValueError:
        raise _bad(f"Variable {name} is not a valid date (YYYY-MM-DD).") from None


def _realtime(request: Request, today: dt.date) -> tuple[dt.date, dt.date]:
    start = _date_param(request, "realtime_start", today)
    end = _date_param(request, "realtime_end", today)
    if end > today and end != OPEN_END:
        raise _bad(
            f"Variable realtime_end can not be after today's date ({today.isoformat()}) "
            "unless it's equal to the real-time max date 9999-12-31."
        )
    if start < EARLIEST or start > end:
        raise _bad("Variable realtime_start can not be after realtime_end.")
    return start, end


def _limit_offset(request: Request, maximum: int) -> tuple[int, int]:
    try:
        limit, offset = request.int_param("limit", maximum), request.int_param("offset", 0)
    except ValueError:
        raise _bad("Variable limit or offset is not an integer.") from None
    if not 1 <= limit <= maximum:
        raise _bad(f"Variable limit is not between 1 and {maximum}.")
    if offset < 0:
        raise _bad("Variable offset is not a non-negative integer.")
    return limit, offset


def _sort_order(request: Request) -> str:
    order = request.param("sort_order", "asc") or "asc"
    if order not in ("asc", "desc"):
        raise _bad("Variable sort_order is not one of the values: 'asc', 'desc'")
    return order


def _fred_today(world: World) -> dt.date:
    """FRED's own day (St. Louis, US Central time)."""
    return world.now().astimezone(CHICAGO).date()


def _last_updated(moment: dt.datetime) -> str:
    """``2024-12-19 07:55:01-06``: Central time with an hours-only UTC offset."""
    local = moment.astimezone(CHICAGO)
    offset = int((local.utcoffset() or dt.timedelta()).total_seconds() // 3600)
    return f"{local:%Y-%m-%d %H:%M:%S}{offset:+03d}"


def _series_item(
    world: World, spec: SeriesSpec, today: dt.date, start: dt.date, end: dt.date,
    *, notes: bool = True,
) -> dict[str, Any]:
    """One entry of a ``seriess`` array (``/series/updates`` entries carry no notes)."""
    vintages = world.fred.vintages(spec, today)
    item: dict[str, Any] = {
        "id": spec.id,
        "realtime_start": start.isoformat(),
        "realtime_end": end.isoformat(),
        "title": spec.title,
        "observation_start": vintages[0].date.isoformat(),
        "observation_end": vintages[-1].date.isoformat(),
        "frequency": spec.frequency,
        "frequency_short": spec.frequency_short,
        "units": spec.units,
        "units_short": spec.units_short,
        "seasonal_adjustment": spec.seasonal_adjustment,
        "seasonal_adjustment_short": spec.seasonal_adjustment_short,
        "last_updated": _last_updated(world.fred.last_updated(spec, today, world.now())),
        "popularity": spec.popularity,
    }
    if notes:
        item["notes"] = spec.notes
    return item


def series(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    spec = _series(request)
    today = _fred_today(world)
    start, end = _realtime(request, today)
    return json_response(
        {
            "realtime_start": start.isoformat(),
            "realtime_end": end.isoformat(),
            "seriess": [_series_item(world, spec, today, start, end)],
        }
    )


def _rows(
    vintages: list[Vintage], start: dt.date, end: dt.date, first: dt.date, last: dt.date,
    initial_only: bool,
) -> list[dict[str, str]]:
    seen: set[dt.date] = set()
    rows = []
    for v in vintages:
        if not first <= v.date <= last:
            continue
        if initial_only:
            if v.date in seen:
                continue
            seen.add(v.date)
        if v.start > end or v.end < start:
            continue
        rows.append(
            {
                "realtime_start": max(v.start, start).isoformat(),
                "realtime_end": min(v.end, end).isoformat(),
                "date": v.date.isoformat(),
                "value": v.value,
            }
        )
    return rows


def _within_vintage_limit(vintages: list[Vintage], start: dt.date, end: dt.date) -> None:
    """FRED refuses an observations request whose real-time period spans more than 2,000
    vintage dates (any daily series over its whole history), whatever its ``limit``."""
    count = len({v.start for v in vintages if start <= v.start <= end})
    if count > MAX_VINTAGES_PER_REQUEST:
        raise _bad(
            f"There are {count} vintage dates in the specified real-time period: "
            f"{start.isoformat()} to {end.isoformat()}.  This exceeds the maximum number of "
            f"vintage dates allowed ({MAX_VINTAGES_PER_REQUEST})."
        )


def observations(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    spec = _series(request)
    today = _fred_today(world)
    start, end = _realtime(request, today)
    first = _date_param(request, "observation_start", dt.date(1600, 1, 1))
    last = _date_param(request, "observation_end", OPEN_END)
    limit, offset = _limit_offset(request, MAX_OBSERVATIONS)
    order = _sort_order(request)
    units = request.param("units", "lin")
    if units != "lin":
        raise _bad("The sandbox serves units=lin only.")
    output_type = request.param("output_type", "1")
    if output_type not in ("1", "4"):
        raise _bad("The sandbox serves output_type 1 and 4 only.")
    vintages = world.fred.vintages(spec, today)
    _within_vintage_limit(vintages, start, end)
    rows = _rows(vintages, start, end, first, last, output_type == "4")
    if order == "desc":
        rows.sort(key=lambda r: r["date"], reverse=True)
    return json_response(
        {
            "realtime_start": start.isoformat(),
            "realtime_end": end.isoformat(),
            "observation_start": first.isoformat(),
            "observation_end": last.isoformat(),
            "units": units,
            "output_type": int(output_type),
            "file_type": "json",
            "order_by": "observation_date",
            "sort_order": order,
            "count": len(rows),
            "offset": offset,
            "limit": limit,
            "observations": rows[offset : offset + limit],
        }
    )


def vintage_dates(world: World, request: Request, _: dict[str, str]) -> Response:
    _checked(request)
    spec = _series(request)
    today = _fred_today(world)
    start = _date_param(request, "realtime_start", EARLIEST)
    end = _date_param(request, "realtime_end", OPEN_END)
    limit, offset = _limit_offset(request, MAX_VINTAGE_DATES)
    order = _sort_order(request)
    dates = sorted({v.start for v in world.fred.vintages(spec, today) if start <= v.start <= end})
    if order == "desc":
        dates.reverse()
    return json_response(
        {
            "realtime_start": start.isoformat(),
            "realtime_end": end.isoformat(),
            "order_by": "vintage_date",
            "sort_order": order,
            "count": len(dates),
            "offset": offset,
            "limit": limit,
            "vintage_dates": [d.isoformat() for d in dates[offset : offset + limit]],
        }
    )


#: How far back ``/series/updates`` reaches: FRED documents that it lists only recently
#: updated series (about the last two weeks); older updates are simply not listed.
UPDATES_WINDOW = dt.timedelta(days=14)
MAX_UPDATES = 1_000
_FILTER_VALUES = ("all", "macro", "regional")


def _fred_time(request: Request, name: str) -> dt.datetime | None:
    """``start_time``/``end_time``: ``YYYYMMDDHhmm`` in FRED's own time zone (Central)."""
    text = request.param(name)
    if not text:
        return None
    try:
        moment = dt.datetime.strptime(text, "%Y%m%d%H%M")
    except ValueError:
        raise _bad(f"Variable {name} is not in the format YYYYMMDDHhmm.") from None
    return moment.replace(tzinfo=CHICAGO)


def updates(world: World, request: Request, _: dict[str, str]) -> Response:
    """``fred/series/updates``: series ordered by ``last_updated``, newest first, paged by
    ``limit`` (≤ 1,000) and ``offset``; ``start_time``/``end_time`` (both or neither)
    narrow it to updates in that span, and only updates of about the last two weeks are
    listed at all. ``realtime_start``/``realtime_end`` are accepted and, as FRED
    documents for this endpoint, do not change which series are listed. Every sandbox
    series is national: ``filter_value=regional`` lists none."""
    _checked(request)
    today = _fred_today(world)
    start, end = _realtime(request, today)
    limit, offset = _limit_offset(request, MAX_UPDATES)
    filter_value = request.param("filter_value", "all") or "all"
    if filter_value not in _FILTER_VALUES:
        raise _bad("Variable filter_value is not one of the values: 'macro', 'regional', "
                   "'all'")
    since, until = _fred_time(request, "start_time"), _fred_time(request, "end_time")
    if (since is None) != (until is None):
        raise _bad("Variables start_time and end_time must be set together.")
    now = world.now()
    oldest = now - UPDATES_WINDOW
    listed: list[tuple[dt.datetime, dict[str, Any]]] = []
    if filter_value != "regional":
        for series_id in world.fred.known_ids():
            spec = series_spec(series_id)
            if spec is None:
                continue
            moment = world.fred.last_updated(spec, today, now)
            if moment < oldest or (since is not None and not since <= moment):
                continue
            # minute precision, as the parameters: end_time 202406141855 includes 18:55:59
            if until is not None and moment >= until + dt.timedelta(minutes=1):
                continue
            listed.append((moment, _series_item(world, spec, today, start, end, notes=False)))
    listed.sort(key=lambda pair: (pair[0], pair[1]["id"]), reverse=True)
    return json_response(
        {
            "realtime_start": start.isoformat(),
            "realtime_end": end.isoformat(),
            "filter_variable": "geography",
            "filter_value": filter_value,
            "order_by": "last_updated",
            "sort_order": "desc",
            "count": len(listed),
            "offset": offset,
            "limit": limit,
            "seriess": [item for _, item in listed[offset : offset + limit]],
        }
    )


PROVIDER = Provider(
    slug="fred",
    routes=(
        route("GET", r"/fred/series", series),
        route("GET", r"/fred/series/observations", observations),
        route("GET", r"/fred/series/vintagedates", vintage_dates),
        route("GET", r"/fred/series/updates", updates),
    ),
    error_body=error_body,
)
