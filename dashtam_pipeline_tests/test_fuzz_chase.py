"""Property-based attack on the Chase reader: random bytes, truncations and mutations of
the recorded exports, extreme numbers, other encodings and line endings.

Whatever the bytes, reading them raises nothing but the typed ``ProviderError``, a row is
either read or rejected with a reason, and no non-finite number reaches a frame that lands
(after validation). Examples are few and derandomized (``derandomize=True``: the same
examples every run), so CI is deterministic and the module takes a few seconds.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.providers.chase_file.client import ChaseFileClient, parse_chase_csv
from dashtam_pipeline.schemas.base import duckdb_columns
from dashtam_pipeline.schemas.brokerage import TransactionSchema
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.validation import validate
from dashtam_pipeline_tests.payloads import all_payloads, load_bytes

PAYLOADS = [load_bytes(name, record=False) for name in all_payloads("chase_file/")]
EXTREMES = [
    "1e400", "-1e400", "1e-400", "nan", "NaN", "-nan", "inf", "-Infinity", "9" * 400,
    "-0", "$-0.00", "(1)", "($1,234.56)", "$1,234.56", "1,234.56", "-$5.00", "0x1p3", "1_0",
    "١٢٣", "€5", "", " ", '"', '""', "\x00", "\u2028", "1" * 20 + ".5",
]
DOUBLES = [name for name, kind in duckdb_columns(TransactionSchema).items() if kind == "DOUBLE"]
FUZZ = settings(max_examples=60, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def hostile_exports(draw: st.DrawFn) -> bytes:
    """A recorded export, attacked: cut, numbers swapped for extremes, junk spliced in,
    re-encoded, line endings changed; or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=600))
    data = draw(st.sampled_from(PAYLOADS))
    numbers = list(re.finditer(rb"-?\d+\.\d+", data))
    for _ in range(draw(st.integers(0, 3))):
        if not numbers:
            break
        target = draw(st.sampled_from(numbers))
        extreme = draw(st.sampled_from(EXTREMES) | st.text(max_size=8)).encode(
            "utf-8", "surrogatepass")
        data = data[:target.start()] + extreme + data[target.end():]
        numbers = list(re.finditer(rb"-?\d+\.\d+", data))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=12)) + data[at:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    ending = draw(st.sampled_from([None, b"\r\n", b"\r", b"\n"]))
    if ending is not None:
        data = re.sub(rb"\r\n|\r|\n", ending, data)
    encoding = draw(st.sampled_from([None, "utf-16", "utf-8-sig", "cp1252"]))
    if encoding is not None:
        data = data.decode("utf-8", "replace").encode(encoding, "replace")
    return data


@FUZZ
@given(data=hostile_exports(), name=st.sampled_from([
    "Chase1234_Activity_20240131.CSV", "export.csv", "Chase12_x.csv", "chase9999"]))
def test_the_parser_never_raises_and_never_reads_a_non_finite_amount(
    data: bytes, name: str,
) -> None:
    parsed = parse_chase_csv(data, name)
    assert parsed.layout is not None or parsed.file_error  # not an export: said so
    for row in parsed.rows:
        assert math.isfinite(row["amount"])
    for rejected in parsed.rejected:
        assert rejected.reason.startswith(name)
    if parsed.cut_line is not None:
        assert not data.endswith((b"\n", b"\r"))


@FUZZ
@given(data=hostile_exports())
def test_what_lands_after_validation_is_finite_and_nothing_but_provider_errors_escape(
    data: bytes,
) -> None:
    with tempfile.TemporaryDirectory() as root:
        inbox = Path(root) / "inbox" / "chase"
        inbox.mkdir(parents=True)
        (inbox / "Chase1234_Activity_20240131.CSV").write_bytes(data)
        client = ChaseFileClient(load_settings(dashtam_sandbox=False).provider("chase_file"),
                                 inbox=inbox)
        try:
            result = client.fetch_transactions(FetchRequest())
        except ProviderError:
            return  # the one exception a client may raise
        landed = validate("transactions", result.frame, provider="chase_file",
                          table="brokerage.transactions").valid
        for column in DOUBLES:
            values = landed[column].dropna()
            assert values.map(math.isfinite).all(), column
        assert all(r.reason for r in result.rejected)
        client.quarantine_rejected()  # a refused file moves aside without an error
