"""What the live test demands of a Prometheus that scraped a loaded gateway: every dashboard query and every
recording rule parses and returns data, and every rule group evaluates without error."""

from __future__ import annotations

from prometheus_server import Prometheus
from staging_tools import dashboard_queries, rules


def _nonempty(prom: Prometheus, expr: str, label: str, range_s: int | None = None) -> str | None:
    try:
        result = prom.query_range(expr, range_s) if range_s else prom.query(expr)
    except AssertionError as exc:
        return f"{label}: does not parse/evaluate: {exc}"
    return None if result else f"{label}: returned no data ({expr})"


def query_problems(prom: Prometheus, window_s: int) -> list[str]:
    """One line per dashboard query or recording rule that fails or comes back empty."""
    problems = []
    for query in dashboard_queries():
        label = f"panel {query.dashboard}/{query.panel}/{query.ref}"
        problems.append(_nonempty(prom, query.promql(), label, None if query.instant else window_s))
    for rule in rules("record"):
        problems.append(_nonempty(prom, rule["record"], f"recorded series {rule['record']}"))
        problems.append(_nonempty(prom, rule["expr"], f"expr of rule {rule['record']}"))
    for rule in rules("alert"):  # alerts need not fire, but their expressions must evaluate
        try:
            prom.query(rule["expr"])
        except AssertionError as exc:
            problems.append(f"alert {rule['alert']}: {exc}")
    return [p for p in problems if p]


def rule_group_problems(prom: Prometheus) -> list[str]:
    expected = {rule["group"] for rule in rules("record") + rules("alert")}
    groups = {group["name"]: group for group in prom.rule_groups()}
    problems = [f"rule group {name} not loaded" for name in expected - set(groups)]
    for group in groups.values():
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                problems.append(f"rule {rule['name']} health {rule.get('health')}: {rule.get('lastError')}")
    return problems
