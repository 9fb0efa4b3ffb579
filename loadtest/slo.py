"""Service-level objectives: `--slo ttft=500ms,itl=50ms,e2e=4s[,pct=90]` parsed into a validated model.

A *request* is good when each of its own figures is within the objective (goodput counts those, as
`vllm bench serve --goodput` does). A *load level* meets the SLO when the `pct`-th percentile of each
figure over all requests is within the objective and at most (100 - pct)% of the requests failed; the
sweep uses that test.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from loadtest.errors import LoadTestError

_UNITS_S = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
_KEYS = {"ttft": "ttft", "itl": "itl", "tpot": "tpot", "e2e": "e2el", "e2el": "e2el"}
_PCT_KEYS = {"pct", "percentile", "p"}
_VALUE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$")


class Slo(BaseModel):
    """Latency objectives in seconds; `None` = no objective for that figure."""

    model_config = ConfigDict(frozen=True)

    ttft: float | None = Field(default=None, gt=0, description="time to first token, s")
    itl: float | None = Field(
        default=None, gt=0, description="inter-token latency, s (per request: mean gap)"
    )
    tpot: float | None = Field(default=None, gt=0, description="time per output token after the first, s")
    e2el: float | None = Field(default=None, gt=0, description="end-to-end request latency, s")
    pct: float = Field(default=90.0, gt=0, le=100, description="percentile a load level must meet")

    def objectives(self) -> dict[str, float]:
        """The figures that have an objective, `{name: seconds}`."""
        return {
            k: v
            for k, v in (("ttft", self.ttft), ("itl", self.itl), ("tpot", self.tpot), ("e2el", self.e2el))
            if v is not None
        }

    def describe(self) -> str:
        parts = [f"{k}≤{_fmt_seconds(v)}" for k, v in self.objectives().items()]
        return ", ".join(parts) + f" at P{self.pct:g}"


def parse_slo(text: str) -> Slo:
    """Parse `ttft=500ms,itl=50ms,e2e=4s,pct=90`. Every latency needs a unit (us, ms, s, min)."""
    if not text or not text.strip():
        raise LoadTestError("empty --slo; expected e.g. ttft=500ms,itl=50ms,e2e=4s")
    values: dict[str, float] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep or not key or not raw.strip():
            raise LoadTestError(f"--slo item {item.strip()!r} is not KEY=VALUE (e.g. ttft=500ms)")
        if key in _PCT_KEYS:
            name, value = "pct", _parse_pct(raw)
        elif key in _KEYS:
            name, value = _KEYS[key], _parse_duration(key, raw)
        else:
            allowed = ", ".join([*sorted(_KEYS), "pct"])
            raise LoadTestError(f"--slo: unknown figure {key!r}; allowed: {allowed}")
        if name in values:
            raise LoadTestError(f"--slo: {key} given twice")
        values[name] = value
    if not any(k != "pct" for k in values):
        raise LoadTestError("--slo needs at least one of ttft, itl, tpot, e2e")
    return Slo(**values)


def _parse_duration(key: str, raw: str) -> float:
    match = _VALUE.match(raw)
    if not match:
        raise LoadTestError(f"--slo: {key}={raw.strip()!r} is not a number with a unit (e.g. {key}=250ms)")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        raise LoadTestError(
            f"--slo: {key}={raw.strip()} needs a unit: us, ms, s or min (e.g. {key}={raw.strip()}ms)"
        )
    if unit not in _UNITS_S:
        raise LoadTestError(f"--slo: unknown unit {unit!r} in {key}={raw.strip()}; use us, ms, s or min")
    if number <= 0:
        raise LoadTestError(f"--slo: {key} must be > 0")
    return number * _UNITS_S[unit]


def _parse_pct(raw: str) -> float:
    text = raw.strip().lower().removeprefix("p")
    try:
        value = float(text)
    except ValueError:
        raise LoadTestError(f"--slo: pct={raw.strip()!r} is not a number (e.g. pct=90)") from None
    if not 0 < value <= 100:
        raise LoadTestError(f"--slo: pct must be in (0, 100], got {value:g}")
    return value


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
