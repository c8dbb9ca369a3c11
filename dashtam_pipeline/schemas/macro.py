"""Schemas of the FRED datasets: series metadata and every vintage of every observation."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import CalendarDate, ContractModel, dates_in_range

SERIES_ID = r"^[A-Z0-9_]+$"


class FredSeriesSchema(ContractModel):
    """``macro.fred_series``: one row of metadata per series."""

    series_id: Series[str] = pa.Field(str_matches=SERIES_ID)
    title: Series[str] = pa.Field()
    frequency: Series[str] = pa.Field()
    units: Series[str] = pa.Field(nullable=True)
    seasonal_adjustment: Series[str] = pa.Field(nullable=True)
    observation_start: Series[CalendarDate] = pa.Field(nullable=True)
    observation_end: Series[CalendarDate] = pa.Field(nullable=True)
    last_updated: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    notes: Series[str] = pa.Field(nullable=True)


class FredObservationSchema(ContractModel):
    """``macro.fred_observations``: one row per (series, date, vintage start)."""

    series_id: Series[str] = pa.Field(str_matches=SERIES_ID)
    date: Series[CalendarDate] = pa.Field()
    value: Series[float] = pa.Field(nullable=True)
    realtime_start: Series[CalendarDate] = pa.Field()
    realtime_end: Series[CalendarDate] = pa.Field()

    @pa.check("date", "realtime_start", name="dates_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.check("realtime_end", name="realtime_end_in_range")
    def _end_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s, allow_open_end=True)

    @pa.dataframe_check(name="vintage_start_before_end")
    def _vintage_order(cls, df: pd.DataFrame) -> Series[bool]:
        return df["realtime_start"] <= df["realtime_end"]
