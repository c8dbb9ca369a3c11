"""Hostile values in one record: an integer no column type can hold or with a fraction,
an epoch outside 1900..2199. The record is quarantined with a reason naming the field;
the good rows of the same answer still land; pandera's JSON report never reaches a user.

Parsers are fed the recorded payloads with one record mutated; the end-to-end case runs
``ingest_dataset`` over an in-process mock transport (no network).
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pandera.errors import SchemaErrors

from dashtam_pipeline.clients.base import FetchRequest, RejectedRecord
from dashtam_pipeline.clients.records import epoch_instant, integer, typed_frame
from dashtam_pipeline.ingest import ingest_dataset, rejected_to_quarantine
from dashtam_pipeline.providers.fmp.client import FMPClient, parse_fundamentals, parse_quotes
from dashtam_pipeline.providers.polygon.client import parse_prev_quotes, parse_trades
from dashtam_pipeline.registry import Dataset, get_dataset_spec, get_provider_metadata
from dashtam_pipeline.schemas.market import QuoteSchema
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline.validation import schema_errors_sentence, validate
from dashtam_pipeline_tests.client_helpers import json_response, mock_client, offline_settings
from dashtam_pipeline_tests.payloads import load_json

QUOTE = "fmp/stable_quote_AAPL.json"

HOSTILE_FMP_QUOTES = {
    "volume 1e30": ("volume", 1e30, "outside the BIGINT range"),
    "volume 2**63": ("volume", 2**63, "outside the BIGINT range"),
    "volume 1.5": ("volume", 1.5, "not a whole number"),
    "timestamp -1e12": ("timestamp", -1_000_000_000_000, "outside 1900..2199"),
    "timestamp year 82269": ("timestamp", 2_534_023_008_000, "outside 1900..2199"),
    "timestamp 1e300": ("timestamp", 1e300, "outside"),
}


def aapl_and_msft(field: str | None = None, value: Any = None) -> list[dict[str, Any]]:
    """The recorded AAPL quote (``field`` set to ``value``) and a clean MSFT copy."""
    (aapl,) = load_json(QUOTE)
    msft = dict(aapl, symbol="MSFT")
    if field is not None:
        aapl = dict(aapl, **{field: value})
    return [aapl, msft]


@pytest.mark.parametrize("case", list(HOSTILE_FMP_QUOTES), ids=list(HOSTILE_FMP_QUOTES))
def test_a_hostile_fmp_quote_is_quarantined_and_the_good_one_lands(case: str) -> None:
    field, value, says = HOSTILE_FMP_QUOTES[case]
    rejected: list[RejectedRecord] = []
    frame = parse_quotes(aapl_and_msft(field, value), "fmp", rejected=rejected)
    result = validate(Dataset.QUOTES, frame, provider="fmp", table="market.quotes")

    assert result.valid["symbol"].tolist() == ["MSFT"]
    assert result.valid["volume"].tolist() == [32409702]
    assert [r.record["symbol"] for r in rejected] == ["AAPL"]
    (reason,) = [r.reason for r in rejected]
    assert reason.startswith(f"fmp quotes: field {field!r}: ") and says in reason
    quarantined = rejected_to_quarantine(rejected[0], provider="fmp", table="market.quotes",
                                         partition_key=None)
    assert '"symbol": "AAPL"' in quarantined.record


def test_a_whole_float_volume_is_kept_exact() -> None:
    frame = parse_quotes(aapl_and_msft("volume", 32409702.0), "fmp")
    assert frame["volume"].tolist() == [32409702, 32409702]
    assert integer({"v": 2**63 - 1}, "v") == 2**63 - 1  # exact: no trip through float
    assert integer({"v": "9007199254740993"}, "v") == 9007199254740993


def test_an_integer_outside_integer_range_is_quarantined_by_validation() -> None:
    """``fiscal_year`` is INTEGER: 2**40 fits BIGINT (the reader lets it through), not
    INTEGER. The frame is still built (no SchemaErrors), and validation names the column."""
    income = load_json("fmp/stable_income_statement_AAPL_annual.json")
    hostile = copy.deepcopy(income)
    hostile[0]["fiscalYear"] = 2**40
    frame = parse_fundamentals(hostile, [], "fmp")
    result = validate(Dataset.FUNDAMENTALS, frame, provider="fmp", table="market.fundamentals")
    assert len(result.valid) == len(income) - 1
    (bad,) = result.quarantined
    assert bad.reason.startswith("fiscal_year: fits_integer failed (1099511627776 is outside "
                                 "the INTEGER range")


def test_hostile_polygon_values_are_quarantined_by_field() -> None:
    body = load_json("polygon/aggs_prev_AAPL.json")
    fractional = copy.deepcopy(body)
    fractional["results"][0]["v"] = 1.5
    result = validate(Dataset.QUOTES, parse_prev_quotes(fractional, "polygon"),
                      provider="polygon", table="market.quotes")
    assert result.valid.empty
    assert "volume: fits_bigint failed (1.5 is not a whole number" in result.quarantined[0].reason

    far = copy.deepcopy(body)
    far["results"][0]["t"] = 2**62
    rejected: list[RejectedRecord] = []
    assert parse_prev_quotes(far, "polygon", rejected=rejected).empty
    assert "field 't'" in rejected[0].reason and "outside 1900..2199" in rejected[0].reason

    trades = load_json("polygon/trades_v3_AAPL.json")
    trades["results"][0]["sip_timestamp"] = -(2**63)
    rejected = []
    frame = parse_trades(trades, symbol="AAPL", rejected=rejected)
    assert len(frame) == len(trades["results"]) - 1
    assert "field 'sip_timestamp'" in rejected[0].reason


def test_epoch_bounds() -> None:
    assert epoch_instant(0, "s", "t") == pd.Timestamp("1970-01-01", tz="UTC")
    assert epoch_instant("1758648182", "s", "t").year == 2025
    for hostile in (-2_208_988_801, 7_258_118_400):  # 1899-12-31T23:59:59, 2200-01-01
        with pytest.raises(ValueError, match=r"outside 1900\.\.2199"):
            epoch_instant(hostile, "s", "t")


def test_a_frame_with_an_unstorable_value_is_built_and_validated_row_by_row() -> None:
    """``typed_frame`` never raises pandera's SchemaErrors for one bad value: the column
    stays raw and validation quarantines the row (here: a timestamp far outside range)."""
    good = parse_quotes(aapl_and_msft(), "fmp").to_dict("records")
    rows = [dict(good[0], volume=10**30),
            dict(good[1], quoted_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))]
    frame = typed_frame(QuoteSchema, [*rows, good[1] | {"symbol": "NVDA"}])
    result = validate(QuoteSchema, frame, provider="fmp", table="market.quotes")
    assert result.valid["symbol"].tolist() == ["NVDA"]
    reasons = [q.reason for q in result.quarantined]
    assert reasons[0].startswith("volume: fits_bigint failed (")
    assert reasons[1].startswith("quoted_at: fits_timestamptz failed (")


def test_schema_errors_become_one_sentence() -> None:
    frame = pd.DataFrame({"volume": [1e30, 2.0]})
    try:
        QuoteSchema.to_schema().coerce_dtype(frame.reindex(columns=list(
            QuoteSchema.to_schema().columns)))
    except SchemaErrors as exc:
        text = schema_errors_sentence(exc, provider="fmp", table="market.quotes")
    else:  # pragma: no cover - pandera changed
        pytest.fail("pandera coerced 1e30 into Int64")
    assert text.startswith("fmp market.quotes: rows do not match the schema: column volume")
    assert "value(s)" in text and "\n" not in text and '"DATA"' not in text


def test_ingest_lands_the_good_quote_and_quarantines_the_hostile_one(
    data_dir: Path,
) -> None:
    """End to end over a mock transport: FMP answers AAPL with ``volume: 1e30`` and MSFT
    cleanly. The run does not fail, MSFT lands, AAPL is in ops.quarantine with its reason,
    and the row already in the lake for AAPL is untouched."""
    settings = load_settings(dashtam_sandbox=False, fmp_api_key="k")
    lake = Lake(settings.lake_dir)
    spec = get_dataset_spec(Dataset.QUOTES)
    aapl, msft = aapl_and_msft("volume", 1e30)
    clean_aapl = aapl_and_msft()[0]

    def answer(body: list[dict[str, Any]]) -> Any:
        def factory(slug: Any, _settings: Any) -> FMPClient:
            def handler(request: httpx.Request) -> httpx.Response:
                symbol = request.url.params["symbol"]
                return json_response([r for r in body if r["symbol"] == symbol])

            return mock_client(FMPClient, handler, offline_settings("fmp", fmp_api_key="k"))

        return factory

    request = FetchRequest(symbols=("AAPL", "MSFT"), partition_key="2025-09-23")
    fmp = [get_provider_metadata("fmp")]
    first = ingest_dataset(spec, fmp, request, settings, lake,
                           client_factory=answer([clean_aapl]))
    assert first.rows_landed == 1
    before = lake.read_frame("market.quotes")

    outcome = ingest_dataset(spec, fmp, request, settings, lake,
                             client_factory=answer([aapl, msft]))
    assert outcome.quarantined == 1 and outcome.failure is None
    after = lake.read_frame("market.quotes").sort_values("symbol").reset_index(drop=True)
    assert after["symbol"].tolist() == ["AAPL", "MSFT"]
    assert after.iloc[[0]].reset_index(drop=True).equals(before.reset_index(drop=True))
    quarantine = lake.read_frame("ops.quarantine")
    (reason,) = quarantine["reason"].tolist()
    assert reason == ("fmp quotes: field 'volume': 1e+30 is outside the BIGINT range "
                      f"[{-(2**63)}, {2**63 - 1}]")
