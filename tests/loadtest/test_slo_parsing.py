"""`--slo` strings: units, aliases, and one clear error for each kind of mistake."""

import pytest

from loadtest.errors import LoadTestError
from loadtest.slo import parse_slo


def test_parses_units_and_aliases():
    slo = parse_slo("ttft=500ms, itl=50ms,e2e=4s")
    assert (slo.ttft, slo.itl, slo.e2el, slo.tpot, slo.pct) == pytest.approx((0.5, 0.05, 4.0, None, 90.0))
    slo = parse_slo("TPOT=0.05s,e2el=1.5min,ttft=250us,pct=p99")
    assert (slo.tpot, slo.e2el, slo.ttft, slo.pct) == pytest.approx((0.05, 90.0, 250e-6, 99.0))
    assert parse_slo("ttft=1e3ms").ttft == pytest.approx(1.0)
    assert parse_slo("ttft=500ms,pct=95").describe() == "ttft≤500ms at P95"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty --slo"),
        ("ttft", "is not KEY=VALUE"),
        ("ttft=", "is not KEY=VALUE"),
        ("ttft=500", "needs a unit"),
        ("ttft=5parsecs", "unknown unit 'parsecs'"),
        ("latency=5ms", "unknown figure 'latency'"),
        ("ttft=5ms,ttft=6ms", "ttft given twice"),
        ("ttft=-5ms", "is not a number with a unit"),
        ("ttft=0ms", "must be > 0"),
        ("pct=90", "needs at least one of"),
        ("ttft=5ms,pct=150", "pct must be in (0, 100]"),
        ("ttft=5ms,pct=high", "is not a number"),
    ],
)
def test_malformed_slo_is_one_clear_error(text, expected):
    with pytest.raises(LoadTestError) as info:
        parse_slo(text)
    assert expected in str(info.value) and "\n" not in str(info.value)
