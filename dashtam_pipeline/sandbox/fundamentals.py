"""Financial statements and earnings: one seeded set of fiscal quarters per company.

Quarters are generated independently (seeded by symbol and period end), annual figures
are the sum of their four quarters (income lines) or the fourth quarter's balance sheet,
and every subtotal is the sum of its lines, so the bodies hold together the way real
filings do. A period is published once its filing date is on or before "today".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.sandbox.common import (
    add_months,
    month_end,
    next_weekday_on_or_after,
    rng_for,
)
from dashtam_pipeline.sandbox.market_data import ANCHOR_DATE, Company, company

#: asset multiple of revenue, liabilities / assets, R&D / revenue (default for others)
_BALANCE: dict[str, tuple[float, float, float]] = {
    "AAPL": (0.93, 0.84, 0.08),
    "MSFT": (2.1, 0.45, 0.12),
    "NVDA": (0.85, 0.30, 0.10),
    "AMZN": (0.98, 0.60, 0.14),
    "GOOGL": (1.3, 0.27, 0.14),
    "JPM": (22.0, 0.92, 0.0),
    "XOM": (1.35, 0.45, 0.003),
    "BRK.B": (3.0, 0.40, 0.0),
}
_DEFAULT_BALANCE = (1.2, 0.55, 0.03)
REVENUE_GROWTH = 0.07  # a year


@dataclass(frozen=True)
class FiscalQuarter:
    """One fiscal quarter's income lines and closing balance sheet (USD)."""

    period_end: dt.date
    fiscal_year: int
    quarter: int  # 1..4
    report_date: dt.date  # earnings release
    filing_date: dt.date  # 10-Q / 10-K
    income: dict[str, float]
    balance: dict[str, float]
    eps_surprise: float
    revenue_surprise: float


def _round_m(value: float) -> int:
    """Statement amounts are whole dollars, reported to the million."""
    return int(round(value / 1e6) * 1e6)


def quarter_ends(c: Company, first_year: int, last_year: int) -> list[tuple[dt.date, int, int]]:
    """(period end, fiscal year, fiscal quarter) for fiscal years in the range, ascending."""
    out = []
    for fiscal_year in range(first_year, last_year + 1):
        fy_end = month_end(fiscal_year, c.fiscal_year_end_month)
        for quarter in range(1, 5):
            end = add_months(fy_end.replace(day=1), 3 * (quarter - 4))
            out.append((month_end(end.year, end.month), fiscal_year, quarter))
    return sorted(out)


def _income(c: Company, rng: Any, revenue: float, rd_ratio: float, shares: float) -> dict:
    gross = revenue * (c.gross_margin + rng.normal(0, 0.01))
    operating = revenue * (c.operating_margin + rng.normal(0, 0.01))
    opex = gross - operating
    rd = min(revenue * rd_ratio, 0.6 * opex)
    other = revenue * rng.normal(0.002, 0.003)
    before_tax = operating + other
    tax = max(0.0, before_tax * 0.19)
    return {
        "revenue": revenue,
        "grossProfit": gross,
        "researchAndDevelopmentExpenses": rd,
        "sellingGeneralAndAdministrativeExpenses": opex - rd,
        "depreciationAndAmortization": revenue * 0.03,
        "totalOtherIncomeExpensesNet": other,
        "incomeTaxExpense": tax,
        "weightedAverageShsOut": shares,
        "weightedAverageShsOutDil": shares * 1.004,
    }


def _balance(rng: Any, assets: float, liability_ratio: float) -> dict[str, float]:
    def share(mean: float) -> float:
        return assets * max(0.0, mean * (1 + rng.normal(0, 0.05)))

    b = {
        "cashAndCashEquivalents": share(0.08),
        "shortTermInvestments": share(0.09),
        "accountsReceivables": share(0.09),
        "otherReceivables": share(0.08),
        "inventory": share(0.02),
        "otherCurrentAssets": share(0.04),
        "propertyPlantEquipmentNet": share(0.13),
        "goodwill": share(0.03),
        "intangibleAssets": share(0.01),
        "longTermInvestments": share(0.25),
        "taxAssets": share(0.05),
    }
    liabilities = assets * liability_ratio
    lshare = {
        "accountPayables": 0.22, "otherPayables": 0.09, "shortTermDebt": 0.07,
        "capitalLeaseObligationsCurrent": 0.005, "deferredRevenue": 0.03,
        "otherCurrentLiabilities": 0.16, "longTermDebt": 0.28,
        "capitalLeaseObligationsNonCurrent": 0.035, "deferredTaxLiabilitiesNonCurrent": 0.01,
    }
    b |= {k: liabilities * v * (1 + rng.normal(0, 0.05)) for k, v in lshare.items()}
    b["totalAssets"] = assets
    b["totalLiabilities"] = liabilities
    b["commonStockShare"] = 0.6 + rng.normal(0, 0.05)
    return b


class Fundamentals:
    """Statements and earnings for any symbol, per seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def quarters(self, symbol: str, today: dt.date) -> list[FiscalQuarter]:
        """Every quarter from eight fiscal years back to the next unreported one."""
        c = company(symbol)
        asset_multiple, liability_ratio, rd_ratio = _BALANCE.get(c.symbol, _DEFAULT_BALANCE)
        out = []
        for end, fiscal_year, quarter in quarter_ends(c, today.year - 8, today.year + 2):
            rng = rng_for(self.seed, "fundamentals", c.symbol, end)
            years = (end - ANCHOR_DATE).days / 365.25
            scale = (1 + REVENUE_GROWTH) ** years
            revenue = c.annual_revenue / 4 * scale * (1 + rng.normal(0, 0.04))
            shares = c.shares_outstanding * (1 - 0.01 * years)
            report = next_weekday_on_or_after(end + dt.timedelta(days=28 + int(rng.integers(0, 7))))
            filing_lag = 30 if quarter == 4 else 2
            out.append(
                FiscalQuarter(
                    period_end=end,
                    fiscal_year=fiscal_year,
                    quarter=quarter,
                    report_date=report,
                    filing_date=next_weekday_on_or_after(report + dt.timedelta(days=filing_lag)),
                    income=_income(c, rng, revenue, rd_ratio, shares),
                    balance=_balance(rng, c.annual_revenue * scale * asset_multiple,
                                     liability_ratio),
                    eps_surprise=float(rng.normal(0.03, 0.04)),
                    revenue_surprise=float(rng.normal(0.01, 0.015)),
                )
            )
        return out

    # -- FMP bodies ----------------------------------------------------------------------
    def income_statements(
        self, symbol: str, display: str, period: str, limit: int, today: dt.date
    ) -> list[dict[str, Any]]:
        return self._statements(income_record, symbol, display, period, limit, today)

    def balance_sheets(
        self, symbol: str, display: str, period: str, limit: int, today: dt.date
    ) -> list[dict[str, Any]]:
        return self._statements(balance_record, symbol, display, period, limit, today)

    def _statements(
        self,
        record: Callable[[str, Company, list[FiscalQuarter]], dict[str, Any]],
        symbol: str, display: str, period: str, limit: int, today: dt.date,
    ) -> list[dict[str, Any]]:
        """One FMP statement record per filed period, newest first."""
        return [
            record(display, company(symbol), group)
            for group in self._periods(symbol, period, limit, today)
        ]

    def _periods(
        self, symbol: str, period: str, limit: int, today: dt.date
    ) -> list[list[FiscalQuarter]]:
        """Filed periods, newest first: each is its quarters (one, or four for a year)."""
        filed = [q for q in self.quarters(symbol, today) if q.filing_date <= today]
        if period in ("annual", "FY"):
            groups = [
                filed[i - 3 : i + 1] for i, q in enumerate(filed) if q.quarter == 4 and i >= 3
            ]
        else:
            wanted = {"Q1": 1, "Q2": 2, "Q3": 3, "Q4": 4}.get(period)
            groups = [[q] for q in filed if wanted in (None, q.quarter)]
        return list(reversed(groups))[:limit]

    def earnings(self, symbol: str, display: str, limit: int, today: dt.date) -> list[dict]:
        """Reported quarters with actuals, plus the next report with null actuals."""
        quarters = self.quarters(symbol, today)
        reported = [q for q in quarters if q.report_date <= today]
        upcoming = [q for q in quarters if q.report_date > today][:1]
        rows = [earnings_record(display, q, reported=True, today=today) for q in reported]
        rows += [earnings_record(display, q, reported=False, today=today) for q in upcoming]
        return list(reversed(rows))[:limit]


def _header(display: str, c: Company, last: FiscalQuarter, annual: bool) -> dict[str, Any]:
    return {
        "date": last.period_end.isoformat(),
        "symbol": display,
        "reportedCurrency": "USD",
        "cik": c.cik,
        "filingDate": last.filing_date.isoformat(),
        "acceptedDate": f"{last.filing_date.isoformat()} 06:01:36",
        "fiscalYear": str(last.fiscal_year),
        "period": "FY" if annual else f"Q{last.quarter}",
    }


def income_record(display: str, c: Company, quarters: list[FiscalQuarter]) -> dict[str, Any]:
    """One row shaped like FMP's stable ``/income-statement``."""
    sums = {k: sum(q.income[k] for q in quarters) for k in quarters[0].income}
    shares = _round_m(sums["weightedAverageShsOut"] / len(quarters))
    shares_dil = _round_m(sums["weightedAverageShsOutDil"] / len(quarters))
    revenue = _round_m(sums["revenue"])
    gross = _round_m(sums["grossProfit"])
    rd = _round_m(sums["researchAndDevelopmentExpenses"])
    sga = _round_m(sums["sellingGeneralAndAdministrativeExpenses"])
    opex = rd + sga
    operating = gross - opex
    dna = _round_m(sums["depreciationAndAmortization"])
    other = _round_m(sums["totalOtherIncomeExpensesNet"])
    before_tax = operating + other
    tax = _round_m(sums["incomeTaxExpense"])
    net = before_tax - tax
    return _header(display, c, quarters[-1], len(quarters) == 4) | {
        "revenue": revenue,
        "costOfRevenue": revenue - gross,
        "grossProfit": gross,
        "researchAndDevelopmentExpenses": rd,
        "generalAndAdministrativeExpenses": 0,
        "sellingAndMarketingExpenses": 0,
        "sellingGeneralAndAdministrativeExpenses": sga,
        "otherExpenses": 0,
        "operatingExpenses": opex,
        "costAndExpenses": revenue - gross + opex,
        "netInterestIncome": 0,
        "interestIncome": 0,
        "interestExpense": 0,
        "depreciationAndAmortization": dna,
        "ebitda": operating + dna,
        "ebit": operating,
        "nonOperatingIncomeExcludingInterest": 0,
        "operatingIncome": operating,
        "totalOtherIncomeExpensesNet": other,
        "incomeBeforeTax": before_tax,
        "incomeTaxExpense": tax,
        "netIncomeFromContinuingOperations": net,
        "netIncomeFromDiscontinuedOperations": 0,
        "otherAdjustmentsToNetIncome": 0,
        "netIncome": net,
        "netIncomeDeductions": 0,
        "bottomLineNetIncome": net,
        "eps": round(net / shares, 2),
        "epsDiluted": round(net / shares_dil, 2),
        "weightedAverageShsOut": shares,
        "weightedAverageShsOutDil": shares_dil,
    }


def balance_record(display: str, c: Company, quarters: list[FiscalQuarter]) -> dict[str, Any]:
    """One row shaped like FMP's stable ``/balance-sheet-statement`` (closing balances)."""
    last = quarters[-1]
    b = {k: _round_m(v) for k, v in last.balance.items() if k != "commonStockShare"}
    cash_st = b["cashAndCashEquivalents"] + b["shortTermInvestments"]
    receivables = b["accountsReceivables"] + b["otherReceivables"]
    current = cash_st + receivables + b["inventory"] + b["otherCurrentAssets"]
    goodwill_intangibles = b["goodwill"] + b["intangibleAssets"]
    named_noncurrent = (b["propertyPlantEquipmentNet"] + goodwill_intangibles
                        + b["longTermInvestments"] + b["taxAssets"])
    total_assets = max(b["totalAssets"], current + named_noncurrent)
    other_noncurrent = total_assets - current - named_noncurrent
    payables = b["accountPayables"] + b["otherPayables"]
    current_liab = (payables + b["shortTermDebt"] + b["capitalLeaseObligationsCurrent"]
                    + b["deferredRevenue"] + b["otherCurrentLiabilities"])
    named_noncurrent_liab = (b["longTermDebt"] + b["capitalLeaseObligationsNonCurrent"]
                             + b["deferredTaxLiabilitiesNonCurrent"])
    total_liab = max(b["totalLiabilities"], current_liab + named_noncurrent_liab)
    other_noncurrent_liab = total_liab - current_liab - named_noncurrent_liab
    equity = total_assets - total_liab
    common = _round_m(equity * last.balance["commonStockShare"])
    aoci = _round_m(-abs(equity) * 0.05)
    leases = b["capitalLeaseObligationsCurrent"] + b["capitalLeaseObligationsNonCurrent"]
    total_debt = b["shortTermDebt"] + b["longTermDebt"] + leases
    return _header(display, c, last, len(quarters) == 4) | {
        "cashAndCashEquivalents": b["cashAndCashEquivalents"],
        "shortTermInvestments": b["shortTermInvestments"],
        "cashAndShortTermInvestments": cash_st,
        "netReceivables": receivables,
        "accountsReceivables": b["accountsReceivables"],
        "otherReceivables": b["otherReceivables"],
        "inventory": b["inventory"],
        "prepaids": 0,
        "otherCurrentAssets": b["otherCurrentAssets"],
        "totalCurrentAssets": current,
        "propertyPlantEquipmentNet": b["propertyPlantEquipmentNet"],
        "goodwill": b["goodwill"],
        "intangibleAssets": b["intangibleAssets"],
        "goodwillAndIntangibleAssets": goodwill_intangibles,
        "longTermInvestments": b["longTermInvestments"],
        "taxAssets": b["taxAssets"],
        "otherNonCurrentAssets": other_noncurrent,
        "totalNonCurrentAssets": total_assets - current,
        "otherAssets": 0,
        "totalAssets": total_assets,
        "totalPayables": payables,
        "accountPayables": b["accountPayables"],
        "otherPayables": b["otherPayables"],
        "accruedExpenses": 0,
        "shortTermDebt": b["shortTermDebt"],
        "capitalLeaseObligationsCurrent": b["capitalLeaseObligationsCurrent"],
        "taxPayables": b["otherPayables"],
        "deferredRevenue": b["deferredRevenue"],
        "otherCurrentLiabilities": b["otherCurrentLiabilities"],
        "totalCurrentLiabilities": current_liab,
        "longTermDebt": b["longTermDebt"],
        "capitalLeaseObligationsNonCurrent": b["capitalLeaseObligationsNonCurrent"],
        "deferredRevenueNonCurrent": 0,
        "deferredTaxLiabilitiesNonCurrent": b["deferredTaxLiabilitiesNonCurrent"],
        "otherNonCurrentLiabilities": other_noncurrent_liab,
        "totalNonCurrentLiabilities": total_liab - current_liab,
        "otherLiabilities": 0,
        "capitalLeaseObligations": leases,
        "totalLiabilities": total_liab,
        "treasuryStock": 0,
        "preferredStock": 0,
        "commonStock": common,
        "retainedEarnings": equity - common - aoci,
        "additionalPaidInCapital": 0,
        "accumulatedOtherComprehensiveIncomeLoss": aoci,
        "otherTotalStockholdersEquity": 0,
        "totalStockholdersEquity": equity,
        "totalEquity": equity,
        "minorityInterest": 0,
        "totalLiabilitiesAndTotalEquity": total_assets,
        "totalInvestments": b["shortTermInvestments"] + b["longTermInvestments"],
        "totalDebt": total_debt,
        "netDebt": total_debt - b["cashAndCashEquivalents"],
    }


def earnings_record(
    display: str, q: FiscalQuarter, *, reported: bool, today: dt.date
) -> dict[str, Any]:
    """One row shaped like FMP's stable ``/earnings``; future reports have null actuals."""
    income = income_record(display, company(display), [q])
    eps = income["epsDiluted"]
    revenue = income["revenue"]
    return {
        "symbol": display,
        "date": q.report_date.isoformat(),
        "epsActual": eps if reported else None,
        "epsEstimated": round(eps * (1 - q.eps_surprise), 2),
        "revenueActual": revenue if reported else None,
        "revenueEstimated": _round_m(revenue * (1 - q.revenue_surprise)),
        "lastUpdated": (q.report_date if reported else today).isoformat(),
    }
