"""A real Prometheus (the Debian binary) for tests: the committed config and rule files, pointed at a loopback
target, with fast scrapes and rule evaluation, temporary storage, and a small HTTP API client."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from staging_tools import DEPLOY

from tests.ports import free_port

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
GATEWAY_JOB = "sparsefleet-gateway"


def scrape_config_for(gateway: str, own_address: str, interval: str) -> dict:
    """The committed prometheus.yml with its targets moved to loopback and its intervals shortened."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / pattern) for pattern in config["rule_files"]]
    targets = {GATEWAY_JOB: gateway, "prometheus": own_address}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@dataclass
class Prometheus:
    url: str
    client: httpx.Client

    def _get(self, path: str, **params: str) -> dict:
        body = self.client.get(f"{self.url}{path}", params=params).json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query; raises with Prometheus' message when the expression does not parse or evaluate."""
        data = self._get("/api/v1/query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def query_range(self, expr: str, seconds: int, step: str = "1s") -> list[dict]:
        end = time.time()
        return self._get(
            "/api/v1/query_range", query=expr, start=str(end - seconds), end=str(end), step=step
        )["result"]

    def rule_groups(self) -> list[dict]:
        return self._get("/api/v1/rules")["groups"]

    def label_values(self, label: str, match: str) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", **{"match[]": match})

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]

    def wait_until(self, expr: str, timeout_s: float, what: str) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} ({expr})")


@contextmanager
def running_prometheus(
    binary: str, gateway: str, workdir: Path, interval: str = "1s"
) -> Iterator[Prometheus]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(scrape_config_for(gateway, address, interval)))
    log = (workdir / "prometheus.log").open("w")
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(timeout=10)
    try:
        url = f"http://{address}"
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if client.get(f"{url}/-/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus not ready after 30 s")
            time.sleep(0.2)
        yield Prometheus(url, client)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
