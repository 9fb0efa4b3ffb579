"""The two Grafana dashboards, built with grafana-foundation-sdk from the recorded-series catalogue.

Serving: latency percentiles and throughput per variant, side by side and as ratios to the baseline,
in-flight, queue and errors. Cost: fleet sizing at the configured target load, monthly cost, cost per million
tokens, saving against the baseline, next to each variant's quality (perplexity) from
`sparsefleet_variant_info`.
Panels query recorded series wherever one exists, so that they are cheap and mean what the alerts mean.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueGraphMode,
    BigValueTextMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef, DataTransformerConfig, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from codegen import series as s

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
VARIANT = '{variant=~"$variant"}'
INFO_LABELS = "variant, method, pattern, sparsity, quantization, perplexity, dense_perplexity"
REFRESH = "10s"


def _q(expr: str, legend: str = "{{variant}}") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend)


def _table_q(expr: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).instant().format(PromQueryFormat.TABLE).ref_id(ref)


def _sel(name: str) -> str:
    return f"{name}{VARIANT}"


def _ts(
    title: str, unit: str, *targets: prometheus.Dataquery, desc: str = "", w: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(desc)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(w)
        .height(8)
        .line_width(1)
        .fill_opacity(10)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _last() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _stat(title: str, unit: str, expr: str, legend: str = "{{variant}}", desc: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(desc)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(6)
        .height(5)
        .graph_mode(BigValueGraphMode.AREA)
        .reduce_options(_last())
        .with_target(_q(expr, legend))
    )


def _bars(title: str, unit: str, expr: str, desc: str = "", decimals: float | None = None) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(desc)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(8)
        .height(7)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .orientation(VizOrientation.HORIZONTAL)
        .reduce_options(_last())
        .with_target(_q(expr).instant())
    )
    return panel.decimals(decimals) if decimals is not None else panel


def _percentiles(metric: str, title: str) -> timeseries.Panel:
    return _ts(
        title,
        "s",
        *(_q(_sel(s.latency_name(metric, pct)), f"{{{{variant}}}} {pct}") for pct in s.QUANTILES),
        desc=f"{s.LATENCIES[metric].capitalize()} per variant over {s.RATE_WINDOW} (gateway histogram).",
    )


def _ratio_name(name: str, compare: str = "ratio") -> str:
    level, rest = name.split(":", 1)
    return f"{level}_{compare}:{rest}"


def _latency_ratios(metric: str, title: str) -> timeseries.Panel:
    return _ts(
        title,
        "none",
        *(
            _q(_sel(_ratio_name(s.latency_name(metric, pct))), f"{{{{variant}}}} {pct}")
            for pct in s.QUANTILES
        ),
        desc="Variant ÷ baseline variant (sparsefleet:config_baseline_variant). Below 1: faster.",
        w=8,
    )


def _variables(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    return builder.with_variable(
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ).with_variable(
        dashboard.QueryVariable("variant")
        .label("Variant")
        .datasource(DATASOURCE)
        .query("label_values(sparsefleet_variant_info, variant)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def _base(title: str, uid: str, description: str) -> dashboard.Dashboard:
    builder = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["sparsefleet"])
        .refresh(REFRESH)
        .time("now-30m", "now")
        .timezone("browser")
    )
    return _variables(builder)


def serving_dashboard() -> dashboard.Dashboard:
    b = _base(
        "sparsefleet — serving",
        "sparsefleet-serving",
        "Latency and throughput of each variant behind the sparsefleet gateway, side by side and as "
        "ratios to the baseline variant.",
    )
    b = (
        b.with_row(dashboard.Row("Overview"))
        .with_panel(_stat("Ready replicas", "none", _sel(s.REPLICAS_UP)))
        .with_panel(_stat("Requests/s", "reqps", _sel(s.REQUEST_RATE)))
        .with_panel(_stat("Output tokens/s", "none", _sel(s.OUTPUT_TOKENS_RATE)))
        .with_panel(
            _stat(
                "Error ratio",
                "percentunit",
                _sel(s.ERROR_RATIO),
                desc="Outcome error or timeout, over all finished requests.",
            )
        )
    )
    b = (
        b.with_row(dashboard.Row("Latency per variant"))
        .with_panel(_percentiles("sparsefleet_time_to_first_token_seconds", "Time to first token"))
        .with_panel(_percentiles("sparsefleet_inter_token_latency_seconds", "Inter-token latency"))
        .with_panel(_percentiles("sparsefleet_time_per_output_token_seconds", "Time per output token"))
        .with_panel(_percentiles("sparsefleet_e2e_request_latency_seconds", "End-to-end latency"))
    )
    b = (
        b.with_row(dashboard.Row("Variant ÷ baseline"))
        .with_panel(_latency_ratios("sparsefleet_time_to_first_token_seconds", "TTFT ratio"))
        .with_panel(_latency_ratios("sparsefleet_inter_token_latency_seconds", "Inter-token latency ratio"))
        .with_panel(_latency_ratios("sparsefleet_e2e_request_latency_seconds", "End-to-end latency ratio"))
        .with_panel(
            _ts(
                "Throughput ratio",
                "none",
                _q(_sel(_ratio_name(s.PER_REPLICA_TOKENS_RATE)), "{{variant}} tokens/s per replica"),
                _q(_sel(_ratio_name(s.REQUEST_RATE)), "{{variant}} requests/s"),
                desc="Variant ÷ baseline. Above 1: more output per replica than the baseline "
                "(meaningful when replicas are saturated).",
                w=12,
            )
        )
        .with_panel(
            _ts(
                "Error and rejection ratio − baseline",
                "percentunit",
                _q(_sel(_ratio_name(s.ERROR_RATIO, "delta")), "{{variant}} errors"),
                _q(_sel(_ratio_name(s.REJECTED_RATIO, "delta")), "{{variant}} rejected"),
                desc="Difference (not ratio) because error ratios are often 0.",
                w=12,
            )
        )
    )
    b = (
        b.with_row(dashboard.Row("Throughput"))
        .with_panel(
            _ts(
                "Output tokens/s",
                "none",
                _q(_sel(s.OUTPUT_TOKENS_RATE), "{{variant}} output"),
                _q(_sel(s.PROMPT_TOKENS_RATE), "{{variant}} prompt"),
                w=8,
            )
        )
        .with_panel(
            _ts(
                "Output tokens/s per replica",
                "none",
                _q(_sel(s.REPLICA_TOKENS_RATE), "{{replica}} ({{variant}})"),
                w=8,
            )
        )
        .with_panel(
            _ts(
                "Requests/s by outcome",
                "reqps",
                _q(
                    f"sum by (variant, outcome) (rate(sparsefleet_requests_total{VARIANT}[{s.RATE_WINDOW}]))",
                    "{{variant}} {{outcome}}",
                ),
                w=8,
            )
        )
    )
    b = (
        b.with_row(dashboard.Row("Load and errors"))
        .with_panel(_ts("In flight", "none", _q(_sel(s.IN_FLIGHT)), w=8))
        .with_panel(_ts("Queued", "none", _q(_sel(s.QUEUED)), w=8))
        .with_panel(
            _ts(
                "Queue utilization",
                "percentunit",
                _q(_sel(s.QUEUE_UTILIZATION), "{{replica}} ({{variant}})"),
                desc="Queued ÷ queue capacity per replica; at 100 % the gateway answers 429.",
                w=8,
            )
        )
        .with_panel(
            _ts(
                "Error and rejection ratio",
                "percentunit",
                _q(_sel(s.ERROR_RATIO), "{{variant}} errors"),
                _q(_sel(s.REJECTED_RATIO), "{{variant}} rejected"),
                w=12,
            )
        )
        .with_panel(
            _ts(
                "Replica up",
                "none",
                _q(f"sparsefleet_replica_up{VARIANT}", "{{replica}} ({{variant}})"),
                w=12,
            )
        )
    )
    return b


def _cost_table() -> table.Panel:
    columns = {
        "A": (s.CAPACITY, "capacity tokens/s per replica"),
        "B": (s.REPLICAS_NEEDED, "replicas needed"),
        "C": (s.GPUS_NEEDED, "GPUs needed"),
        "D": (s.MONTHLY_COST, "monthly cost USD"),
        "E": (s.COST_PER_MTOK, "USD per 1M output tokens"),
        "F": (s.SAVING, "saving vs baseline"),
    }
    panel = (
        table.Panel()
        .title("Cost and quality per variant")
        .datasource(DATASOURCE)
        .span(24)
        .height(8)
        .description(
            "One row per variant: fleet sizing at the target load next to the variant's perplexity "
            "from its prune_report.json (sparsefleet_variant_info)."
        )
    )
    for ref, (name, _) in columns.items():
        panel = panel.with_target(_table_q(_sel(name), ref))
    panel = panel.with_target(_table_q(f"max by ({INFO_LABELS}) (sparsefleet_variant_info{VARIANT})", "G"))
    renames = {f"Value #{ref}": label for ref, (_, label) in columns.items()}
    excluded = {"Time": True, "Time 1": True, "Value #G": True}
    return (
        panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            DataTransformerConfig(
                id_val="convertFieldType",
                options={
                    "conversions": [
                        {"targetField": "perplexity", "destinationType": "number"},
                        {"targetField": "dense_perplexity", "destinationType": "number"},
                    ]
                },
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="calculateField",
                options={
                    "mode": "binary",
                    "alias": "perplexity Δ vs dense",
                    "binary": {"left": "perplexity", "operator": "-", "right": "dense_perplexity"},
                    "replaceFields": False,
                },
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="organize", options={"excludeByName": excluded, "renameByName": renames}
            )
        )
    )


def cost_dashboard() -> dashboard.Dashboard:
    b = _base(
        "sparsefleet — cost",
        "sparsefleet-cost",
        "What each variant would cost at the target load (deploy/prometheus/rules/sparsefleet-config.yml), "
        "from the highest per-replica throughput measured in the last day.",
    )
    b = (
        b.with_row(dashboard.Row("Inputs (sparsefleet-config.yml)"))
        .with_panel(
            _stat(
                "Target load",
                "none",
                s.TARGET_TOKENS,
                "output tokens/s",
                desc="sparsefleet:config_target_output_tokens_per_second",
            )
        )
        .with_panel(
            _stat(
                "GPU price",
                "currencyUSD",
                s.GPU_HOURLY_USD,
                "USD per GPU-hour",
                desc="sparsefleet:config_gpu_hourly_usd",
            )
        )
        .with_panel(
            _stat(
                "GPUs per replica",
                "none",
                s.GPUS_PER_REPLICA,
                "GPUs",
                desc="sparsefleet:config_gpus_per_replica",
            )
        )
        .with_panel(
            _stat(
                "Baseline variant",
                "none",
                s.BASELINE,
                "{{variant}}",
                desc="sparsefleet:config_baseline_variant: savings and ratios compare with it.",
            )
            .text_mode(BigValueTextMode.NAME)
            .graph_mode(BigValueGraphMode.NONE)
        )
    )
    b = (
        b.with_row(dashboard.Row("Fleet at the target load"))
        .with_panel(_bars("Replicas needed", "none", _sel(s.REPLICAS_NEEDED), decimals=0))
        .with_panel(_bars("GPUs needed", "none", _sel(s.GPUS_NEEDED), decimals=0))
        .with_panel(_bars("Monthly cost", "currencyUSD", _sel(s.MONTHLY_COST), decimals=0))
        .with_panel(_bars("Cost per million output tokens", "currencyUSD", _sel(s.COST_PER_MTOK), decimals=3))
        .with_panel(
            _bars(
                "Saving vs baseline",
                "percentunit",
                _sel(s.SAVING),
                desc="1 − monthly cost ÷ the baseline's monthly cost. Negative: costs more.",
            )
        )
        .with_panel(
            _bars(
                "Capacity per replica",
                "none",
                _sel(s.CAPACITY),
                desc=f"Peak output tokens/s of one replica over {s.PEAK_WINDOW}.",
            )
        )
    )
    b = b.with_row(dashboard.Row("Cost and quality")).with_panel(_cost_table())
    b = (
        b.with_row(dashboard.Row("Over time"))
        .with_panel(
            _ts(
                "Capacity per replica ÷ baseline",
                "none",
                _q(_sel(_ratio_name(s.CAPACITY))),
                desc="Speed-up of a replica at its peak; 1.5 = serves 50 % more tokens/s.",
                w=8,
            )
        )
        .with_panel(_ts("Cost per million output tokens", "currencyUSD", _q(_sel(s.COST_PER_MTOK)), w=8))
        .with_panel(_ts("Monthly cost ÷ baseline", "none", _q(_sel(_ratio_name(s.MONTHLY_COST))), w=8))
    )
    return b


def _render(builder: dashboard.Dashboard) -> str:
    model = builder.build()
    # Grafana wants panel ids unique within a dashboard and refIds unique within a panel; the SDK leaves both
    # unset, and letting Grafana assign them would make the provisioned JSON differ from what it shows.
    for panel_id, panel in enumerate(model.panels or [], start=1):
        panel.id_val = panel_id
        for index, target in enumerate(getattr(panel, "targets", None) or []):
            target.ref_id = target.ref_id or chr(ord("A") + index)
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"


def render_serving_dashboard() -> str:
    return _render(serving_dashboard())


def render_cost_dashboard() -> str:
    return _render(cost_dashboard())
