"""The generated Grafana dashboards are well-formed, provisioned from files, and query only series that exist:
the recorded series of the rule files or the raw metrics of docs/contracts.md section 3."""

from __future__ import annotations

import functools
import json
import re

import yaml
from staging_tools import DASHBOARDS, DEPLOY, REPO_ROOT, dashboard_queries, rules

CONTRACT = (REPO_ROOT / "docs" / "contracts.md").read_text()
CONTRACT_METRICS = set(re.findall(r"^\| `(sparsefleet_[a-z0-9_]+)` \|", CONTRACT, re.M))
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _series_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    return {name for name in METRIC_NAME.findall(without_strings) if "sparsefleet" in name}


@functools.cache
def _recorded() -> frozenset[str]:
    return frozenset(rule["record"] for rule in rules("record"))


def _known(name: str) -> bool:
    recorded = _recorded()
    raw = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in recorded or name in CONTRACT_METRICS or raw in CONTRACT_METRICS


def test_contract_metrics_were_found() -> None:
    assert len(CONTRACT_METRICS) >= 12 and "sparsefleet_variant_info" in CONTRACT_METRICS


def test_both_dashboards_exist_with_the_promised_panels() -> None:
    titles = {
        json.loads(p.read_text())["uid"]: {panel["title"] for panel in json.loads(p.read_text())["panels"]}
        for p in DASHBOARDS
    }
    assert {
        "Time to first token",
        "Inter-token latency",
        "End-to-end latency",
        "TTFT ratio",
        "In flight",
        "Queued",
        "Error and rejection ratio",
        "Output tokens/s",
    } <= titles["sparsefleet-serving"]
    assert {
        "Replicas needed",
        "GPUs needed",
        "Monthly cost",
        "Cost per million output tokens",
        "Saving vs baseline",
        "Cost and quality per variant",
    } <= titles["sparsefleet-cost"]


def test_every_panel_queries_known_series() -> None:
    queries = dashboard_queries()
    assert len(queries) > 30
    for query in queries:
        names = _series_names(query.expr)
        assert names, f"{query.dashboard}/{query.panel}: no sparsefleet series in {query.expr}"
        unknown = {name for name in names if not _known(name)}
        assert not unknown, f"{query.dashboard}/{query.panel} queries undefined series {unknown}"


def test_rules_only_use_contract_metrics_or_recorded_series() -> None:
    for rule in rules("record") + rules("alert"):
        unknown = {name for name in _series_names(rule["expr"]) if not _known(name)}
        assert not unknown, f"{rule.get('record') or rule.get('alert')} uses undefined series {unknown}"


def test_panels_have_unique_ids_refids_and_do_not_overlap() -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = board["panels"]
        assert len({p["id"] for p in panels}) == len(panels), path.name
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert len(set(refs)) == len(refs) and all(refs), f"{path.name}/{panel['title']}"
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{path.name}/{panel['title']}"
            mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
            assert not cells & mine, f"{path.name}/{panel['title']} overlaps another panel"
            cells |= mine


def test_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (
        source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    )
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sparsefleet.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = dict(
        v.rsplit(":", 2)[:2] if v.endswith(":ro") else v.split(":", 1)
        for v in compose["services"]["grafana"]["volumes"]
    )
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
