"""The catalogue of recorded series: one place that names every recording rule and its PromQL.

Both the Prometheus recording rules and the Grafana dashboards are generated from this list, so a panel can
only refer to a series that a rule records. The raw metric names are those of docs/contracts.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RATE_WINDOW = "1m"
# The capacity estimate is the highest per-replica throughput seen over this window: long enough to remember
# the last load test, short enough to forget a replaced GPU type by the next day.
PEAK_WINDOW = "1d"
BASELINE = "sparsefleet:config_baseline_variant"
TARGET_TOKENS = "sparsefleet:config_target_output_tokens_per_second"
GPU_HOURLY_USD = "sparsefleet:config_gpu_hourly_usd"
GPUS_PER_REPLICA = "sparsefleet:config_gpus_per_replica"
HOURS_PER_MONTH = "sparsefleet:config_hours_per_month"

Compare = Literal["ratio", "delta"]


@dataclass(frozen=True)
class Recorded:
    """One recording rule; `compare` adds a companion rule against the baseline variant."""

    name: str
    expr: str
    help: str
    compare: Compare | None = None

    @property
    def compared_name(self) -> str:
        if self.compare is None:
            raise ValueError(f"{self.name} has no baseline comparison")
        level, rest = self.name.split(":", 1)
        return f"{level}_{self.compare}:{rest}"


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Recorded, ...]


def baseline_value(name: str) -> str:
    """The baseline variant's value of a per-variant series, as one label-less element (empty if absent)."""
    return f"sum({name} * on (variant) group_left () {BASELINE})"


def compared(rule: Recorded) -> Recorded:
    """The companion rule: variant value ÷ baseline value (ratio), or variant − baseline (delta)."""
    op = "/" if rule.compare == "ratio" else "-"
    what = "divided by" if rule.compare == "ratio" else "minus"
    return Recorded(
        name=rule.compared_name,
        expr=f"{rule.name} {op} on () group_left () {baseline_value(rule.name)}",
        help=f"{rule.help}, {what} the baseline variant's",
    )


def _quantile(metric: str, q: float) -> str:
    return f"histogram_quantile({q}, sum by (variant, le) (rate({metric}_bucket[{RATE_WINDOW}])))"


def _rate(metric: str, by: str = "variant", selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[{RATE_WINDOW}]))"


LATENCIES = {
    "sparsefleet_time_to_first_token_seconds": "time to first token",
    "sparsefleet_inter_token_latency_seconds": "inter-token latency",
    "sparsefleet_time_per_output_token_seconds": "time per output token",
    "sparsefleet_e2e_request_latency_seconds": "end-to-end request latency",
}
QUANTILES = {"p50": 0.5, "p95": 0.95}


def latency_name(metric: str, pct: str) -> str:
    return f"variant:{metric}:{pct}_{RATE_WINDOW}"


_REQUESTS = "sparsefleet_requests_total"
_ERRORS = '{outcome=~"error|timeout"}'


def _outcome_ratio(selector: str) -> str:
    # `or 0 * total` keeps a 0 for variants that never saw this outcome (whose counter may not exist yet).
    return f"({_rate(_REQUESTS, selector=selector)} or 0 * {_rate(_REQUESTS)}) / {_rate(_REQUESTS)}"


def _latency_rules() -> list[Recorded]:
    return [
        Recorded(latency_name(metric, pct), _quantile(metric, q), f"{label} {pct} per variant", "ratio")
        for metric, label in LATENCIES.items()
        for pct, q in QUANTILES.items()
    ]


OUTPUT_TOKENS_RATE = f"variant:sparsefleet_generation_tokens:rate{RATE_WINDOW}"
PROMPT_TOKENS_RATE = f"variant:sparsefleet_prompt_tokens:rate{RATE_WINDOW}"
REPLICA_TOKENS_RATE = f"replica:sparsefleet_generation_tokens:rate{RATE_WINDOW}"
PER_REPLICA_TOKENS_RATE = f"variant:sparsefleet_generation_tokens_per_replica:rate{RATE_WINDOW}"
REQUEST_RATE = f"variant:sparsefleet_requests:rate{RATE_WINDOW}"
ERROR_RATIO = f"variant:sparsefleet_requests_errors:ratio_rate{RATE_WINDOW}"
REJECTED_RATIO = f"variant:sparsefleet_requests_rejected:ratio_rate{RATE_WINDOW}"
IN_FLIGHT = "variant:sparsefleet_requests_in_flight:sum"
QUEUED = "variant:sparsefleet_requests_queued:sum"
REPLICAS_UP = "variant:sparsefleet_replica_up:sum"
QUEUE_UTILIZATION = "replica:sparsefleet_queue_utilization:ratio"

CAPACITY = f"variant:sparsefleet_replica_output_tokens_per_second:peak{PEAK_WINDOW}"
REPLICAS_NEEDED = "variant:sparsefleet_fleet_replicas_needed:target"
GPUS_NEEDED = "variant:sparsefleet_fleet_gpus_needed:target"
MONTHLY_COST = "variant:sparsefleet_fleet_monthly_cost_usd:target"
COST_PER_MTOK = f"variant:sparsefleet_cost_per_million_output_tokens_usd:peak{PEAK_WINDOW}"
SAVING = "variant:sparsefleet_fleet_monthly_cost_saving:ratio_to_baseline"


def _traffic_rules() -> list[Recorded]:
    return [
        Recorded(
            OUTPUT_TOKENS_RATE,
            _rate("sparsefleet_generation_tokens_total"),
            "output tokens per second per variant",
            "ratio",
        ),
        Recorded(
            PROMPT_TOKENS_RATE,
            _rate("sparsefleet_prompt_tokens_total"),
            "prompt tokens per second per variant",
        ),
        Recorded(
            REPLICA_TOKENS_RATE,
            _rate("sparsefleet_generation_tokens_total", by="variant, replica"),
            "output tokens per second per replica",
        ),
        Recorded(
            PER_REPLICA_TOKENS_RATE,
            f"avg by (variant) ({REPLICA_TOKENS_RATE})",
            "output tokens per second of an average replica of each variant",
            "ratio",
        ),
        Recorded(REQUEST_RATE, _rate(_REQUESTS), "finished requests per second per variant", "ratio"),
        Recorded(
            ERROR_RATIO,
            _outcome_ratio(_ERRORS),
            "share of finished requests that failed (outcome error or timeout)",
            "delta",
        ),
        Recorded(
            REJECTED_RATIO,
            _outcome_ratio('{outcome="rejected"}'),
            "share of finished requests rejected with 429 (queue full)",
            "delta",
        ),
        Recorded(IN_FLIGHT, "sum by (variant) (sparsefleet_requests_in_flight)", "requests being generated"),
        Recorded(QUEUED, "sum by (variant) (sparsefleet_requests_queued)", "requests waiting for a slot"),
        Recorded(REPLICAS_UP, "sum by (variant) (sparsefleet_replica_up)", "ready replicas per variant"),
        Recorded(
            QUEUE_UTILIZATION,
            "max by (variant, replica) (sparsefleet_requests_queued)"
            " / max by (variant, replica) (sparsefleet_queue_capacity > 0)",
            "queued requests as a share of the queue capacity, per replica",
        ),
    ]


def _fleet_rules() -> list[Recorded]:
    per_replica_hourly = f"({GPUS_PER_REPLICA} * {GPU_HOURLY_USD})"
    return [
        Recorded(
            CAPACITY,
            f"avg by (variant) (max_over_time({REPLICA_TOKENS_RATE}[{PEAK_WINDOW}]) > 0)",
            f"capacity estimate: peak output tokens/s of one replica over {PEAK_WINDOW} (drive the fleet "
            "to saturation with `loadtest` for this to mean capacity)",
            "ratio",
        ),
        Recorded(
            REPLICAS_NEEDED,
            f"ceil({TARGET_TOKENS} / on () group_right () {CAPACITY})",
            "replicas needed to serve the configured target load",
            "ratio",
        ),
        Recorded(
            GPUS_NEEDED,
            f"{REPLICAS_NEEDED} * on () group_left () {GPUS_PER_REPLICA}",
            "GPUs needed to serve the configured target load",
        ),
        Recorded(
            MONTHLY_COST,
            f"{GPUS_NEEDED} * on () group_left () ({GPU_HOURLY_USD} * {HOURS_PER_MONTH})",
            "monthly cost of the fleet that serves the configured target load, USD",
            "ratio",
        ),
        Recorded(
            COST_PER_MTOK,
            f"1e6 / 3600 * {per_replica_hourly} / on () group_right () {CAPACITY}",
            "cost of a million output tokens on a fully used replica, USD",
            "ratio",
        ),
        Recorded(
            SAVING,
            f"1 - ({MONTHLY_COST} / on () group_left () {baseline_value(MONTHLY_COST)})",
            "monthly saving against the baseline variant at the target load (0.25 = 25 % cheaper)",
        ),
    ]


def with_comparisons(rules: list[Recorded]) -> tuple[Recorded, ...]:
    """Each rule, followed by its baseline comparison where it has one (rules in a group run in order)."""
    out: list[Recorded] = []
    for rule in rules:
        out.append(rule)
        if rule.compare is not None:
            out.append(compared(rule))
    return tuple(out)


GROUPS: tuple[Group, ...] = (
    Group("sparsefleet.variant", with_comparisons(_latency_rules() + _traffic_rules())),
    Group("sparsefleet.fleet", with_comparisons(_fleet_rules())),
)


def all_recorded() -> list[Recorded]:
    return [rule for group in GROUPS for rule in group.rules]
