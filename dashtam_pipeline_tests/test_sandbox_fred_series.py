"""Which FRED series the sandbox knows: the defaults, the weekly series and patterned
clones (``GDP_7``), with their own values, and the real 400 for every other id."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import httpx
import pytest

from dashtam_pipeline.clients.base import SANDBOX_ROOT, sandbox_base_url
from dashtam_pipeline.sandbox.app import SandboxApp
from dashtam_pipeline.sandbox.fred_data import (
    BASE_SERIES,
    OPEN_END,
    SERIES,
    WEEKLY_SERIES,
    FredData,
    benchmark_series_ids,
    series_spec,
)
from dashtam_pipeline.settings import DEFAULT_FRED_SERIES
from dashtam_pipeline_tests.payloads import load_json

#: a Wednesday: ICSA's latest week (ending Sat 2025-03-01) was released Thu 2025-03-06
NOW = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.UTC)
TODAY = dt.date(2025, 3, 12)
ALL_VINTAGES = {"realtime_start": "1776-07-04", "realtime_end": "9999-12-31"}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    app = SandboxApp(seed=42, clock=lambda: NOW)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=SANDBOX_ROOT) as c:
        yield c


def get(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    return client.get(
        sandbox_base_url("fred") + path, params={"file_type": "json", "api_key": "k", **params}
    )


def observations(client: httpx.Client, series_id: str) -> list[dict[str, str]]:
    response = get(client, "/series/observations", series_id=series_id, **ALL_VINTAGES)
    assert response.status_code == 200, response.text
    return response.json()["observations"]


# -- series_spec ---------------------------------------------------------------------------
def test_the_default_table_is_still_the_eight_default_series() -> None:
    assert tuple(SERIES) == DEFAULT_FRED_SERIES
    assert set(BASE_SERIES) == set(SERIES) | {"ICSA", "WALCL"}
    for series_id, spec in BASE_SERIES.items():
        assert series_spec(series_id) is spec
        assert series_spec(series_id.lower()) is spec


def test_a_clone_is_its_base_under_its_own_id_and_title() -> None:
    clone = series_spec("gdp_7")
    assert clone is not None
    assert (clone.id, clone.title) == ("GDP_7", "Gross Domestic Product (sandbox clone 7)")
    base = SERIES["GDP"]
    for f in fields(base):
        if f.name not in ("id", "title"):
            assert getattr(clone, f.name) == getattr(base, f.name), f.name
    weekly = series_spec("ICSA_12")
    assert weekly is not None and weekly.frequency == "Weekly, Ending Saturday"


@pytest.mark.parametrize(
    "series_id",
    ["NOSUCHSERIES", "NOSUCH_3", "GDP_0", "GDP_07", "GDP_", "_7", "GDP_7_2", "GDP-7", "GDP_1x",
     "GDP_1234567"],
)
def test_other_ids_do_not_exist(series_id: str) -> None:
    assert series_spec(series_id) is None


def test_a_clone_has_its_own_values_and_the_same_calendar() -> None:
    data = FredData(seed=42)
    base = data.vintages(SERIES["DGS10"], TODAY)
    clone_spec = series_spec("DGS10_3")
    assert clone_spec is not None
    clone = data.vintages(clone_spec, TODAY)
    assert [(v.date, v.start, v.end) for v in clone] == [(v.date, v.start, v.end) for v in base]
    differing = sum(a.value != b.value for a, b in zip(base, clone, strict=True))
    assert differing > 0.9 * len(base)
    # seeded by id, not by object: another process (a new FredData) answers the same values
    again_spec = series_spec("DGS10_3")
    assert again_spec is not None
    assert FredData(seed=42).vintages(again_spec, TODAY) == clone
    other_spec = series_spec("DGS10_4")
    assert other_spec is not None
    assert [v.value for v in data.vintages(other_spec, TODAY)] != [v.value for v in clone]


# -- weekly series -------------------------------------------------------------------------
def test_icsa_is_weekly_ending_saturday_released_thursday_revised_a_week_later() -> None:
    spec = WEEKLY_SERIES["ICSA"]
    dates = spec.dates()
    assert all(d.weekday() == 5 for d in dates)  # Saturdays
    assert {b - a for a, b in itertools.pairwise(dates)} == {dt.timedelta(days=7)}
    vintages = FredData(seed=42).vintages(spec, TODAY)
    by_date: dict[dt.date, list[Any]] = {}
    for v in vintages:
        by_date.setdefault(v.date, []).append(v)
    for day, rows in by_date.items():
        first = rows[0].start
        assert first == day + dt.timedelta(days=5) and first.weekday() == 3  # Thursday
        if len(rows) == 2:
            assert rows[1].start == first + dt.timedelta(days=7)
            assert rows[0].end == rows[1].start - dt.timedelta(days=1)
        assert rows[-1].end == OPEN_END
        assert len(rows) <= 2
    # the latest week: Sat 2025-03-01 released Thu 2025-03-06, its revision not out yet
    assert max(by_date) == dt.date(2025, 3, 1)
    assert [v.start for v in by_date[dt.date(2025, 3, 1)]] == [dt.date(2025, 3, 6)]
    assert [v.start for v in by_date[dt.date(2025, 2, 22)]] == [
        dt.date(2025, 2, 27), dt.date(2025, 3, 6)
    ]
    values = [float(v.value) for v in vintages if v.value != "."]
    assert min(values) >= 150_000 and max(values) < 1_000_000
    assert all(float(v).is_integer() for v in values)


def test_walcl_is_a_wednesday_level_released_the_next_day() -> None:
    spec = WEEKLY_SERIES["WALCL"]
    assert all(d.weekday() == 2 for d in spec.dates())
    vintages = FredData(seed=42).vintages(spec, TODAY)
    firsts = {v.date: v.start for v in reversed(vintages)}  # the earliest start per date
    assert all(start == day + dt.timedelta(days=1) for day, start in firsts.items())


def test_weekly_series_are_served_with_their_metadata(client: httpx.Client) -> None:
    meta = get(client, "/series", series_id="ICSA").json()["seriess"][0]
    assert (meta["id"], meta["title"]) == ("ICSA", "Initial Claims")
    assert (meta["frequency"], meta["frequency_short"]) == ("Weekly, Ending Saturday", "W")
    assert meta["observation_start"] == "2000-01-01"
    assert meta["observation_end"] == "2025-03-01"
    rows = observations(client, "ICSA")
    assert {r["date"] for r in rows} == {d.isoformat() for d in published_dates("ICSA")}
    vintage_dates = get(client, "/series/vintagedates", series_id="ICSA").json()
    assert vintage_dates["count"] == len({r["realtime_start"] for r in rows})
    assert all(dt.date.fromisoformat(d).weekday() == 3 for d in vintage_dates["vintage_dates"])


def published_dates(series_id: str) -> list[dt.date]:
    spec = series_spec(series_id)
    assert spec is not None
    return [d for d in spec.dates() if d <= dt.date(2025, 3, 1)]


# -- the API -------------------------------------------------------------------------------
def test_clones_are_served_and_differ_from_their_base(client: httpx.Client) -> None:
    meta = get(client, "/series", series_id="unrate_5").json()["seriess"][0]
    assert meta["id"] == "UNRATE_5"
    assert meta["title"] == "Unemployment Rate (sandbox clone 5)"
    assert meta["frequency"] == "Monthly"
    base, clone = observations(client, "UNRATE"), observations(client, "UNRATE_5")
    key = [(r["date"], r["realtime_start"], r["realtime_end"]) for r in base]
    assert [(r["date"], r["realtime_start"], r["realtime_end"]) for r in clone] == key
    assert [r["value"] for r in clone] != [r["value"] for r in base]
    assert observations(client, "UNRATE_5") == clone  # deterministic


@pytest.mark.parametrize("series_id", ["NOSUCHSERIES", "NOSUCH_7", "GDP_0", "ICSA_07"])
@pytest.mark.parametrize("path", ["/series", "/series/observations", "/series/vintagedates"])
def test_unknown_ids_get_the_recorded_400(client: httpx.Client, path: str, series_id: str) -> None:
    response = get(client, path, series_id=series_id)
    assert response.status_code == 400
    assert response.json() == load_json("fred/error_400_series_does_not_exist.json")


# -- benchmark_series_ids ------------------------------------------------------------------
def test_benchmark_ids_mix_every_frequency_base_series_first() -> None:
    ids = benchmark_series_ids(200)
    assert len(set(ids)) == 200
    assert set(ids[: len(BASE_SERIES)]) == set(BASE_SERIES)
    specs = [series_spec(i) for i in ids]
    assert all(spec is not None for spec in specs)
    kinds = Counter(
        "Weekly" if spec.weekly else spec.frequency for spec in specs if spec is not None
    )
    assert kinds == {"Daily": 40, "Weekly": 40, "Monthly": 100, "Quarterly": 20}
    assert ids[len(BASE_SERIES)] == "GDP_1" and ids[-1] == "INDPRO_19"
    first_four = {s.frequency.split(",")[0] for s in map(series_spec, ids[:4]) if s}
    assert first_four == {"Daily", "Weekly", "Monthly", "Quarterly"}
    assert benchmark_series_ids(8) == ids[:8]
    assert benchmark_series_ids(0) == []
    with pytest.raises(ValueError):
        benchmark_series_ids(-1)
