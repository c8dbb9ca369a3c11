"""FRED client: parsers fed the recorded payloads, error classification, and the client end
to end over ``httpx.MockTransport`` (real paths, params, offset paging, no key in errors)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.providers.fred.client import (
    REALTIME_END,
    REALTIME_START,
    FredClient,
    VintageLimitExceeded,
    classify_fred_error,
    parse_observations,
    parse_series,
    parse_vintage_dates,
    realtime_windows,
    stitch_windows,
)
from dashtam_pipeline.registry import Dataset
from dashtam_pipeline.schemas.base import OPEN_END, column_names
from dashtam_pipeline.schemas.macro import FredObservationSchema, FredSeriesSchema
from dashtam_pipeline_tests.client_helpers import Handler, Recorder, mock_client, offline_settings
from dashtam_pipeline_tests.payloads import load_json

#: Outcome depends on the clock (sessions, expiries, "today"): also run at each frozen
#: instant of at_date (`make test-dates`).
pytestmark = pytest.mark.dates

KEY = "test-key-123"
BASE = "https://api.stlouisfed.org/fred"
CURRENT = "fred/series_observations_GDP.json"
ALL_VINTAGES = "fred/series_observations_GDP_all_vintages.json"
TO_2019 = "fred/series_observations_GDP_realtime_1776-07-04_to_2019-01-01.json"
INITIAL_RELEASE = "fred/series_observations_GDP_output_type4_initial_release.json"
D = dt.date


def make_client(handler: Handler) -> FredClient:
    settings = offline_settings("fred", fred_api_key=KEY, fred_base_url=BASE)
    return mock_client(FredClient, handler, settings)


def rows_for(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    return frame[frame["date"] == day].reset_index(drop=True)


# -- parsers -----------------------------------------------------------------------------------
def test_current_observations_turn_dots_into_null_and_keep_exact_values() -> None:
    result = parse_observations(load_json(CURRENT), "GDP")
    frame = result.frame
    assert list(frame.columns) == column_names(FredObservationSchema)
    assert len(frame) == 315 and result.rejected == []
    first_four = frame.iloc[:4]
    assert list(first_four["date"]) == [D(1946, 1, 1), D(1946, 4, 1), D(1946, 7, 1), D(1946, 10, 1)]
    assert first_four["value"].isna().all()
    assert frame["value"].isna().sum() == 4
    assert rows_for(frame, D(1947, 1, 1))["value"].tolist() == [243.164]
    assert rows_for(frame, D(2024, 7, 1))["value"].tolist() == [29374.914]
    assert set(frame["realtime_start"]) == {D(2024, 12, 19)}
    assert set(frame["realtime_end"]) == {D(2024, 12, 19)}
    assert (frame["series_id"] == "GDP").all()
    validated = FredObservationSchema.validate(frame)
    assert validated["value"].dtype == "float64" and len(validated) == 315


def test_all_vintages_keep_their_realtime_windows_and_the_open_end() -> None:
    frame = parse_observations(load_json(ALL_VINTAGES), "GDP").frame
    assert len(frame) == 3201
    # 1946Q1 was published, withdrawn, re-published and withdrawn again
    q1 = rows_for(frame, D(1946, 1, 1))
    assert q1["realtime_start"].tolist() == [
        D(1992, 12, 22), D(1996, 1, 19), D(1997, 5, 7), D(1999, 10, 28)
    ]
    assert q1["realtime_end"].tolist() == [
        D(1996, 1, 18), D(1997, 5, 6), D(1999, 10, 27), OPEN_END
    ]
    assert q1["value"].iloc[0] == 199.7 and q1["value"].iloc[2] == 210.4
    assert math.isnan(q1["value"].iloc[1]) and math.isnan(q1["value"].iloc[3])
    # 2024Q3: advance, second and third estimates; the current vintage never ends
    q3 = rows_for(frame, D(2024, 7, 1))
    assert q3["value"].tolist() == [29349.924, 29354.321, 29374.914]
    assert q3["realtime_end"].tolist() == [D(2024, 11, 26), D(2024, 12, 18), OPEN_END]
    assert (frame["realtime_end"] == OPEN_END).sum() == 315  # one current vintage per date
    assert type(frame["realtime_end"].iloc[0]) is dt.date  # not a pandas Timestamp
    assert (frame["realtime_start"] <= frame["realtime_end"]).all()


def test_vintages_up_to_2019_end_on_the_requested_day() -> None:
    frame = parse_observations(load_json(TO_2019), "GDP").frame
    assert len(frame) == 2902
    assert frame["value"].isna().sum() == 245
    assert frame["realtime_end"].max() == D(2019, 1, 1)
    assert frame["realtime_start"].min() == D(1991, 12, 4)
    assert len(FredObservationSchema.validate(frame)) == 2902


def test_initial_release_rows() -> None:
    frame = parse_observations(load_json(INITIAL_RELEASE), "GDP").frame
    assert len(frame) == 132
    first = frame.iloc[0]
    assert (first["date"], first["value"]) == (D(1991, 10, 1), 5736.6)
    assert (first["realtime_start"], first["realtime_end"]) == (D(1992, 1, 29), D(1992, 2, 27))
    last = frame.iloc[-1]
    assert (last["date"], last["value"], last["realtime_end"]) == (
        D(2024, 7, 1), 29349.924, OPEN_END
    )
    assert frame["value"].notna().all()


def test_bad_rows_are_rejected_and_good_rows_kept() -> None:
    body = {
        "count": 3,
        "observations": [
            {"realtime_start": "2024-01-01", "realtime_end": "9999-12-31",
             "date": "2020-01-01", "value": "1.5"},
            {"realtime_start": "2024-01-01", "realtime_end": "9999-12-31",
             "date": "2020-02-01", "value": "n/a"},
            {"realtime_start": "2024-01-01", "realtime_end": "9999-12-31",
             "date": "2020-13-01", "value": "2.0"},
        ],
    }
    result = parse_observations(body, "UNRATE")
    assert result.frame["value"].tolist() == [1.5]
    assert [r.record["date"] for r in result.rejected] == ["2020-02-01", "2020-13-01"]
    assert "neither a number" in result.rejected[0].reason
    assert "unparseable date" in result.rejected[1].reason
    assert result.notes == ["UNRATE: rejected 2 observation(s)"]


def test_malformed_body_names_provider() -> None:
    with pytest.raises(ProviderError) as caught:
        parse_observations({"seriess": []}, "GDP")
    assert caught.value.kind is ErrorKind.MALFORMED and caught.value.provider == "fred"


def test_series_metadata() -> None:
    frame = parse_series(load_json("fred/series_GDP.json"))
    assert list(frame.columns) == column_names(FredSeriesSchema)
    row = frame.iloc[0]
    assert row["series_id"] == "GDP"
    assert row["title"] == "Gross Domestic Product"
    assert row["frequency"] == "Quarterly"
    assert row["units"] == "Billions of Dollars"
    assert row["seasonal_adjustment"] == "Seasonally Adjusted Annual Rate"
    assert (row["observation_start"], row["observation_end"]) == (D(1947, 1, 1), D(2024, 7, 1))
    # "2024-12-19 07:55:01-06" is US Central time
    assert row["last_updated"] == pd.Timestamp("2024-12-19 13:55:01", tz="UTC")
    assert row["notes"].startswith("BEA Account Code: A191RC\n\n")
    assert "(http://www.bea.gov/national/pdf/nipaguid.pdf)" in row["notes"]
    validated = FredSeriesSchema.validate(frame)
    assert str(validated["last_updated"].dtype) == "datetime64[us, UTC]"


def test_vintage_dates() -> None:
    dates = parse_vintage_dates(load_json("fred/series_vintagedates_GDP.json"))
    assert len(dates) == 395
    assert (dates[0], dates[-1]) == (D(1991, 12, 4), D(2024, 12, 19))
    assert dates == sorted(dates)


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "kind", "phrase"),
    [
        ("fred/error_400_api_key_not_registered.json", ErrorKind.AUTH, "is not registered"),
        ("fred/error_400_series_does_not_exist.json", ErrorKind.NOT_FOUND, "does not exist"),
        ("fred/error_400_realtime_end_after_today.json", ErrorKind.BAD_REQUEST, "realtime_end"),
    ],
)
def test_recorded_errors_are_classified(payload: str, kind: ErrorKind, phrase: str) -> None:
    error = classify_fred_error(httpx.Response(400, json=load_json(payload)), load_json(payload))
    assert error is not None
    assert (error.kind, error.provider, error.retryable, error.status_code) == (
        kind, "fred", False, 400
    )
    assert phrase in error.message
    assert "  " not in error.message  # FRED's double spaces collapsed


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [(429, ErrorKind.RATE_LIMITED, True), (500, ErrorKind.UNAVAILABLE, True),
     (503, ErrorKind.UNAVAILABLE, True)],
)
def test_status_errors_are_classified(status: int, kind: ErrorKind, retryable: bool) -> None:
    body = {"error_code": status, "error_message": "Something went wrong."}
    error = classify_fred_error(httpx.Response(status, json=body), body)
    assert error is not None and (error.kind, error.retryable) == (kind, retryable)


def test_ok_response_is_not_an_error() -> None:
    body = load_json("fred/series_GDP.json")
    assert classify_fred_error(httpx.Response(200, json=body), body) is None


# -- end to end over a mock transport ----------------------------------------------------------
def test_series_request_path_and_params() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=load_json("fred/series_GDP.json"))

    result = make_client(handler).fetch_fred_series(FetchRequest(series_ids=("GDP",)))
    assert result.frame["title"].tolist() == ["Gross Domestic Product"]
    (request,) = seen
    assert request.url.path == "/fred/series"
    assert dict(request.url.params) == {"series_id": "GDP", "file_type": "json", "api_key": KEY}


def by_path(observations: str, seen: list[httpx.Request]) -> Handler:
    """FRED as the observations pull sees it: ``/series`` answers the recorded GDP
    metadata, ``/series/observations`` the ``observations`` payload."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/series"):
            return httpx.Response(200, json=load_json("fred/series_GDP.json"))
        return httpx.Response(200, json=load_json(observations))

    return handler


def test_observations_default_to_every_vintage_in_one_page_and_bring_the_metadata() -> None:
    seen: list[httpx.Request] = []
    client = make_client(by_path(ALL_VINTAGES, seen))
    result = client.fetch_fred_observations(FetchRequest(series_ids=("GDP",)))
    assert len(result.frame) == 3201
    assert client.provider_label == "fred"
    series, request = seen
    assert series.url.path == "/fred/series"
    metadata = result.companions[Dataset.FRED_SERIES].frame
    assert list(metadata["series_id"]) == ["GDP"]
    assert metadata.loc[0, "frequency"] == "Quarterly"
    assert request.url.path == "/fred/series/observations"
    assert dict(request.url.params) == {
        "series_id": "GDP", "realtime_start": "1776-07-04", "realtime_end": "9999-12-31",
        "limit": "100000", "offset": "0", "file_type": "json", "api_key": KEY,
    }


def paged(payload: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    """Serves ``payload`` the way FRED pages: ``limit`` rows from ``offset``."""

    def handler(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = {**payload, "offset": offset, "limit": limit,
                "observations": payload["observations"][offset:offset + limit]}
        return httpx.Response(200, json=page)

    return handler


def offsets(recorder: Recorder) -> list[str]:
    return [request.url.params["offset"] for request in recorder.requests]


def test_offset_paging_reads_every_row_once() -> None:
    payload = load_json(ALL_VINTAGES)
    recorder = Recorder(paged(payload))
    result = make_client(recorder).fetch_observations("GDP", limit=1000)
    assert offsets(recorder) == ["0", "1000", "2000", "3000"]
    whole = parse_observations(payload, "GDP").frame
    pd.testing.assert_frame_equal(result.frame, whole)


def test_exact_multiple_of_the_page_size_stops_without_an_empty_page() -> None:
    payload = load_json(CURRENT)  # 315 rows
    payload = {**payload, "count": 300, "observations": payload["observations"][:300]}
    recorder = Recorder(paged(payload))
    result = make_client(recorder).fetch_observations("GDP", limit=100)
    assert offsets(recorder) == ["0", "100", "200"] and len(result.frame) == 300


def test_windows_are_passed_through_for_incremental_loads() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=load_json(TO_2019))

    make_client(handler).fetch_observations(
        "GDP", realtime_start=D(2018, 1, 1), realtime_end="2019-01-01",
        observation_start=D(2000, 1, 1), observation_end=D(2010, 12, 31),
    )
    params = seen[0].url.params
    assert (params["realtime_start"], params["realtime_end"]) == ("2018-01-01", "2019-01-01")
    assert (params["observation_start"], params["observation_end"]) == (
        "2000-01-01", "2010-12-31"
    )


def test_unknown_series_is_rejected_and_the_others_still_load() -> None:
    known = by_path(CURRENT, [])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["series_id"] == "NOPE":
            return httpx.Response(400, json=load_json("fred/error_400_series_does_not_exist.json"))
        return known(request)

    result = make_client(handler).fetch_fred_observations(
        FetchRequest(series_ids=("NOPE", "GDP"))
    )
    assert len(result.frame) == 315
    assert list(result.companions[Dataset.FRED_SERIES].frame["series_id"]) == ["GDP"]
    assert [r.record for r in result.rejected] == [{"series_id": "NOPE"}]
    assert "not_found" in result.rejected[0].reason
    assert result.notes == ["NOPE: FRED has no such series; skipped"]


@pytest.mark.parametrize(
    "message",
    [
        None,  # the recorded body
        f"Bad Request.  The value {KEY} for variable api_key is not registered.",
    ],
)
def test_bad_key_is_auth_and_never_leaks(message: str | None) -> None:
    body = load_json("fred/error_400_api_key_not_registered.json")
    if message:
        body = {**body, "error_message": message}
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json=body)

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_fred_series(FetchRequest(series_ids=("GDP",)))
    error = caught.value
    assert (error.kind, error.provider, error.retryable) == (ErrorKind.AUTH, "fred", False)
    assert len(calls) == 1  # not retried
    assert KEY not in str(error) and KEY not in repr(error.args)
    assert "api_key" in str(error) and "retrying will not help" in str(error)


def test_server_errors_are_retried_then_reported() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text=f"<html>upstream down for {request.url}</html>")

    with pytest.raises(ProviderError) as caught:
        make_client(handler).fetch_fred_observations(FetchRequest(series_ids=("GDP",)))
    assert len(calls) == 3
    assert (caught.value.kind, caught.value.retryable) == (ErrorKind.UNAVAILABLE, True)
    assert KEY not in str(caught.value)


def test_rate_limit_then_success() -> None:
    answers = [
        httpx.Response(429, json={"error_code": 429, "error_message": "Too Many Requests."},
                       headers={"Retry-After": "0"}),
        httpx.Response(200, content=json.dumps(load_json("fred/series_GDP.json")).encode()),
    ]
    result = make_client(lambda request: answers.pop(0)).fetch_fred_series(
        FetchRequest(series_ids=("GDP",))
    )
    assert result.frame["series_id"].tolist() == ["GDP"] and answers == []


@pytest.mark.parametrize(
    "message",
    [
        "Bad Request.  Variable api_key is not set.  Read https://fred.stlouisfed.org/docs/api/api_key.html for more information.",  # noqa: E501
        "Bad Request.  The value for variable api_key is not a 32 character alpha-numeric lower-case string.  Read https://fred.stlouisfed.org/docs/api/api_key.html for more information.",  # noqa: E501
    ],
)
def test_other_api_key_refusals_are_auth(message: str) -> None:
    body = {"error_code": 400, "error_message": message}
    error = classify_fred_error(httpx.Response(400, json=body), body)
    assert error is not None and (error.kind, error.retryable) == (ErrorKind.AUTH, False)


def clipped_to(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """What FRED answers for the real-time window ``start``..``end``: the rows current
    at some day of it, their real-time period cut to the window."""
    inside = frame[(frame["realtime_start"] <= end) & (frame["realtime_end"] >= start)].copy()
    inside["realtime_start"] = inside["realtime_start"].map(lambda d: max(d, start))
    inside["realtime_end"] = inside["realtime_end"].map(lambda d: min(d, end))
    return inside


def test_windows_of_real_gdp_vintages_stitch_back_into_the_unclipped_history() -> None:
    history = parse_observations(load_json(ALL_VINTAGES), "GDP").frame
    vintage_dates = parse_vintage_dates(load_json("fred/series_vintagedates_GDP.json"))
    windows = realtime_windows(vintage_dates, REALTIME_START, REALTIME_END, size=100)
    assert len(windows) == 4  # 395 vintage dates
    assert windows[0][0] == REALTIME_START and windows[-1][1] == REALTIME_END
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        assert next_start == end + dt.timedelta(days=1) and next_start in vintage_dates
    pieces = pd.concat([clipped_to(history, s, e) for s, e in windows], ignore_index=True)
    assert len(pieces) > len(history)  # rows current across a boundary come back twice

    stitched = stitch_windows(pieces, [start for start, _ in windows[1:]])

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["date", "realtime_start"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(stitched), ordered(history))


def test_equal_values_of_two_real_vintages_are_not_joined() -> None:
    """Only pieces meeting at a window boundary are one vintage; elsewhere two adjacent
    vintages with the same value stay two rows."""
    rows = pd.DataFrame({
        "series_id": "X",
        "date": [D(2020, 1, 1)] * 3,
        "value": [1.0, 1.0, 1.0],
        "realtime_start": [D(2020, 2, 1), D(2020, 3, 1), D(2020, 4, 1)],
        "realtime_end": [D(2020, 2, 29), D(2020, 3, 31), OPEN_END],
    })
    stitched = stitch_windows(rows, [D(2020, 4, 1)])
    assert list(stitched["realtime_start"]) == [D(2020, 2, 1), D(2020, 3, 1)]
    assert list(stitched["realtime_end"]) == [D(2020, 2, 29), OPEN_END]


def test_the_vintage_limit_refusal_is_its_own_error() -> None:
    message = (
        "Bad Request.  There are 2004 vintage dates in the specified real-time period: "
        "1776-07-04 to 9999-12-31.  This exceeds the maximum number of vintage dates "
        "allowed (2000)."
    )
    error = classify_fred_error(
        httpx.Response(400, json={"error_code": 400, "error_message": message}),
        {"error_code": 400, "error_message": message},
    )
    assert isinstance(error, VintageLimitExceeded)
    assert (error.kind, error.retryable) == (ErrorKind.BAD_REQUEST, False)
