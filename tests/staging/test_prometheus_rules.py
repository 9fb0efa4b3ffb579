"""Prometheus config and rules pass promtool's checks and rule unit tests; generated files are current."""

from __future__ import annotations

import subprocess
import sys

import yaml
from staging_tools import DEPLOY, require_tool

PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = require_tool("promtool", "Prometheus rule checks, apt prometheus")
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR, timeout=120)


def test_promtool_check_config() -> None:
    proc = _promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(RULE_FILES)} rule files found" in proc.stdout  # the glob picks up every rule file


def test_promtool_check_rules() -> None:
    proc = _promtool("check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_unit_tests() -> None:
    proc = _promtool("test", "rules", *map(str, sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rule_unit_tests_fail_on_a_broken_rule(tmp_path) -> None:
    """The unit tests are live: double the target load and the sizing expectations must fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for rule_file in RULE_FILES:
        text = rule_file.read_text().replace("expr: vector(2000)", "expr: vector(4000)")
        (tmp_path / "rules" / rule_file.name).write_text(text)
    for test_file in (PROMETHEUS_DIR / "tests").glob("*.yml"):
        (tmp_path / "tests" / test_file.name).write_text(test_file.read_text())
    proc = _promtool("test", "rules", *map(str, (tmp_path / "tests").glob("*.yml")))
    assert (
        proc.returncode != 0
        and "variant:sparsefleet_fleet_replicas_needed:target" in proc.stdout + proc.stderr
    )


def test_every_alert_named_in_the_issue_exists_and_is_unit_tested() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "rules" / "sparsefleet-alerts.yml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    }
    assert {
        "SparsefleetReplicaDown",
        "SparsefleetErrorRatioHigh",
        "SparsefleetQueueSaturated",
        "SparsefleetSparseSlowerThanDense",
    } <= alerts
    tests = [
        t for f in (PROMETHEUS_DIR / "tests").glob("*.yml") for t in yaml.safe_load(f.read_text())["tests"]
    ]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    assert alerts <= fired, f"alerts never shown firing in a unit test: {alerts - fired}"


def test_generated_files_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
