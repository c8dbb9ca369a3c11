"""``macro.fred_as_of`` against the real GDP vintages: what was known on a given day.

The recorded ALFRED payload holds every published vintage of GDP (3,201 rows). It is
parsed with the client's parser, validated and landed exactly as a run lands it (lake
upsert, then the warehouse views), and the point-in-time macro is checked on days whose
answers differ between vintages: a backtest that gets these wrong uses revised numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest

from dashtam_pipeline.providers.fred.client import parse_observations
from dashtam_pipeline.registry import Dataset, get_dataset_spec
from dashtam_pipeline.schemas.macro import FredObservationSchema
from dashtam_pipeline.storage.warehouse import Warehouse
from dashtam_pipeline.validation import validate
from dashtam_pipeline_tests.payloads import load_json

PAYLOAD = "fred/series_observations_GDP_all_vintages.json"
Q3_2008 = dt.date(2008, 7, 1)


@pytest.fixture(scope="module")
def raw() -> list[dict[str, Any]]:
    return load_json(PAYLOAD)["observations"]


@pytest.fixture(scope="module")
def warehouse(raw: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The payload landed as a run lands it, in a fresh data dir."""
    root: Path = tmp_path_factory.mktemp("gdp_as_of")
    parsed = parse_observations({"observations": raw, "count": len(raw)}, "GDP")
    assert parsed.rejected == []
    spec = get_dataset_spec(Dataset.FRED_OBSERVATIONS)
    checked = validate(FredObservationSchema, parsed.frame, provider="fred", table=spec.table)
    assert len(checked.valid) == len(raw) == 3201
    house = Warehouse(root / "warehouse.duckdb", root / "lake")
    written = house.lake.upsert(spec, checked.valid, FredObservationSchema)
    assert written.rows_written == 3201
    assert house.ensure_views()
    return house


def as_of(house: Warehouse, day: str, date: dt.date = Q3_2008) -> list[float | None]:
    rows = house.query(
        "SELECT value FROM macro.fred_as_of(CAST(? AS DATE)) "
        "WHERE series_id = 'GDP' AND date = ?",
        [day, date],
    )[1]
    return [row[0] for row in rows]


def expected_as_of(raw: list[dict[str, Any]], day: str) -> dict[dt.date, float | None]:
    """The payload's answer for ``day``, computed in plain Python from the strings."""
    return {
        dt.date.fromisoformat(r["date"]): None if r["value"] == "." else float(r["value"])
        for r in raw
        if r["realtime_start"] <= day <= r["realtime_end"]
    }


@pytest.mark.parametrize(
    ("day", "value"),
    [
        ("2008-10-30", 14429.2),  # the advance estimate, on its release day
        ("2008-11-01", 14429.2),
        ("2008-11-24", 14429.2),  # last day of the advance estimate
        ("2008-11-25", 14420.5),  # the preliminary estimate
        ("2009-01-01", 14412.8),  # the final estimate
        ("2009-07-31", 14546.7),  # first annual revision
        ("2013-07-31", 14844.3),  # comprehensive revision
        ("2021-07-29", 14898.999),  # the current vintage
    ],
)
def test_q3_2008_as_known_on_each_day(warehouse: Warehouse, day: str, value: float) -> None:
    assert as_of(warehouse, day) == [pytest.approx(value, abs=1e-9)]


def test_q3_2008_unknown_before_its_first_release(warehouse: Warehouse) -> None:
    assert as_of(warehouse, "2008-10-29") == []


def test_q3_2008_latest_is_the_current_vintage(warehouse: Warehouse) -> None:
    rows = warehouse.query(
        "SELECT value FROM macro.fred_latest WHERE series_id = 'GDP' AND date = ?", [Q3_2008]
    )[1]
    assert rows == [(pytest.approx(14898.999, abs=1e-9),)]
    assert as_of(warehouse, "2008-11-01") != [rows[0][0]]


def test_withdrawn_value_is_null_while_it_was_withdrawn(warehouse: Warehouse) -> None:
    """1946-Q1 was published as 199.7, withdrawn ("." from 1996-01-19), then restored."""
    q1_1946 = dt.date(1946, 1, 1)
    assert as_of(warehouse, "1995-06-01", q1_1946) == [pytest.approx(199.7)]
    assert as_of(warehouse, "1996-06-01", q1_1946) == [None]
    assert as_of(warehouse, "1998-01-01", q1_1946) == [pytest.approx(210.4)]


@pytest.mark.parametrize("day", ["1993-01-01", "2000-06-30", "2008-11-01", "2009-01-01",
                                 "2015-03-15", "2019-01-01"])
def test_whole_answer_matches_the_payload(
    warehouse: Warehouse, raw: list[dict[str, Any]], day: str
) -> None:
    """Every date known on ``day``, once each, with the value of the vintage then current."""
    rows = warehouse.query(
        "SELECT date, value FROM macro.fred_as_of(CAST(? AS DATE)) WHERE series_id = 'GDP' "
        "ORDER BY date",
        [day],
    )[1]
    dates = [row[0] for row in rows]
    assert len(dates) == len(set(dates))
    expected = expected_as_of(raw, day)
    assert dates == sorted(expected)
    for date, value in rows:
        want = expected[date]
        assert (value is None) if want is None else math.isclose(value, want), (day, date)


def test_latest_is_exactly_the_open_ended_rows(
    warehouse: Warehouse, raw: list[dict[str, Any]]
) -> None:
    rows = warehouse.query(
        "SELECT date, value FROM macro.fred_latest WHERE series_id = 'GDP' ORDER BY date"
    )[1]
    current = {
        dt.date.fromisoformat(r["date"]): None if r["value"] == "." else float(r["value"])
        for r in raw
        if r["realtime_end"] == "9999-12-31"
    }
    assert len(rows) == len(current) == len({r["date"] for r in raw})
    assert {date for date, _ in rows} == set(current)
    for date, value in rows:
        want = current[date]
        assert (value is None) if want is None else math.isclose(value, want), date
