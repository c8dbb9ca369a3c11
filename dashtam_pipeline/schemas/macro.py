"""Schemas of the FRED datasets: series metadata and every vintage of every observation."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from dashtam_pipeline.schemas.base import CalendarDate, ContractModel, dates_in_range

SERIES_ID = r"^[A-Z0-9_]+$"


class FredSeriesSchema(ContractModel):
    """``macro.fred_series``: one row of metadata per series."""

    series_id: Series[str] = pa.Field(
        str_matches=SERIES_ID,
        description=(
            'FRED series id, e.g. GDP, UNRATE; the partition the row belongs to. FRED `id`.'
        ),
    )
    title: Series[str] = pa.Field(
        description="FRED's title of the series. FRED `title`.",
    )
    frequency: Series[str] = pa.Field(
        description=(
            'Observation frequency as FRED names it (Daily, Weekly, Monthly, Quarterly, …). '
            'FRED `frequency`.'
        ),
    )
    units: Series[str] = pa.Field(
        nullable=True,
        description='Units of `value`, e.g. Percent, Billions of Dollars. FRED `units`.',
    )
    seasonal_adjustment: Series[str] = pa.Field(
        nullable=True,
        description=(
            'Seasonal adjustment, e.g. Seasonally Adjusted Annual Rate. FRED '
            '`seasonal_adjustment`.'
        ),
    )
    observation_start: Series[CalendarDate] = pa.Field(
        nullable=True,
        description='First observation date FRED has. FRED `observation_start`.',
    )
    observation_end: Series[CalendarDate] = pa.Field(
        nullable=True,
        description='Latest observation date FRED has. FRED `observation_end`.',
    )
    last_updated: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"},
        description='When FRED last revised the series, UTC. FRED `last_updated`.',
    )
    notes: Series[str] = pa.Field(
        nullable=True,
        description="FRED's notes on sources and definitions. FRED `notes`.",
    )


class FredObservationSchema(ContractModel):
    """``macro.fred_observations``: one row per (series, date, vintage start)."""

    series_id: Series[str] = pa.Field(
        str_matches=SERIES_ID,
        description='FRED series id; the partition the row belongs to.',
    )
    date: Series[CalendarDate] = pa.Field(
        description=(
            "Observation date (the period the value describes, e.g. the quarter's first day)."
            ' FRED `date`.'
        ),
    )
    value: Series[float] = pa.Field(
        nullable=True,
        description=(
            'The value in the series\' `units`; NULL where FRED sends "." (no value). FRED '
            '`value`.'
        ),
    )
    realtime_start: Series[CalendarDate] = pa.Field(
        description=(
            "First day this value was published (the vintage's start). ALFRED "
            '`realtime_start`.'
        ),
    )
    realtime_end: Series[CalendarDate] = pa.Field(
        description=(
            'Last day this value was current; 9999-12-31 for the current vintage. ALFRED '
            '`realtime_end`.'
        ),
    )

    @pa.check("date", "realtime_start", name="dates_in_range")
    def _date_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s)

    @pa.check("realtime_end", name="realtime_end_in_range")
    def _end_range(cls, s: Series) -> Series[bool]:
        return dates_in_range(s, allow_open_end=True)

    @pa.dataframe_check(name="vintage_start_before_end")
    def _vintage_order(cls, df: pd.DataFrame) -> Series[bool]:
        return df["realtime_start"] <= df["realtime_end"]
