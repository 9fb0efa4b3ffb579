"""Server processes for the end-to-end tests (a gateway, `vllm serve`): start one in its own process group
on a free port, wait until it answers, stop it with its children."""

from __future__ import annotations

import pytest

from tests.ports import free_port


def wait_for_http(url: str, process, log_path, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the server's last log lines if it dies or takes too long."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            pytest.fail(f"server exited with {process.returncode} before answering {url}:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f}s (log: {log_path})")


def stop_group(process) -> None:
    import os
    import signal
    import subprocess

    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Server:
    """A server process in its own process group, started at once; `url()` waits until it answers."""

    def __init__(self, command: list[str], log_path, probe: str) -> None:
        import os
        import subprocess

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.probe, self.log_path = probe, log_path
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def url(self, timeout_s: float = 400) -> str:
        wait_for_http(f"{self.base}{self.probe}", self.process, self.log_path, timeout_s)
        return self.base

    def stop(self) -> None:
        stop_group(self.process)


def wait_until_settled(url: str, timeout_s: float = 300) -> None:
    """/ready answers 200 as soon as one replica is up; wait for the other to leave `starting` too."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = httpx.get(f"{url}/ready", timeout=5).json()["replicas"]
        if all(state == "ready" for state in states.values()):
            return
        if any(state == "failed" for state in states.values()):
            pytest.fail(f"a gateway replica failed to start: {states}")
        time.sleep(1.0)
    pytest.fail(f"gateway replicas not ready within {timeout_s:.0f}s")
