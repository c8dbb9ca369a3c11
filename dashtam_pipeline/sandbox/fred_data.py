"""FRED/ALFRED series: seeded value paths, their release calendar and revisions.

Every observation date has a first release (a rule per series, e.g. GDP's advance
estimate about four weeks after the quarter) and ``revisions`` later vintages, each
with its own ``realtime_start``; a vintage is only visible once its start is on or before
"today", so the newest periods naturally show fewer vintages than older ones. The first
two dates of each series were published and later withdrawn (``"."``), as FRED does.

Which ids exist (``series_spec``): the default series in ``SERIES`` (the ids of
``DASHTAM_FRED_SERIES``' default), the weekly ones in ``WEEKLY_SERIES`` (ICSA, WALCL), and
any *clone* ``<BASE>_<n>`` of one of those (``GDP_7``, ``ICSA_12``; ``n`` >= 1, no leading
zero): the base's metadata and release calendar, its own title and its own values (paths
are seeded by the series id). Clones give benchmarks and load tests as many distinct
series as they need (``benchmark_series_ids``); every other id does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dashtam_pipeline.sandbox.common import (
    CHICAGO,
    add_months,
    next_weekday_on_or_after,
    rng_for,
)

OPEN_END = dt.date(9999, 12, 31)
HORIZON = dt.date(2040, 12, 31)
MISSING = "."


def _first_friday(day: dt.date) -> dt.date:
    first = day.replace(day=1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7)


#: release rules: period date -> first publication date
_RELEASES: dict[str, Callable[[dt.date], dt.date]] = {
    "gdp": lambda d: next_weekday_on_or_after(add_months(d, 4) - dt.timedelta(days=2)),
    "cpi": lambda d: next_weekday_on_or_after(add_months(d, 1) + dt.timedelta(days=11)),
    "jobs": lambda d: _first_friday(add_months(d, 1)),
    "rates": lambda d: next_weekday_on_or_after(add_months(d, 1)),
    "indpro": lambda d: next_weekday_on_or_after(add_months(d, 1) + dt.timedelta(days=15)),
    "daily": lambda d: next_weekday_on_or_after(d + dt.timedelta(days=1)),
    # week ending Saturday -> the Department of Labor's release the following Thursday
    "claims": lambda d: next_weekday_on_or_after(d + dt.timedelta(days=5)),
    # Wednesday level -> the H.4.1 release the next day (Thursday)
    "h41": lambda d: next_weekday_on_or_after(d + dt.timedelta(days=1)),
}


@dataclass(frozen=True)
class SeriesSpec:
    """One series: FRED's metadata and how its path and vintages are generated."""

    id: str
    title: str
    frequency: str
    frequency_short: str
    units: str
    units_short: str
    seasonal_adjustment: str
    seasonal_adjustment_short: str
    popularity: int
    notes: str
    start: dt.date
    release: str  # key of _RELEASES
    growth: bool  # True: log random walk with drift; False: mean-reverting level
    level: float  # value at ``start``
    drift_or_mean: float  # growth per period (log) or long-run mean
    vol: float  # per period: log for growth series, absolute for levels
    reversion: float  # per period, levels only
    floor: float
    decimals: int
    revisions: int
    revision_sigma: float  # relative for growth series, absolute for levels

    @property
    def weekly(self) -> bool:
        """FRED names weekly frequencies by their last day: "Weekly, Ending Saturday"."""
        return self.frequency.startswith("Weekly")

    def dates(self) -> list[dt.date]:
        """Every observation date up to ``HORIZON``: business days for a daily series,
        every 7th day from ``start`` (its week-ending weekday) for a weekly one, the first
        of every month or quarter otherwise."""
        if self.frequency == "Daily":
            days = np.arange(np.datetime64(self.start), np.datetime64(HORIZON) + 1)
            return [d.astype(dt.date) for d in days[np.is_busday(days)]]
        if self.weekly:
            weeks = np.arange(np.datetime64(self.start), np.datetime64(HORIZON) + 1, 7)
            return [d.astype(dt.date) for d in weeks]
        months = {"Quarterly": 3, "Monthly": 1}[self.frequency]
        out, day = [], self.start
        while day <= HORIZON:
            out.append(day)
            day = add_months(day, months)
        return out

    def revision_date(self, first: dt.date, j: int) -> dt.date:
        """When the ``j``-th revision of a value first released on ``first`` appears:
        ``j`` business days later (daily), ``j`` weeks later (weekly: with the next
        week's release), ``j`` months later otherwise."""
        if self.frequency == "Daily":
            return next_weekday_on_or_after(first + dt.timedelta(days=j))
        if self.weekly:
            return next_weekday_on_or_after(first + dt.timedelta(weeks=j))
        return next_weekday_on_or_after(add_months(first, j))


_GDP_NOTES = (
    "BEA Account Code: A191RC\n\nGross domestic product (GDP), the featured measure of U.S. "
    "output, is the market value of the goods and services produced by labor and property "
    "located in the United States. (Sandbox series: generated values.)"
)

SERIES: dict[str, SeriesSpec] = {
    s.id: s
    for s in (
        SeriesSpec("GDP", "Gross Domestic Product", "Quarterly", "Q", "Billions of Dollars",
                   "Bil. of $", "Seasonally Adjusted Annual Rate", "SAAR", 93, _GDP_NOTES,
                   dt.date(1990, 1, 1), "gdp", True, 5872.7, 0.0118, 0.006, 0, 0, 3, 2, 0.002),
        SeriesSpec("CPIAUCSL",
                   "Consumer Price Index for All Urban Consumers: All Items in U.S. City Average",
                   "Monthly", "M", "Index 1982-1984=100", "Index 1982-1984=100",
                   "Seasonally Adjusted", "SA", 95,
                   "The Consumer Price Index for All Urban Consumers: All Items (CPIAUCSL) is a "
                   "price index of a basket of goods and services paid by urban consumers.",
                   dt.date(2000, 1, 1), "cpi", True, 169.3, 0.0021, 0.002, 0, 0, 3, 1, 0.0005),
        SeriesSpec("UNRATE", "Unemployment Rate", "Monthly", "M", "Percent", "%",
                   "Seasonally Adjusted", "SA", 94,
                   "The unemployment rate represents the number of unemployed as a percentage "
                   "of the labor force.",
                   dt.date(2000, 1, 1), "jobs", False, 4.0, 5.5, 0.18, 0.03, 3.4, 1, 1, 0.1),
        SeriesSpec("FEDFUNDS", "Federal Funds Effective Rate", "Monthly", "M", "Percent", "%",
                   "Not Seasonally Adjusted", "NSA", 92,
                   "The federal funds rate is the interest rate at which depository "
                   "institutions trade federal funds with each other overnight.",
                   dt.date(2000, 1, 1), "rates", False, 5.45, 2.5, 0.22, 0.02, 0.05, 2, 1, 0.01),
        SeriesSpec("DGS10",
                   "Market Yield on U.S. Treasury Securities at 10-Year Constant Maturity, "
                   "Quoted on an Investment Basis",
                   "Daily", "D", "Percent", "%", "Not Seasonally Adjusted", "NSA", 90,
                   "For further information regarding treasury constant maturity data, please "
                   "refer to the H.15 Statistical Release notes.",
                   dt.date(2018, 1, 2), "daily", False, 2.46, 3.2, 0.055, 0.002, 0.5, 2, 1, 0.01),
        SeriesSpec("T10Y2Y",
                   "10-Year Treasury Constant Maturity Minus 2-Year Treasury Constant Maturity",
                   "Daily", "D", "Percent", "%", "Not Seasonally Adjusted", "NSA", 89,
                   "Series is calculated as the spread between 10-Year Treasury Constant "
                   "Maturity (BC_10YEAR) and 2-Year Treasury Constant Maturity (BC_2YEAR).",
                   dt.date(2018, 1, 2), "daily", False, 0.51, 0.4, 0.04, 0.003, -1.2, 2, 1, 0.01),
        SeriesSpec("PAYEMS", "All Employees, Total Nonfarm", "Monthly", "M",
                   "Thousands of Persons", "Thous. of Persons", "Seasonally Adjusted", "SA", 91,
                   "All Employees: Total Nonfarm, commonly known as Total Nonfarm Payroll, is "
                   "a measure of the number of U.S. workers in the economy.",
                   dt.date(2000, 1, 1), "jobs", True, 130781, 0.0007, 0.0015, 0, 0, 0, 2, 0.0007),
        SeriesSpec("INDPRO", "Industrial Production: Total Index", "Monthly", "M",
                   "Index 2017=100", "Index 2017=100", "Seasonally Adjusted", "SA", 88,
                   "Industrial production (IP) index measures the real output of all relevant "
                   "establishments located in the United States.",
                   dt.date(2000, 1, 1), "indpro", True, 92.0, 0.0004, 0.006, 0, 0, 4, 2, 0.002),
    )
}


#: Weekly series (not among the defaults): FRED's weekly ids, released on their own day.
WEEKLY_SERIES: dict[str, SeriesSpec] = {
    s.id: s
    for s in (
        SeriesSpec("ICSA", "Initial Claims", "Weekly, Ending Saturday", "W", "Number",
                   "Number", "Seasonally Adjusted", "SA", 85,
                   "An initial claim is a claim filed by an unemployed individual after a "
                   "separation from an employer. (Sandbox series: generated values.)",
                   dt.date(2000, 1, 1), "claims", False, 285_000, 330_000, 9_000, 0.04,
                   150_000, 0, 1, 4_000),
        SeriesSpec("WALCL",
                   "Assets: Total Assets: Total Assets (Less Eliminations from "
                   "Consolidation): Wednesday Level",
                   "Weekly, As of Wednesday", "W", "Millions of U.S. Dollars",
                   "Mil. of U.S. $", "Not Seasonally Adjusted", "NSA", 84,
                   "Total assets of the Federal Reserve, from the H.4.1 release. (Sandbox "
                   "series: generated values.)",
                   dt.date(2002, 12, 18), "h41", True, 719_542, 0.0015, 0.004, 0, 0, 0, 1,
                   0.0002),
    )
}

#: Every series that exists under its own id; ``series_spec`` adds their clones.
BASE_SERIES: dict[str, SeriesSpec] = {**SERIES, **WEEKLY_SERIES}

_CLONE_ID = re.compile(r"(?P<base>[A-Z0-9]+)_(?P<n>[1-9][0-9]{0,5})")


@functools.lru_cache(maxsize=4096)
def series_spec(series_id: str) -> SeriesSpec | None:
    """The series FRED would answer for ``series_id`` (case-insensitive), or None when it
    does not exist: a base series (``BASE_SERIES``), or a clone ``<BASE>_<n>`` of one — the
    base's spec with its own id and title, so its values (seeded by id) are its own."""
    series_id = series_id.upper()
    spec = BASE_SERIES.get(series_id)
    if spec is not None:
        return spec
    match = _CLONE_ID.fullmatch(series_id)
    base = BASE_SERIES.get(match["base"]) if match else None
    if match is None or base is None:
        return None
    return replace(base, id=series_id, title=f"{base.title} (sandbox clone {match['n']})")


#: The order ``benchmark_series_ids`` cycles through: every frequency early on.
_BENCHMARK_ORDER = (
    "GDP", "DGS10", "ICSA", "CPIAUCSL", "T10Y2Y", "WALCL", "UNRATE", "PAYEMS", "FEDFUNDS",
    "INDPRO",
)


def benchmark_series_ids(count: int) -> list[str]:
    """``count`` distinct ids that all exist in the sandbox, a mix of daily, weekly,
    monthly and quarterly series: the base series first (interleaved by frequency, so
    even 4 ids cover all four), then their clones round by round (``GDP_1``,
    ``DGS10_1``, ..., ``INDPRO_1``, ``GDP_2``, ...). 200 ids are 20 of each base series:
    40 daily, 40 weekly, 100 monthly, 20 quarterly."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    base = len(_BENCHMARK_ORDER)
    return [
        _BENCHMARK_ORDER[i] if i < base else f"{_BENCHMARK_ORDER[i % base]}_{i // base}"
        for i in range(count)
    ]


@dataclass(frozen=True)
class Vintage:
    """One value of one date, current from ``start`` to ``end`` (inclusive)."""

    date: dt.date
    start: dt.date
    end: dt.date
    value: str


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _path(seed: int, spec: SeriesSpec, n: int) -> np.ndarray:
    rng = rng_for(seed, "fred", spec.id)
    shocks = rng.standard_normal(n)
    if spec.growth:
        steps = spec.drift_or_mean + spec.vol * shocks
        steps[0] = 0.0
        return spec.level * np.exp(np.cumsum(steps))
    values = np.empty(n)
    values[0] = spec.level
    for i in range(1, n):
        pull = spec.reversion * (spec.drift_or_mean - values[i - 1])
        values[i] = max(spec.floor, values[i - 1] + pull + spec.vol * shocks[i])
    return values


class FredData:
    """All vintages of every sandbox series for one seed, cached per "today".

    ``revise`` publishes an extra revision of a series at a given moment (what FRED does
    between scheduled releases), so tests and benchmarks choose exactly which series
    changed since a nightly check; ``last_updated`` and ``/series/updates`` follow it.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._paths: dict[str, tuple[list[dt.date], np.ndarray]] = {}
        self._vintages: dict[tuple[str, dt.date], list[Vintage]] = {}
        self._revisions: dict[str, list[dt.datetime]] = {}
        self._lock = threading.Lock()

    def revise(self, series_id: str, at: dt.datetime) -> None:
        """Publish a revision of ``series_id``'s latest observation at ``at`` (aware):
        from FRED's day of ``at`` on, a new vintage of it (value up 0.1 %) is current and
        the series' ``last_updated`` is ``at``."""
        if at.tzinfo is None:
            raise ValueError("a revision's moment must be an aware datetime")
        spec = series_spec(series_id)
        if spec is None:
            raise ValueError(f"no sandbox series {series_id!r}")
        with self._lock:
            self._revisions.setdefault(spec.id, []).append(at)
            self._revisions[spec.id].sort()
            for key in [k for k in self._vintages if k[0] == spec.id]:
                del self._vintages[key]

    def known_ids(self) -> list[str]:
        """The ids the sandbox's catalogue lists (``/series/updates``): the base series,
        and every clone that was ever asked for or revised (clones are unbounded)."""
        with self._lock:
            return sorted(set(BASE_SERIES) | set(self._paths) | set(self._revisions))

    def last_updated(self, spec: SeriesSpec, today: dt.date, now: dt.datetime) -> dt.datetime:
        """When any value of the series last changed, as of ``now`` (on FRED's ``today``):
        its newest scheduled vintage, published at 07:55:01 Central on its first day, or
        its newest revision, whichever is later."""
        newest = max(v.start for v in self.vintages(spec, today))
        moment = dt.datetime(newest.year, newest.month, newest.day, 7, 55, 1, tzinfo=CHICAGO)
        with self._lock:
            revised = [r for r in self._revisions.get(spec.id, ()) if r <= now]
        return max([moment.astimezone(dt.UTC), *(r.astimezone(dt.UTC) for r in revised)])

    def _series_path(self, spec: SeriesSpec) -> tuple[list[dt.date], np.ndarray]:
        found = self._paths.get(spec.id)
        if found is None:
            dates = spec.dates()
            found = (dates, _path(self.seed, spec, len(dates)))
            self._paths[spec.id] = found
        return found

    def vintages(self, spec: SeriesSpec, today: dt.date) -> list[Vintage]:
        """Every vintage visible on ``today``, ordered by date then realtime_start."""
        with self._lock:
            key = (spec.id, today)
            if key not in self._vintages:
                self._vintages[key] = self._build(spec, today)
            return self._vintages[key]

    def _build(self, spec: SeriesSpec, today: dt.date) -> list[Vintage]:
        dates, path = self._series_path(spec)
        release = _RELEASES[spec.release]
        rng = rng_for(self.seed, "fred-revisions", spec.id)
        noise = rng.standard_normal((len(dates), spec.revisions))
        out: list[Vintage] = []
        for i, day in enumerate(dates):
            first = release(day)
            if first > today:
                break
            starts = [first] + [spec.revision_date(first, j) for j in range(1, spec.revisions + 1)]
            starts = [s for s in starts if s <= today]
            final = float(path[i])
            scale = abs(final) if spec.growth else 1.0
            values = [
                _fmt(final + noise[i, j] * spec.revision_sigma * scale, spec.decimals)
                for j in range(spec.revisions)
            ] + [_fmt(final, spec.decimals)]
            values = values[: len(starts)]  # the later revisions are not out yet
            if i < 2 and len(values) > 1:  # published once, later withdrawn
                values[-1] = MISSING
            for j, start in enumerate(starts):
                end = starts[j + 1] - dt.timedelta(days=1) if j + 1 < len(starts) else OPEN_END
                out.append(Vintage(day, start, end, values[j]))
        return self._revised(spec, out, today)

    def _revised(self, spec: SeriesSpec, out: list[Vintage], today: dt.date) -> list[Vintage]:
        """Apply ``revise``'s revisions published on or before ``today``: each closes the
        current vintage of the latest observation whose current vintage began earlier, and
        opens one starting that day."""
        days = sorted({r.astimezone(CHICAGO).date() for r in self._revisions.get(spec.id, ())})
        for day in (d for d in days if d <= today):
            current = [i for i, v in enumerate(out) if v.end == OPEN_END and v.start < day
                       and v.value != MISSING]
            if not current:
                continue
            i = current[-1]
            old = out[i]
            out[i] = replace(old, end=day - dt.timedelta(days=1))
            value = _fmt(float(old.value) * 1.001, spec.decimals + 1)
            out.insert(i + 1, Vintage(old.date, day, OPEN_END, value))
        return out
