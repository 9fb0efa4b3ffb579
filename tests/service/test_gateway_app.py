"""The gateway's own logic (admission, failover, health, metrics, errors) with scripted fake engines over the
ASGI interface: fast, and deterministic. The same behaviours run against real vLLM in test_gateway_vllm.py."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import httpx
import pytest
from gateway_fakes import FakeEngine

from service.main import create_app
from service.settings import build_fleet

pytestmark = pytest.mark.asyncio


def fleet(*names_variants, **sections):
    replicas = [{"name": n, "variant": v, "model": f"/nonexistent/{n}"} for n, v in names_variants]
    return build_fleet(
        {"replicas": replicas, "health": {"probe_interval_s": 0.05, "probe_timeout_s": 0.5}, **sections}
    )


@asynccontextmanager
async def serve(config, engines):
    app = create_app(config, engines=engines)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=10) as client:
            yield app, client


def gen(prompt="a b c", **kw):
    return {"prompt": prompt, "max_tokens": 3, **kw}


async def test_generate_names_replica_variant_tokens_and_timings():
    engine = FakeEngine()
    async with serve(fleet(("d0", "dense")), [engine]) as (_, client):
        body = (await client.post("/generate", json=gen())).json()
    assert body["text"] == "t0 t1 t2 " and body["replica"] == "d0" and body["variant"] == "dense"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}
    assert body["finish_reason"] == "length"
    assert 0 <= body["timings"]["ttft_s"] <= body["timings"]["total_s"]


async def test_full_queue_is_429_with_retry_after_and_counted_as_rejected():
    slow = FakeEngine(token_delay_s=0.2)
    config = fleet(("d0", "dense"), limits={"max_concurrency": 1, "max_queue": 1, "retry_after_s": 2})
    async with serve(config, [slow]) as (_, client):
        first = asyncio.create_task(client.post("/generate", json=gen()))
        second = asyncio.create_task(client.post("/generate", json=gen()))
        await asyncio.sleep(0.1)
        third = await client.post("/generate", json=gen())
        assert third.status_code == 429 and third.headers["retry-after"] == "2"
        assert third.json()["error"]["type"] == "rate_limit_error"
        assert (await first).status_code == 200 and (await second).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'sparsefleet_requests_total{outcome="rejected",replica="d0",variant="dense"} 1.0' in metrics
    assert 'sparsefleet_requests_total{outcome="success",replica="d0",variant="dense"} 2.0' in metrics


async def test_failing_replica_fails_over_is_marked_unhealthy_and_readmitted():
    bad, good = FakeEngine(), FakeEngine()
    async with serve(fleet(("d0", "dense"), ("d1", "dense")), [bad, good]) as (app, client):
        bad.fail_generate = True
        bad.healthy = False
        replies = [await client.post("/generate", json=gen(variant="dense")) for _ in range(4)]
        assert all(r.status_code == 200 and r.json()["replica"] == "d1" for r in replies)
        states = {r["name"]: r["state"] for r in (await client.get("/replicas")).json()}
        assert states["d0"] == "unhealthy"
        assert (await client.post("/generate", json=gen(replica="d0"))).status_code == 503
        bad.fail_generate = False
        bad.healthy = True
        for _ in range(50):
            if app.state.gateway.fleet.get("d0").healthy:
                break
            await asyncio.sleep(0.05)
        assert (await client.post("/generate", json=gen(replica="d0"))).json()["replica"] == "d0"


async def test_engine_that_fails_to_start_is_reported_and_the_rest_serve(caplog):
    caplog.set_level(logging.INFO)
    broken = FakeEngine(fail_start=True)
    async with serve(fleet(("d0", "dense"), ("s0", "sparse")), [FakeEngine(), broken]) as (_, client):
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["replicas"] == {"d0": "ready", "s0": "failed"}
        status = {r["name"]: r for r in (await client.get("/replicas")).json()}
        assert "weights not found" in status["s0"]["error"]
        assert (await client.post("/generate", json=gen())).status_code in (200, 503)
        assert (await client.post("/generate", json=gen(variant="dense"))).status_code == 200
        unavailable = await client.post("/generate", json=gen(variant="sparse"))
        assert unavailable.status_code == 503 and unavailable.json()["error"]["param"] == "variant"
    assert "weights not found" in caplog.text


async def test_ready_is_503_when_nothing_can_serve():
    async with serve(fleet(("d0", "dense")), [FakeEngine(fail_start=True)]) as (_, client):
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/health")).status_code == 200


async def test_dead_engine_is_restarted_by_the_prober():
    engine = FakeEngine()
    async with serve(fleet(("d0", "dense")), [engine]) as (app, client):
        engine.dead = True
        for _ in range(50):
            if engine.started == 2:
                break
            await asyncio.sleep(0.05)
        assert engine.started == 2 and engine.stopped == 1
        assert (await client.get("/replicas")).json()[0]["restarts"] == 1
        assert (await client.post("/generate", json=gen())).status_code == 200


async def test_timeout_is_504_and_aborts_the_engine_request():
    engine = FakeEngine(token_delay_s=0.5)
    async with serve(fleet(("d0", "dense"), limits={"request_timeout_s": 0.2}), [engine]) as (_, client):
        reply = await client.post("/generate", json=gen())
        assert reply.status_code == 504 and reply.json()["error"]["type"] == "timeout_error"
        metrics = (await client.get("/metrics")).text
    assert len(engine.aborted) == 1 and not engine.running
    assert 'sparsefleet_requests_total{outcome="timeout",replica="d0",variant="dense"} 1.0' in metrics


async def test_engines_stop_in_reverse_order():
    order = []

    class Recording(FakeEngine):
        def __init__(self, name):
            super().__init__()
            self.name = name

        async def stop(self):
            order.append(self.name)

    async with serve(
        fleet(("a", "dense"), ("b", "dense"), ("c", "sparse")),
        [Recording("a"), Recording("b"), Recording("c")],
    ):
        pass
    assert order == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "", "max_tokens": 3}, 400, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": -2}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
        ({"prompt": "x", "variant": "nope"}, 404, "variant"),
        ({"prompt": "x", "replica": "nope"}, 404, "replica"),
        ({"prompt": "x", "temperature": -1}, 400, "temperature"),
        ({"prompt": "x", "stop": [""]}, 400, "stop"),
        ({"prompt": "x", "bogus": 1}, 400, "bogus"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        ({}, 400, "body"),
    ],
)
async def test_bad_input_is_4xx_naming_the_field(body, status, param):
    async with serve(fleet(("d0", "dense")), [FakeEngine()]) as (_, client):
        reply = await client.post("/generate", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"]


async def test_malformed_json_and_oversize_body():
    async with serve(fleet(("d0", "dense"), limits={"max_body_bytes": 1000}), [FakeEngine()]) as (_, client):
        malformed = await client.post(
            "/generate", content=b'{"prompt": "x",', headers={"content-type": "application/json"}
        )
        big = await client.post("/generate", json={"prompt": "x" * 2000})
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "body"
    assert big.status_code == 413 and big.json()["error"]["param"] == "body"


async def test_api_keys_guard_generation_but_not_health_or_metrics(caplog):
    caplog.set_level(logging.DEBUG)
    config = fleet(("d0", "dense"), auth={"api_keys": ["good-key-123"]})
    async with serve(config, [FakeEngine()]) as (_, client):
        assert (await client.post("/generate", json=gen())).status_code == 401
        wrong = await client.post("/generate", json=gen(), headers={"Authorization": "Bearer bad-key-456"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        ok = await client.post("/generate", json=gen(), headers={"Authorization": "Bearer good-key-123"})
        assert ok.status_code == 200
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert "good-key-123" not in caplog.text and "bad-key-456" not in caplog.text


async def test_health_and_metrics_can_be_protected_too():
    config = fleet(("d0", "dense"), auth={"api_keys": ["k"], "protect_health": True, "protect_metrics": True})
    async with serve(config, [FakeEngine()]) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/ready")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer k"})).status_code == 200


async def test_unknown_weight_variant_is_a_config_error():
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match="routing.weights"):
        create_app(fleet(("d0", "dense"), routing={"weights": {"sparse": 1}}), engines=[FakeEngine()])


async def test_metrics_cover_every_contract_series():
    async with serve(fleet(("d0", "dense")), [FakeEngine()]) as (_, client):
        await client.post("/generate", json=gen())
        text = (await client.get("/metrics")).text
    for name in (
        "requests_total",
        "requests_in_flight",
        "requests_queued",
        "queue_capacity",
        "replica_up",
        "prompt_tokens_total",
        "generation_tokens_total",
        "time_to_first_token_seconds_bucket",
        "inter_token_latency_seconds_bucket",
        "time_per_output_token_seconds_bucket",
        "e2e_request_latency_seconds_bucket",
        "variant_info",
    ):
        assert f"sparsefleet_{name}{{" in text, name
    assert 'sparsefleet_generation_tokens_total{replica="d0",variant="dense"} 3.0' in text
    assert 'le="0.001"' in text and 'le="0.004"' in text
