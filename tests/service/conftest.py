"""Real engines for the gateway tests, started once per session.

* `tiny_sparse_dir`: the tiny Llama with every decoder-layer linear pruned 2:4 by magnitude in plain torch,
  plus a hand-written prune_report.json following docs/contracts.md section 1.
* `vllm_server`: a real `python -m vllm.entrypoints.openai.api_server` on loopback serving the tiny Llama.
* `live_gateway`: one gateway over real HTTP (uvicorn in a thread, free port) with three working replicas:
  dense-a (in-process vLLM), dense-b (remote, the server above), sparse-a (in-process vLLM, the 2:4 copy),
  and ghost-a whose checkpoint does not exist. Three engines in all: the most this shared 2-core machine
  should hold at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

API_KEY = "test-key-0123456789"
CONTEXT = 1024
WEIGHTS = {"dense": 3.0, "sparse-2:4": 1.0}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def prune_2of4_(weight):
    """Zero the 2 smallest-magnitude weights of every 4 consecutive inputs (rows = outputs, cols = inputs)."""
    import torch

    out_features, in_features = weight.shape
    groups = weight.reshape(out_features, in_features // 4, 4)
    drop = groups.abs().topk(2, dim=-1, largest=False).indices
    groups.scatter_(-1, drop, torch.zeros_like(drop, dtype=weight.dtype))
    return weight


@pytest.fixture(scope="session")
def tiny_sparse_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("tiny-llama-2of4")
    for item in tiny_llama_dir.iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, out / item.name)
    tensors = load_file(tiny_llama_dir / "model.safetensors")
    pruned = []
    for name, tensor in tensors.items():
        if name.startswith("model.layers.") and name.endswith(".weight") and name.split(".")[-2] in LINEARS:
            prune_2of4_(tensor)
            pruned.append(
                {
                    "name": name.removesuffix(".weight"),
                    "shape": list(tensor.shape),
                    "sparsity": 0.5,
                    "nm_valid": True,
                }
            )
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = {
        "schema_version": 1,
        "variant": "sparse-2:4",
        "method": "magnitude",
        "pattern": "2:4",
        "sparsity": 0.5,
        "quantization": None,
        "model": {"source": str(tiny_llama_dir), "architecture": "LlamaForCausalLM"},
        "calibration": None,
        "layers": pruned,
        "nm_check": {"pattern": "2:4", "valid": True, "groups": 0, "violations": 0},
        "perplexity": {"dense": 50000.0, "pruned": 51000.0, "text": "none", "seqlen": 0, "windows": 0},
        "command": "tests/service/conftest.py (plain torch)",
        "created_at": "2026-11-23T00:00:00Z",
    }
    (out / "prune_report.json").write_text(json.dumps(report, indent=2))
    return out


def wait_until(predicate, timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    return False


@dataclass
class VllmServer:
    url: str
    process: subprocess.Popen

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def vllm_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_llama_dir),
        "--served-model-name",
        "tiny-dense",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        str(CONTEXT),
        "--kv-cache-memory-bytes",
        str(256 * 2**20),
        "--max-num-seqs",
        "32",
        "--disable-log-stats",
    ]
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_LOGGING_LEVEL": "WARNING"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = VllmServer(f"http://127.0.0.1:{port}", process)
    try:
        yield server
    finally:
        server.thaw()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class LiveGateway:
    """A gateway app served by uvicorn on a free loopback port from a background thread."""

    def __init__(self, config) -> None:
        import uvicorn

        from service.main import create_app

        self.app = create_app(config)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=10,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="live-gateway", daemon=True)

    def start(self, timeout_s: float = 300) -> LiveGateway:
        self.thread.start()
        if not wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout_s):
            raise RuntimeError("gateway did not start in time")
        if not self.server.started:
            raise RuntimeError("gateway failed to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)

    @property
    def fleet(self):
        return self.app.state.gateway.fleet


@pytest.fixture(scope="session")
def live_gateway(
    tiny_llama_dir: Path, tiny_sparse_dir: Path, vllm_server: VllmServer
) -> Iterator[LiveGateway]:
    from service.settings import build_fleet

    engine = {"max_model_len": CONTEXT, "kv_cache_gib": 0.25, "max_num_seqs": 32}
    config = build_fleet(
        {
            "replicas": [
                {"name": "dense-a", "model": str(tiny_llama_dir), "engine": engine},
                {
                    "name": "dense-b",
                    "kind": "remote",
                    "url": vllm_server.url,
                    "model": str(tiny_llama_dir),
                    "read_timeout_s": 3.0,
                    "connect_timeout_s": 2.0,
                },
                {"name": "sparse-a", "model": str(tiny_sparse_dir), "engine": engine},
                # A replica whose engine cannot start: reported, while the others serve.
                {"name": "ghost-a", "variant": "ghost", "model": str(tiny_sparse_dir.parent / "missing")},
            ],
            "routing": {"policy": "weighted", "weights": WEIGHTS},
            "health": {"probe_interval_s": 0.5, "probe_timeout_s": 1.0},
            "limits": {
                "max_concurrency": 32,
                "max_queue": 64,
                "request_timeout_s": 120,
                "max_body_bytes": 65536,
            },
            "auth": {"api_keys": [API_KEY]},
        }
    )
    gateway = LiveGateway(config).start()
    try:
        # The remote server loads while the in-process engines do; it is re-admitted once it answers.
        working = [r for r in gateway.fleet.replicas if r.name != "ghost-a"]
        if not wait_until(lambda: all(r.healthy for r in working), 300):
            states = {r.name: (str(r.state), r.last_error) for r in gateway.fleet.replicas}
            raise RuntimeError(f"replicas not ready: {states}")
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture()
def client(live_gateway: LiveGateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_gateway.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
    ) as c:
        yield c
