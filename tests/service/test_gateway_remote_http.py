"""The remote engine's own HTTP/1.1 client and the raw-ASGI generation routes, against a scripted upstream on
a real loopback socket: stream chunks split anywhere, connection reuse, a server closing idle connections,
aborts, timeouts, errors. The same engine runs against a real `vllm serve` in test_gateway_vllm.py."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import pytest

from service.engines.base import EngineError, GenerationInput, SamplingOptions
from service.engines.remote import RemoteEngine
from service.errors import InvalidRequest
from service.main import create_app
from service.settings import build_fleet

pytestmark = pytest.mark.asyncio


def _event(payload: dict | str) -> bytes:
    return b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n\n"


def completion_events(texts: list[str], prompt_tokens: int = 2) -> list[bytes]:
    """What vLLM streams with continuous usage stats: usage on every chunk, a usage-only chunk, [DONE]."""
    events = []
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": i + 1}
        choice = {"index": 0, "text": text, "finish_reason": "length" if last else None}
        events.append(_event({"id": "cmpl-1", "choices": [choice], "usage": usage}))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(texts)}
    events.append(_event({"id": "cmpl-1", "choices": [], "usage": usage}))
    events.append(_event("[DONE]"))
    return events


class Upstream:
    """A scripted OpenAI-style server. `body_writes` are sent as separate chunked-encoding chunks, each split
    into `split`-byte TCP writes, so that events arrive cut at arbitrary places."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, bytes]] = []
        self.status = 200
        self.body_writes: list[bytes] = completion_events(["a", "b", "c"])
        self.split = 7
        self.stall_after: int | None = None  # stop sending after this many writes (and wait)
        self.close_idle = False  # close the connection after each response (a keep-alive timeout)
        self.drop_reused = (
            False  # close a reused connection on its next request, unanswered (the race in which
        )
        # a keep-alive timeout closes it just as a request goes out)
        self.aborted = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                path = lines[0].split()[1]
                self.requests.append((path, body))
                if self.drop_reused and served:
                    return
                served += 1
                if not await self._respond(path, reader, writer):
                    return
                if self.close_idle:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _respond(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if path == "/v1/models":
            body = json.dumps({"data": [{"id": "m", "max_model_len": 64}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if path == "/health":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return True
        if self.status != 200:
            body = json.dumps({"error": {"message": "prompt too long", "param": "prompt"}}).encode()
            writer.write(b"HTTP/1.1 %d Bad\r\nContent-Length: %d\r\n\r\n%s" % (self.status, len(body), body))
            await writer.drain()
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for n, event in enumerate(self.body_writes):
            if self.stall_after is not None and n >= self.stall_after:
                await reader.read()  # returns once the client hangs up
                self.aborted.set()
                return False
            data = b"%x\r\n%s\r\n" % (len(event), event)
            for i in range(0, len(data), self.split):
                writer.write(data[i : i + self.split])
                try:
                    await writer.drain()
                except ConnectionError:
                    self.aborted.set()  # the client hung up before the end of the response
                    return False
                await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def started(upstream: Upstream, **config) -> RemoteEngine:
    cfg = build_fleet(
        {"replicas": [{"name": "r0", "variant": "dense", "kind": "remote", "url": upstream.url, **config}]}
    ).replicas[0]
    engine = RemoteEngine(cfg)
    await engine.start()
    await engine.check_health()
    return engine


async def run(engine: RemoteEngine, max_tokens: int = 3) -> list:
    prepared = await engine.prepare(GenerationInput(prompt="hi"), SamplingOptions(max_tokens=max_tokens))
    return [delta async for delta in engine.generate(prepared, "req-1")]


async def test_events_split_anywhere_give_every_token_and_the_counts():
    async with Upstream() as upstream:
        upstream.split = 3
        engine = await started(upstream)
        deltas = await run(engine)
        await engine.stop()
    assert [d.text for d in deltas] == ["a", "b", "c"]
    assert [d.tokens for d in deltas] == [1, 1, 1]
    assert deltas[-1].finish_reason == "length" and deltas[-1].prompt_tokens == 2
    sent = json.loads(upstream.requests[-1][1])
    assert sent["stream"] and sent["stream_options"]["continuous_usage_stats"] and sent["model"] == "m"


async def test_connections_are_reused_and_a_closed_idle_one_is_replaced():
    async with Upstream() as upstream:
        engine = await started(upstream)
        for _ in range(3):
            assert len(await run(engine)) == 3
        assert upstream.connections == 1  # models, health and three streams over one connection
        upstream.drop_reused = True
        assert len(await run(engine)) == 3  # retried on a fresh connection
        assert upstream.connections == 2
        upstream.drop_reused = False
        upstream.close_idle = True  # the server now drops every connection after its response
        for _ in range(3):
            assert len(await run(engine)) == 3
            await asyncio.sleep(0.01)
        await engine.stop()
    assert upstream.connections == 4


async def test_closing_a_stream_early_closes_its_connection_so_the_server_aborts():
    async with Upstream() as upstream:
        upstream.stall_after = 2
        engine = await started(upstream)
        prepared = await engine.prepare(GenerationInput(prompt="hi"), SamplingOptions(max_tokens=3))
        stream = engine.generate(prepared, "req-1")
        assert (await anext(stream)).text == "a"
        await stream.aclose()
        await asyncio.wait_for(upstream.aborted.wait(), 5)
        upstream.stall_after = None
        assert len(await run(engine)) == 3  # a fresh connection serves the next request
        await engine.stop()


async def test_refused_input_timeouts_and_garbage_become_engine_errors():
    async with Upstream() as upstream:
        engine = await started(upstream, read_timeout_s=0.3)
        upstream.status = 400
        with pytest.raises(InvalidRequest, match="prompt too long"):
            await run(engine)
        upstream.status = 200
        upstream.stall_after = 1
        with pytest.raises(EngineError, match="no data for 0.3 s"):
            await run(engine)
        upstream.stall_after = None
        upstream.body_writes = [_event("{not json")]
        with pytest.raises(EngineError, match="unreadable stream chunk"):
            await run(engine)
        await engine.stop()
    async with Upstream() as gone:
        url = gone.url
    engine = RemoteEngine(
        build_fleet({"replicas": [{"name": "r", "kind": "remote", "url": url}]}).replicas[0]
    )
    await engine.start()
    with pytest.raises(EngineError, match="did not list its models"):
        await engine.check_health()


@asynccontextmanager
async def gateway(upstream: Upstream, **sections):
    config = build_fleet(
        {"replicas": [{"name": "r0", "variant": "dense", "kind": "remote", "url": upstream.url}], **sections}
    )
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=10) as client:
            yield client


async def test_streamed_completion_through_the_gateway_ends_with_usage_and_done():
    async with Upstream() as upstream, gateway(upstream) as client:
        body = {"model": "dense", "prompt": "hi", "max_tokens": 3, "stream": True}
        body["stream_options"] = {"include_usage": True}
        reply = await client.post("/v1/completions", json=body)
        metrics = (await client.get("/metrics")).text
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in reply.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "abc"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert all(c["replica"] == "r0" and c["variant"] == "dense" for c in chunks)
    assert 'sparsefleet_generation_tokens_total{replica="r0",variant="dense"} 3.0' in metrics
    assert 'sparsefleet_requests_total{outcome="success",replica="r0",variant="dense"} 1.0' in metrics


@pytest.mark.parametrize(
    ("content", "headers", "param"),
    [
        (b'{"prompt": "x"', {"content-type": "application/json"}, "body"),
        (b'{"prompt": "x"}', {}, "body"),
        (b'{"prompt": "x"}', {"content-type": "text/plain"}, "body"),
        (b"", {"content-type": "application/json"}, "body"),
        (b"[1, 2]", {"content-type": "application/json"}, "body"),
        (b'{"prompt": "x", "max_tokens": "many"}', {"content-type": "application/vnd.x+json"}, "max_tokens"),
        (b'{"prompt": ["a", "b"]}', {"content-type": "application/json; charset=utf-8"}, "prompt"),
    ],
)
async def test_raw_body_problems_are_400_naming_the_field(content, headers, param):
    async with Upstream() as upstream, gateway(upstream) as client:
        reply = await client.post("/v1/completions", content=content, headers=headers)
    assert reply.status_code == 400, reply.text
    assert (
        reply.json()["error"]["param"] == param and reply.json()["error"]["type"] == "invalid_request_error"
    )


async def test_generation_routes_keep_method_checks_body_limit_and_key_order():
    async with Upstream() as upstream, gateway(upstream, auth={"api_keys": ["k"]}) as client:
        assert (await client.get("/v1/completions")).status_code == 405
        big = await client.post("/generate", json={"prompt": "x" * 2_000_000})
        assert big.status_code == 413  # the size limit comes before the key check
        anonymous = await client.post("/v1/chat/completions", json={"messages": []})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        keyed = await client.post(
            "/generate", json={"prompt": "hi", "max_tokens": 3}, headers={"Authorization": "Bearer k"}
        )
    assert keyed.status_code == 200 and keyed.json()["text"] == "abc"
