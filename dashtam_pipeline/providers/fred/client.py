"""FRED / ALFRED client: series metadata and every vintage of every observation.

Observations are fetched as ALFRED vintages (``realtime_start=1776-07-04`` to
``realtime_end=9999-12-31``) so the warehouse can answer "what was known on day X"
(``macro.fred_as_of``), not only today's revised values. FRED sends values as strings with
``"."`` for a missing value, and marks the current vintage with ``realtime_end=9999-12-31``,
a date outside pandas' nanosecond range: dates therefore stay ``datetime.date`` objects.
Parsing runs in Arrow's kernels (dates cast to ``date32``, values to ``float64``), because a
daily series' full vintage history runs to tens of thousands of rows; only a page with a
bad row takes the pandas path that names each rejected row's reason.

Series are fetched concurrently by a bounded thread pool (``fetch_workers``): the shared
``httpx.Client`` is thread-safe, and the resilience hooks keep their state in the state
store, whose connections are per thread, so the rate limit holds across threads as it
does across processes. Every page of every series is concatenated once, at the end.

Incremental pulls (with a ``FredSync``): a nightly run first asks FRED's
``/series/updates`` which series changed since the last check (1,000 a page, newest
first; ``check_updates``), from 00:00 Central of FRED's day of the last check recorded in
``fred_sync``. A configured series it does not name costs nothing; one it names with a
new ``last_updated`` is pulled again with its metadata taken from the updates entry (no
``/series``; ``notes``, which the entry lacks, from the last ``/series`` answer kept in
``fred_sync``). Per-series ``/series`` checks remain where they are cheaper or the only
sound way: fewer than two series with a mark, a last check older than the ~two weeks the
endpoint lists, or more pages left than series still unnamed. A ``/series`` check compares
``last_updated`` with the mark: equal, no observations are requested. A changed series'
*whole* vintage history is pulled again, not only ``realtime_start=<last sync>``: FRED
clips every row to the requested real-time window, so the vintage that was current at the
last sync would come back with ``realtime_start`` = the window start, a key that never
existed, beside the stored row it should have closed. The ``/series`` answer is also the
series' metadata: it comes back as companion rows of ``macro.fred_series``
(``FetchResult.companions``), so one request per series serves both tables.

FRED refuses an observations request whose real-time period spans more than 2,000
vintage dates (every daily series over eight years). The windows are sized before asking
(``plan_windows``) from the metadata: FRED publishes on weekdays and never before a
period starts, so ``weekday_count(observation_start, today)`` bounds the vintage dates;
a daily history is requested in windows of 2,000 weekdays that share their edge day
(``join_overlapping_windows`` joins the two halves of the vintage current on it), a long
weekly one by its vintage dates (``/series/vintagedates``, windows of exactly 2,000,
``stitch_windows``), everything else in one request. ``request_budget`` records what each
series costs; tests hold it to the minimum, 1 + ceil(vintage dates / 2,000).

A backfill over an observation-date range (``FetchRequest.start``/``end``) pulls every
vintage of the observations in that range; it is not a full pull, so it records no sync
mark and never skips a series as unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient, RejectedRecord
from dashtam_pipeline.clients.records import combine_results, typed_frame
from dashtam_pipeline.errors import ErrorKind, ProviderError, error_for_status
from dashtam_pipeline.fred_sync import FredSync, SyncMark, normalize_last_updated
from dashtam_pipeline.http import CallHook, RetryPolicy
from dashtam_pipeline.registry import Dataset, ProviderSlug
from dashtam_pipeline.schemas.base import column_names
from dashtam_pipeline.schemas.macro import FredObservationSchema, FredSeriesSchema
from dashtam_pipeline.settings import ProviderSettings, Settings

#: ALFRED's whole real-time period: every vintage ever published, up to the current one.
REALTIME_START = dt.date(1776, 7, 4)
REALTIME_END = dt.date(9999, 12, 31)
#: The largest page FRED serves.
PAGE_LIMIT = 100_000
#: The most vintage dates one observations request may span.
MAX_VINTAGES_PER_REQUEST = 2_000
#: The largest page of ``/series/vintagedates``.
VINTAGE_DATES_PAGE = 10_000
_VINTAGE_LIMIT = re.compile(r"maximum number of vintage dates", re.IGNORECASE)
MISSING_VALUE = "."
#: The most series fetched at once: beyond it, threads only queue in the rate limiter.
MAX_WORKERS = 8
#: The largest page of ``/series/updates``.
UPDATES_PAGE = 1_000
#: How far back the nightly trusts ``/series/updates``: FRED documents that it lists only
#: recent updates (about the last two weeks); a day less, for the since-time's overlap.
UPDATES_REACH = dt.timedelta(days=13)
#: Fewer series with a sync mark than this are checked one ``/series`` each: one
#: request per series costs no more than the updates list's first page.
MIN_SERIES_FOR_UPDATES = 2
_CHICAGO = ZoneInfo("America/Chicago")

T = TypeVar("T")

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
    if not all(isinstance(item, dict) for item in body["seriess"]):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "series response has an entry that is not an object", endpoint="/series",
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
    try:
        frame["last_updated"] = pd.to_datetime(
            frame["last_updated"], utc=True, format="ISO8601"
        ).dt.as_unit("us")
    except (ValueError, TypeError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            f"series response has an unreadable last_updated ({type(exc).__name__})",
            endpoint="/series",
        ) from None
    return frame


def parse_observations(body: Any, series_id: str) -> FetchResult:
    """``/series/observations`` body → rows of ``macro.fred_observations``.

    ``"."`` becomes NaN (NULL). A row whose value is neither a number nor ``"."``, or whose
    dates do not parse, is rejected with its reason instead of failing the whole series.
    """
    observations = _observations_array(body)
    if not observations:
        return FetchResult(typed_frame(FredObservationSchema))
    fast = _arrow_frame(observations, series_id)
    if fast is not None:
        return FetchResult(fast)
    # the row-reasoning path: each observation read on its own, so nested garbage, a
    # value that is not a number, "nan"/"inf"/1e400 or a date that does not parse rejects
    # that observation with its reason, never the whole series
    rows: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    dates: dict[str, dt.date | None] = {}
    for observation in observations:
        reason, row = _observation_row(observation, series_id, dates)
        if reason:
            rejected.append(RejectedRecord(reason=f"FRED {series_id}: {reason}",
                                           record=observation))
        else:
            rows.append(row)
    frame = pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)
    for column in ("date", "realtime_start", "realtime_end"):
        frame[column] = frame[column].astype(object)
    frame["value"] = frame["value"].astype("float64")
    notes = [f"{series_id}: rejected {len(rejected)} observation(s)"] if rejected else []
    return FetchResult(frame, rejected, notes)


def _arrow_frame(observations: list[dict[str, Any]], series_id: str) -> pd.DataFrame | None:
    """The common case, all in Arrow's C++ kernels: every date parses and every value is
    a number or ``"."``. None when any row does not (or a field is not a string), so the
    row-reasoning path above can say which rows to reject and why."""
    try:
        table = pa_arrow.Table.from_pylist(
            observations,
            schema=pa_arrow.schema([(name, pa_arrow.string()) for name in _OBSERVATION_FIELDS]),
        )
        columns: dict[str, Any] = {}
        for name in ("date", "realtime_start", "realtime_end"):
            parsed = pc.cast(table[name], pa_arrow.date32())
            if parsed.null_count:
                return None
            columns[name] = parsed.to_pandas(date_as_object=True)
        text = table["value"]
        missing = pc.or_kleene(pc.is_null(text), pc.equal(text, MISSING_VALUE))
        values = pc.cast(pc.if_else(missing, None, text), pa_arrow.float64())
        if pc.any(pc.or_kleene(pc.is_inf(values), pc.is_nan(values))).as_py():
            return None  # "nan"/"inf"/"1e400": the row path below rejects them by name
    except (pa_arrow.ArrowInvalid, pa_arrow.ArrowTypeError, pa_arrow.ArrowNotImplementedError,
            TypeError, AttributeError, ValueError, KeyError):  # not a list of string fields
        return None
    frame = pd.DataFrame({"series_id": series_id}, index=pd.RangeIndex(table.num_rows))
    for name in ("date", "realtime_start", "realtime_end"):
        frame[name] = columns[name].astype(object)
    frame["value"] = values.to_pandas().astype("float64")
    return frame[OBSERVATION_COLUMNS]


def parse_vintage_dates(body: Any) -> list[dt.date]:
    """``/series/vintagedates`` body → the days a series' values were published or revised."""
    if not isinstance(body, dict) or not isinstance(body.get("vintage_dates"), list):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "vintagedates response has no 'vintage_dates' array",
            endpoint="/series/vintagedates",
        )
    try:
        return [dt.date.fromisoformat(value) for value in body["vintage_dates"]]
    except (TypeError, ValueError):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "vintagedates response has a vintage date that is not YYYY-MM-DD",
            endpoint="/series/vintagedates",
        ) from None


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
        elif _VINTAGE_LIMIT.search(message):
            return VintageLimitExceeded(
                ProviderSlug.FRED.value, ErrorKind.BAD_REQUEST, message, status_code=status
            )
    return ProviderError(ProviderSlug.FRED.value, kind, message, status_code=status)


class VintageLimitExceeded(ProviderError):
    """FRED's refusal of a real-time period spanning more than 2,000 vintage dates: the
    client answers it by pulling the period in smaller windows."""


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


def _observation_row(
    observation: Any, series_id: str, dates: dict[str, dt.date | None]
) -> tuple[str, dict[str, Any]]:
    """``(reason, row)``: the reason is empty when the observation is usable. ``dates``
    caches parsed date strings (a vintage history repeats a few hundred dates)."""
    if not isinstance(observation, Mapping):
        return f"observation is a {type(observation).__name__}, not an object", {}
    row: dict[str, Any] = {"series_id": series_id}
    for column in ("date", "realtime_start", "realtime_end"):
        text = observation.get(column)
        if not isinstance(text, str):
            return f"unparseable {column}", {}
        if text not in dates:
            dates[text] = _date_or_none(text)
        if dates[text] is None:
            return f"unparseable {column}", {}
        row[column] = dates[text]
    value = observation.get("value")
    if value is None or value == MISSING_VALUE:
        row["value"] = math.nan  # FRED's "." : NULL
        return "", row
    try:
        number = float(value) if isinstance(value, (str, int, float)) and not isinstance(
            value, bool) else None
    except (ValueError, OverflowError):
        number = None
    if number is None or math.isnan(number):
        return "value is neither a number nor '.'", {}
    if math.isinf(number):
        return "value is not a finite number", {}
    row["value"] = number
    return "", row


def _iso(value: dt.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


# -- the client ------------------------------------------------------------------------------
class FredClient(ProviderClient):
    """FRED over the shared HTTP layer: ``api_key`` and ``file_type=json`` on every call.

    ``sync`` turns on incremental pulls (see the module docstring); without it every pull
    is a full one. ``max_workers`` overrides the thread pool's size (``fetch_workers``).
    """

    slug = ProviderSlug.FRED

    @classmethod
    def wiring(cls, settings: Settings) -> dict[str, Any]:
        """What ``clients.build_client`` adds for this provider: the incremental-pull
        bookkeeping in the state store, so unchanged series cost one request a night."""
        return {"sync": FredSync.from_settings(settings)}

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        hooks: Sequence[CallHook] = (),
        sync: FredSync | None = None,
        max_workers: int | None = None,
    ) -> None:
        super().__init__(settings, transport=transport, retry=retry, hooks=hooks)
        self.sync = sync
        self.max_workers = max_workers
        self._pending: list[SyncMark] = []
        self._pending_lock = threading.Lock()

    def auth_params(self) -> dict[str, str]:
        return {"api_key": self.settings.secret("fred_api_key")}

    def classify(self, response: httpx.Response, body: Any) -> ProviderError | None:
        return classify_fred_error(response, body)

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        return self.http.get_json(path, {**params, "file_type": "json"})

    # -- datasets ------------------------------------------------------------------------
    def fetch_fred_series(self, request: FetchRequest) -> FetchResult:
        """Metadata of each of ``request.series_ids`` (one ``/series`` call per id)."""
        results = self._each_series(request.series_ids, self._series_result)
        return combine_results(results, typed_frame(FredSeriesSchema))

    def fetch_fred_observations(self, request: FetchRequest) -> FetchResult:
        """Every vintage of every observation of each of ``request.series_ids`` (of the
        observation dates ``request.start``..``end`` when given), with each series'
        metadata as companion ``macro.fred_series`` rows. With a ``sync``, a whole-history
        pull skips the series FRED reports as unchanged since their last pull."""
        window = ObservationWindow(request.start, request.end)
        with self._pending_lock:
            self._pending = []  # marks of an earlier, never landed pull are void
        check = (self.check_updates(request.series_ids)
                 if self.sync is not None and window.whole_history else None)
        pulls = self._each_series(request.series_ids, lambda s: self._pull(s, window, check))
        result = combine_results(
            [page for pull in pulls for page in pull.pages], typed_frame(FredObservationSchema)
        )
        result.companions[Dataset.FRED_SERIES] = combine_results(
            [pull.series for pull in pulls], typed_frame(FredSeriesSchema)
        )
        if check is not None:
            result.notes.extend(check.notes)
        return result

    def check_updates(self, series_ids: Sequence[str]) -> UpdatesCheck | None:
        """Which of ``series_ids`` changed since the last check, from FRED's
        ``/series/updates`` (1,000 series a page, newest first) instead of one ``/series``
        per series; None when per-series checks are the way (see below).

        The check starts at 00:00 Central of the oldest ``realtime_start_synced`` among
        the series' sync marks (``fred_sync``) and ends an hour past our clock (FRED
        wants both ends). Per-series ``/series`` checks are kept when fewer than
        ``MIN_SERIES_FOR_UPDATES`` series have a mark (one request each is no dearer),
        when the since-time is older than ``UPDATES_REACH`` (the endpoint would silently
        leave the older updates out), and, after the first page, for the series not yet
        named when the pages left outnumber them."""
        assert self.sync is not None
        marks = self.sync.marks(series_ids)
        checked = [s for s in dict.fromkeys(series_ids) if s in marks]
        if len(checked) < MIN_SERIES_FOR_UPDATES:
            return None
        since_day = min(marks[s].realtime_start_synced for s in checked)
        since = dt.datetime(since_day.year, since_day.month, since_day.day, tzinfo=_CHICAGO)
        now = self.sync.clock()
        if now - since > UPDATES_REACH:
            return UpdatesCheck.none(
                f"fred updates: last check {since_day} is beyond the ~2 weeks "
                f"/series/updates lists; {len(checked)} series checked one by one"
            )
        until = max(now, since) + dt.timedelta(hours=1)
        params = {
            "filter_value": "all",
            "start_time": f"{since.astimezone(_CHICAGO):%Y%m%d%H%M}",
            "end_time": f"{until.astimezone(_CHICAGO):%Y%m%d%H%M}",
            "limit": UPDATES_PAGE,
        }
        wanted = set(checked)
        named: dict[str, dict[str, Any]] = {}
        offset, pages, total = 0, 0, 0
        fred_today: dt.date | None = None
        while True:
            body = self._get("/series/updates", {**params, "offset": offset})
            pages += 1
            items = _updates_items(body)
            total = _count(body, "/series/updates")
            fred_today = fred_today or _date_or_none(body.get("realtime_start"))
            for item in items:
                series_id = str(item.get("id") or "")
                if series_id in wanted and series_id not in named:
                    named[series_id] = item
            offset += len(items)
            if not items or offset >= total:
                covered = set(checked)
                break
            pages_left = math.ceil((total - offset) / UPDATES_PAGE)
            if pages_left >= len(wanted) - len(named):
                covered = set(named)  # the rest: one /series each is cheaper
                break
        today = fred_today or now.astimezone(_CHICAGO).date()
        changed = {
            s: item for s, item in named.items()
            if not marks[s].unchanged(normalize_last_updated(item.get("last_updated")))
        }
        return UpdatesCheck(
            covered=covered,
            changed=changed,
            marks=marks,
            notes_by_series=self.sync.notes(list(changed)),
            fred_today=today,
            notes=[
                f"fred updates: {pages} page(s) of /series/updates since {since:%Y-%m-%d %H:%M} "
                f"Central ({total} series updated); {len(changed)} of {len(checked)} "
                f"configured series changed"
                + ("" if covered == set(checked) else
                   f"; {len(checked) - len(covered)} checked one by one")
            ],
        )

    def after_landed(self) -> list[str]:
        """Record the sync marks of the last pull, now that its rows are in the lake
        (``ingest`` calls this only after a successful write)."""
        with self._pending_lock:
            marks, self._pending = self._pending, []
        if self.sync is None or not marks:
            return []
        self.sync.record(marks)
        names = ", ".join(m.series_id for m in marks)
        return [f"fred sync: recorded {len(marks)} series ({names})"]

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
        A window FRED refuses as too many vintage dates is split (see the module docstring).
        """
        window = ObservationWindow(_as_date(observation_start), _as_date(observation_end))
        pages = self._pull_window(
            series_id, window, _as_date(realtime_start) or REALTIME_START,
            _as_date(realtime_end) or REALTIME_END, limit,
        )
        return combine_results(pages, typed_frame(FredObservationSchema))

    def fetch_vintage_dates(
        self,
        series_id: str,
        realtime_start: dt.date = REALTIME_START,
        realtime_end: dt.date = REALTIME_END,
    ) -> list[dt.date]:
        """Days on which the series' values were published or revised (every page)."""
        dates: list[dt.date] = []
        while True:
            body = self._get(
                "/series/vintagedates",
                {"series_id": series_id, "realtime_start": realtime_start.isoformat(),
                 "realtime_end": realtime_end.isoformat(), "limit": VINTAGE_DATES_PAGE,
                 "offset": len(dates)},
            )
            page = parse_vintage_dates(body)
            dates.extend(page)
            if not page or len(dates) >= _count(body, "/series/vintagedates"):
                return dates

    # -- pulling -------------------------------------------------------------------------
    def _pull(
        self, series_id: str, window: ObservationWindow, updates: UpdatesCheck | None = None
    ) -> SeriesPull:
        """One series: its ``/series`` answer (the metadata, and with a ``sync`` the
        change check), then its observations unless a whole-history pull finds it
        unchanged. A whole-history pull leaves a pending sync mark. A series the
        ``updates`` check settled costs no ``/series``: unchanged, nothing; changed, its
        observations, with metadata from its updates entry."""
        if updates is not None and series_id in updates.covered:
            return self._pull_from_updates(series_id, window, updates)
        pull = SeriesPull(FetchResult(typed_frame(FredSeriesSchema)))
        check = FetchResult(typed_frame(FredObservationSchema))
        pull.pages.append(check)
        body = self._per_series(check, series_id, "/series", {"series_id": series_id})
        if body is None:
            return pull
        pull.series.frame = parse_series(body)
        last_updated, fred_today = _series_stamp(body)
        # incremental bookkeeping only for whole-history pulls: a date-range backfill
        # neither skips an unchanged series nor counts as its sync
        sync = self.sync if window.whole_history else None
        previous = sync.get(series_id) if sync is not None else None
        if previous is not None and previous.unchanged(last_updated):
            check.notes.append(
                f"{series_id}: unchanged since the last pull (last_updated {last_updated}); "
                "no observations requested"
            )
        else:
            pull.pages.extend(
                self._pull_window(
                    series_id, window, REALTIME_START, REALTIME_END, PAGE_LIMIT,
                    plan=_plan_from(pull.series.frame, fred_today),
                )
            )
            if not window.whole_history:
                check.notes.append(f"{series_id}: pulled every vintage of {window}")
            elif sync is not None:
                check.notes.append(
                    f"{series_id}: first pull; pulled every vintage" if previous is None else
                    f"{series_id}: updated {previous.last_updated} -> {last_updated}; "
                    "pulled every vintage again"
                )
        if sync is not None:
            notes = pull.series.frame["notes"].iloc[0] if len(pull.series.frame) else None
            self._add_pending(sync.mark(series_id, last_updated, fred_today,
                                        notes if isinstance(notes, str) else None))
        return pull

    def _pull_from_updates(
        self, series_id: str, window: ObservationWindow, updates: UpdatesCheck
    ) -> SeriesPull:
        assert self.sync is not None
        pull = SeriesPull(FetchResult(typed_frame(FredSeriesSchema)))
        check = FetchResult(typed_frame(FredObservationSchema))
        pull.pages.append(check)
        previous = updates.marks[series_id]
        item = updates.changed.get(series_id)
        if item is None:
            check.notes.append(f"{series_id}: not in /series/updates since the last check; "
                               "no request")
            self._add_pending(replace(previous, realtime_start_synced=updates.fred_today,
                                      synced_at=self.sync.clock(), notes=None))
            return pull
        entry = {**item, "notes": updates.notes_by_series.get(series_id)}
        pull.series.frame = parse_series({"seriess": [entry]})
        last_updated = normalize_last_updated(item.get("last_updated"))
        pull.pages.extend(self._pull_window(
            series_id, window, REALTIME_START, REALTIME_END, PAGE_LIMIT,
            plan=_plan_from(pull.series.frame, updates.fred_today),
        ))
        check.notes.append(f"{series_id}: updated {previous.last_updated} -> {last_updated} "
                           "(/series/updates); pulled every vintage again")
        self._add_pending(self.sync.mark(series_id, last_updated, updates.fred_today))
        return pull

    def _pull_window(
        self,
        series_id: str,
        window: ObservationWindow,
        realtime_start: dt.date,
        realtime_end: dt.date,
        limit: int,
        *,
        plan: WindowPlan | None = None,
    ) -> list[FetchResult]:
        """Every page of one series' observations in a real-time period, in the windows
        ``plan`` sized from the series' metadata (see ``plan_windows``); without a plan,
        one request. A window FRED still refuses as too many vintage dates is split by
        its vintage dates, and the rows FRED clipped at window edges are stitched back."""
        single = plan is None or (not plan.ask_vintage_dates and len(plan.windows) <= 1)
        if single:
            try:
                return self._observation_pages(
                    series_id,
                    self._params(series_id, window, realtime_start, realtime_end, limit),
                    limit,
                )
            except VintageLimitExceeded:
                plan = None
        if plan is not None and not plan.ask_vintage_dates:
            return [self._planned_windows(series_id, window, list(plan.windows), limit)]
        vintages = self.fetch_vintage_dates(series_id, realtime_start, realtime_end)
        windows = realtime_windows(vintages, realtime_start, realtime_end)
        pages: list[FetchResult] = []
        for start, end in windows:
            params = self._params(series_id, window, start, end, limit)
            pages.extend(self._observation_pages(series_id, params, limit))
        result = combine_results(pages, typed_frame(FredObservationSchema))
        result.frame = stitch_windows(result.frame, [start for start, _ in windows[1:]])
        result.notes.append(
            f"{series_id}: {len(vintages)} vintage dates; pulled in {len(windows)} real-time "
            f"windows of at most {MAX_VINTAGES_PER_REQUEST}"
        )
        return [result]

    def _planned_windows(
        self,
        series_id: str,
        window: ObservationWindow,
        windows: list[tuple[dt.date, dt.date]],
        limit: int,
    ) -> FetchResult:
        """The windows ``plan_windows`` sized from the metadata (sharing edge days), each
        its own requests, joined by ``join_overlapping_windows``. A window FRED still
        refuses (vintage dates on weekends) is pulled by its vintage dates and stitched."""
        answers: list[FetchResult] = []
        for start, end in windows:
            try:
                pages = self._observation_pages(
                    series_id, self._params(series_id, window, start, end, limit), limit)
            except VintageLimitExceeded:
                pages = self._pull_window(series_id, window, start, end, limit,
                                          plan=WindowPlan((), True, 0, "refused"))
            answers.append(combine_results(pages, typed_frame(FredObservationSchema)))
        result = combine_results(answers, typed_frame(FredObservationSchema))
        result.frame = join_overlapping_windows(
            [answer.frame for answer in answers], [end for _, end in windows[:-1]])
        result.notes.append(
            f"{series_id}: windows sized from its metadata; pulled in {len(windows)} "
            f"real-time windows of at most {MAX_VINTAGES_PER_REQUEST} vintage dates"
        )
        return result

    @staticmethod
    def _params(
        series_id: str,
        window: ObservationWindow,
        realtime_start: dt.date,
        realtime_end: dt.date,
        limit: int,
    ) -> dict[str, Any]:
        return {
            "series_id": series_id,
            "realtime_start": realtime_start.isoformat(),
            "realtime_end": realtime_end.isoformat(),
            "observation_start": _iso(window.start),
            "observation_end": _iso(window.end),
            "limit": limit,
        }

    def _observation_pages(
        self, series_id: str, params: Mapping[str, Any], limit: int
    ) -> list[FetchResult]:
        """Every page of one observations request (the first result collects a missing
        series' rejection), left for the caller to concatenate once."""
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
        return pages

    def _add_pending(self, mark: SyncMark) -> None:
        with self._pending_lock:
            self._pending.append(mark)

    def _series_result(self, series_id: str) -> FetchResult:
        result = FetchResult(typed_frame(FredSeriesSchema))
        body = self._per_series(result, series_id, "/series", {"series_id": series_id})
        if body is not None:
            result.frame = parse_series(body)
        return result

    def _each_series(self, series_ids: Sequence[str], work: Callable[[str], T]) -> list[T]:
        """``work`` for every series, in order, on a bounded thread pool. The first error
        cancels the series not yet started and propagates."""
        workers = self.max_workers or fetch_workers(self.settings, len(series_ids))
        if workers <= 1 or len(series_ids) <= 1:
            return [work(series_id) for series_id in series_ids]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fred") as pool:
            futures: list[Future[T]] = [pool.submit(work, s) for s in series_ids]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

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


def fetch_workers(settings: ProviderSettings, series: int) -> int:
    """Threads for ``series`` series: at most ``MAX_WORKERS``, the per-minute limit (more
    threads than requests allowed per minute would only wait in the limiter) and the
    number of series."""
    per_minute = settings.requests_per_minute or MAX_WORKERS
    return max(1, min(MAX_WORKERS, per_minute, series))


def _series_stamp(body: Any) -> tuple[str | None, dt.date]:
    """``last_updated`` (normalized) and FRED's day from a ``/series`` body already
    checked by ``parse_series``: without real-time parameters FRED answers with
    ``realtime_start`` = its today."""
    item = body["seriess"][0] if body["seriess"] else {}
    fred_today = _date_or_none(body.get("realtime_start")) or dt.datetime.now(dt.UTC).date()
    return normalize_last_updated(item.get("last_updated")), fred_today


def _count(body: Mapping[str, Any], endpoint: str = "/series/observations") -> int:
    try:
        return int(body.get("count", 0))
    except (TypeError, ValueError):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            f"'count' is not a number: {json.dumps(body.get('count'))}",
            endpoint=endpoint,
        ) from None


def _as_date(value: dt.date | str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ObservationWindow:
    """The observation dates a pull covers; both ends empty mean the whole history."""

    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def whole_history(self) -> bool:
        return self.start is None and self.end is None

    def __str__(self) -> str:
        return f"observation dates {_iso(self.start) or '...'}..{_iso(self.end) or '...'}"


@dataclass
class UpdatesCheck:
    """What one ``/series/updates`` check settled: ``covered`` series need no
    ``/series`` request; of those, ``changed`` (by id, their updates entry) are pulled
    again. ``marks`` are the sync marks the check compared against, ``notes_by_series``
    the recorded notes of the changed ones, ``fred_today`` FRED's day of the check."""

    covered: set[str]
    changed: dict[str, dict[str, Any]]
    marks: dict[str, SyncMark]
    notes_by_series: dict[str, str | None]
    fred_today: dt.date
    notes: list[str]

    @classmethod
    def none(cls, note: str) -> UpdatesCheck:
        """A check that settled nothing (every series is checked on its own)."""
        return cls(set(), {}, {}, {}, dt.date.min, [note])


def _updates_items(body: Any) -> list[dict[str, Any]]:
    """The ``seriess`` array of a ``/series/updates`` body (each entry an object)."""
    if not isinstance(body, dict) or not isinstance(body.get("seriess"), list) or not all(
        isinstance(item, dict) for item in body["seriess"]
    ):
        raise ProviderError(
            ProviderSlug.FRED.value, ErrorKind.MALFORMED,
            "updates response has no 'seriess' array of objects", endpoint="/series/updates",
        )
    return body["seriess"]


@dataclass
class SeriesPull:
    """What one series' pull returned: its metadata and its observation pages."""

    series: FetchResult
    pages: list[FetchResult] = field(default_factory=list)


# -- the request budget -------------------------------------------------------------------
#: Periods per year by FRED's ``frequency_short`` (its ``frequency`` text starts with the
#: long name): each period's first release is one vintage date, and revisions mostly come
#: out with a later period's release, so periods estimate a history's vintage dates.
PERIODS_PER_YEAR: dict[str, float] = {
    "D": 261.0, "W": 52.2, "BW": 26.1, "M": 12.0, "Q": 4.0, "SA": 2.0, "A": 1.0,
}
_FREQUENCY_SHORT = (
    ("Daily", "D"), ("Weekly", "W"), ("Biweekly", "BW"), ("Monthly", "M"),
    ("Quarterly", "Q"), ("Semiannual", "SA"), ("Annual", "A"),
)
#: An estimate this close to the limit is not trusted for a single request.
_ESTIMATE_HEADROOM = 0.9


def frequency_short(frequency: str | None) -> str | None:
    """FRED's short frequency code from its long text ("Weekly, Ending Saturday" → "W")."""
    text = (frequency or "").strip()
    for name, short in _FREQUENCY_SHORT:
        if text.startswith(name) or text == short:
            return short
    return None


def weekday_count(start: dt.date, end: dt.date) -> int:
    """Weekdays in ``start..end`` inclusive (0 when ``end`` is before ``start``)."""
    if end < start:
        return 0
    return int(np.busday_count(start, end + dt.timedelta(days=1)))


@dataclass(frozen=True)
class WindowPlan:
    """How one series' whole vintage history is requested, decided before any
    observation is asked for, from what ``/series`` (or ``/series/updates``) said.

    ``windows``: real-time windows to request (one window = one request per 100,000
    rows); ``ask_vintage_dates``: ask ``/series/vintagedates`` first and cut windows of
    exactly 2,000 vintage dates (``windows`` is then empty, its count ``expected``).
    """

    windows: tuple[tuple[dt.date, dt.date], ...]
    ask_vintage_dates: bool
    expected: int
    reason: str


def plan_windows(
    frequency: str | None, observation_start: dt.date | None, today: dt.date
) -> WindowPlan:
    """The fewest observation requests for a whole history, from what is known before
    asking.

    FRED publishes on weekdays and no value before its period starts, so a history
    holds at most ``weekday_count(observation_start, today)`` vintage dates (``bound``):

    * ``bound`` ≤ 2,000: one request, certain.
    * else the periods since ``observation_start`` (``estimate``, see
      ``PERIODS_PER_YEAR``) ≤ 90 % of 2,000 (a monthly, quarterly or recent weekly
      series): one request; a refusal (a history revised unusually often) falls back
      to the vintage dates, costing one wasted request.
    * else windows of 2,000 weekdays from ``observation_start``: ``ceil(bound / 2,000)``
      requests, none refused, unless asking the vintage dates first (1 request) and
      cutting windows of exactly 2,000 vintage dates is expected to cost fewer
      (``1 + ceil(estimate / 2,000) < ceil(bound / 2,000)``: a long weekly history).
    """
    if observation_start is None or observation_start > today:
        return WindowPlan(((REALTIME_START, REALTIME_END),), False, 1, "no history to size")
    bound = weekday_count(observation_start, today)
    if bound <= MAX_VINTAGES_PER_REQUEST:
        return WindowPlan(((REALTIME_START, REALTIME_END),), False, 1,
                          f"at most {bound} vintage dates")
    per_year = PERIODS_PER_YEAR.get(frequency_short(frequency) or "", 0.0)
    years = (today - observation_start).days / 365.25
    estimate = math.ceil(years * per_year) if per_year else bound
    if estimate <= MAX_VINTAGES_PER_REQUEST * _ESTIMATE_HEADROOM:
        return WindowPlan(((REALTIME_START, REALTIME_END),), False, 1,
                          f"about {estimate} vintage dates")
    planned = math.ceil(bound / MAX_VINTAGES_PER_REQUEST)
    exact = 1 + math.ceil(estimate / MAX_VINTAGES_PER_REQUEST)
    if exact < planned:
        return WindowPlan((), True, exact - 1,
                          f"about {estimate} vintage dates in {bound} weekdays")
    # consecutive windows share their edge day (see ``join_overlapping_windows``), so
    # each window after the first adds 1,999 new weekdays
    edges: list[dt.date] = []
    edge = observation_start
    step = MAX_VINTAGES_PER_REQUEST - 1
    while True:
        edge = _weekday_after(edge, step)
        if edge >= today:
            break
        edges.append(edge)
    starts = [REALTIME_START, *edges]
    ends = [*edges, REALTIME_END]
    return WindowPlan(tuple(zip(starts, ends, strict=True)), False, len(starts),
                      f"at most {bound} vintage dates: windows of 2,000 weekdays")


def _weekday_after(day: dt.date, weekdays: int) -> dt.date:
    """The weekday ``weekdays`` weekdays after ``day`` (rolled forward to a weekday)."""
    return dt.date.fromisoformat(str(np.busday_offset(day, weekdays, roll="forward")))


def join_overlapping_windows(
    frames: Sequence[pd.DataFrame], edges: Sequence[dt.date]
) -> pd.DataFrame:
    """Join the answers of real-time windows that share their edge day: window ``k``
    ends on ``edges[k]`` and window ``k + 1`` starts on it.

    FRED clips each row to its window. For every observation date, exactly one vintage
    is current on an edge day ``b``: it comes back as the earlier window's row ending on
    ``b`` and the later window's row starting on ``b``, and those two are one vintage,
    whatever their values (unlike windows that only touch, where a vintage really
    starting on the boundary cannot be told from a clipped one). The joined row keeps
    the earlier start and the later end.
    """
    if not frames:
        raise ValueError("no window answers to join")
    joined = frames[0]
    for edge, later in zip(edges, frames[1:], strict=True):
        if joined.empty or later.empty:
            joined = pd.concat([f for f in (joined, later) if not f.empty] or [later],
                               ignore_index=True)
            continue
        ends_on = (joined["realtime_end"] == edge).to_numpy()
        starts_on = (later["realtime_start"] == edge).to_numpy()
        head = joined[ends_on][["date", "realtime_start"]].rename(
            columns={"realtime_start": "joined_start"})
        tail = later[starts_on].merge(head, on="date", how="left")
        has_head = tail["joined_start"].notna().to_numpy()
        tail.loc[has_head, "realtime_start"] = tail.loc[has_head, "joined_start"]
        tail = tail.drop(columns=["joined_start"])
        carried = set(later[starts_on]["date"])
        keep = ~(ends_on & joined["date"].isin(carried).to_numpy())
        joined = pd.concat([joined[keep], later[~starts_on], tail], ignore_index=True)
    return joined.sort_values(["date", "realtime_start"], kind="stable").reset_index(
        drop=True)


@dataclass(frozen=True)
class RequestBudget:
    """The requests one series' whole-history pull costs: the ``/series`` metadata, an
    optional vintage-date list, and the observation requests (one per real-time window
    and per 100,000 rows of a window)."""

    metadata: int
    vintage_dates: int
    observations: int

    @property
    def total(self) -> int:
        return self.metadata + self.vintage_dates + self.observations


def request_budget(
    frequency: str | None,
    observation_start: dt.date | None,
    today: dt.date,
    *,
    rows: int = 0,
    metadata_known: bool = False,
) -> RequestBudget:
    """What the client sends for one series' full history (``plan_windows``), recorded
    here so tests and benchmarks hold it to the minimum: a history of ``V`` vintage dates
    needs at least ``ceil(V / 2,000)`` observation requests plus its metadata.

    ``rows`` (when known) adds a page per 100,000 rows beyond the first page of each
    window; ``metadata_known`` is the nightly case where ``/series/updates`` already
    carried the metadata (0 ``/series`` requests).

    | frequency | history                    | metadata | vintage dates | observations |
    |-----------|----------------------------|----------|---------------|--------------|
    | any       | ≤ 2,000 weekdays           | 1        | 0             | 1            |
    | Q, M      | decades                    | 1        | 0             | 1            |
    | W         | ≤ 34 years                 | 1        | 0             | 1            |
    | W         | longer                     | 1        | 1             | ceil(V/2000) |
    | D         | 2,000·k weekdays           | 1        | 0             | k            |
    """
    plan = plan_windows(frequency, observation_start, today)
    windows = plan.expected
    pages = max(windows, math.ceil(rows / PAGE_LIMIT)) if rows else windows
    return RequestBudget(0 if metadata_known else 1, int(plan.ask_vintage_dates), pages)


def _plan_from(series: pd.DataFrame, today: dt.date) -> WindowPlan | None:
    """``plan_windows`` from a parsed ``/series`` frame (None when it has no row)."""
    if series.empty:
        return None
    start = series["observation_start"].iloc[0]
    return plan_windows(str(series["frequency"].iloc[0] or ""),
                        start if isinstance(start, dt.date) else None, today)


def realtime_windows(
    vintage_dates: Sequence[dt.date],
    realtime_start: dt.date,
    realtime_end: dt.date,
    size: int = MAX_VINTAGES_PER_REQUEST,
) -> list[tuple[dt.date, dt.date]]:
    """Split a real-time period into contiguous windows of at most ``size`` vintage dates:
    each window after the first starts on a vintage date and ends the day before the
    next window's first one; the first and last keep the period's own ends."""
    dates = sorted(vintage_dates)
    starts = [realtime_start] + [dates[i] for i in range(size, len(dates), size)]
    ends = [day - dt.timedelta(days=1) for day in starts[1:]] + [realtime_end]
    return list(zip(starts, ends, strict=True))


def stitch_windows(frame: pd.DataFrame, boundaries: Sequence[dt.date]) -> pd.DataFrame:
    """Undo FRED's clipping at the edges of real-time windows.

    FRED cuts each row's ``realtime_start``/``realtime_end`` to the requested period, so a
    vintage current across a window boundary comes back as two rows: one ending the day
    before the boundary, one starting on it, same date and same value. Those pieces are
    joined into the one row an unlimited request returns. Only pieces meeting exactly at
    a boundary are joined: two real vintages with equal values stay two rows.
    """
    if frame.empty or not boundaries:
        return frame
    date = _days(frame["date"])
    start = _days(frame["realtime_start"])
    end = _days(frame["realtime_end"])
    order = np.lexsort((start, date))
    date, start, end = date[order], start[order], end[order]
    value = frame["value"].to_numpy(dtype="float64")[order]
    cuts = _days(pd.Series(list(boundaries), dtype=object))
    continues = np.zeros(len(order), dtype=bool)
    same_value = (value[1:] == value[:-1]) | (np.isnan(value[1:]) & np.isnan(value[:-1]))
    continues[1:] = (
        (date[1:] == date[:-1])
        & (start[1:] == end[:-1] + 1)
        & np.isin(start[1:], cuts)
        & same_value
    )
    firsts = np.flatnonzero(~continues)
    lasts = np.r_[firsts[1:] - 1, len(order) - 1]
    stitched = frame.iloc[order[firsts]].reset_index(drop=True)
    stitched["realtime_end"] = frame["realtime_end"].to_numpy()[order[lasts]]
    return stitched


def _days(values: pd.Series) -> np.ndarray:
    """``datetime.date`` values as day numbers since 1970 (Arrow's ``date32`` spans
    9999-12-31 and converts in C, where a ``datetime64`` array built from Python objects
    costs tens of milliseconds per series)."""
    return pa_arrow.array(values, type=pa_arrow.date32()).cast(pa_arrow.int32()).to_numpy(
        zero_copy_only=False
    ).astype(np.int64)
