"""A scripted engine for fast unit tests of routing, admission and failover. Never the only test of a
feature: tests/service/test_gateway_vllm.py runs the same paths against real vLLM engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from service.engines.base import Delta, EngineError, GenerationInput, PreparedRequest, SamplingOptions
from service.errors import InvalidRequest


class FakeEngine:
    kind = "fake"

    def __init__(self, *, token_delay_s: float = 0.0, fail_start: bool = False, context: int = 64) -> None:
        self.token_delay_s = token_delay_s
        self.fail_start = fail_start
        self.context = context
        self.healthy = True
        self.fail_generate = False
        self.dead = False
        self.started = 0
        self.stopped = 0
        self.served = 0
        self.aborted: list[str] = []
        self.running: set[str] = set()

    async def start(self) -> None:
        if self.fail_start:
            raise EngineError("weights not found")
        self.started += 1
        self.dead = False
        self.healthy = True

    async def stop(self) -> None:
        self.stopped += 1

    async def check_health(self) -> None:
        if not self.healthy:
            raise EngineError("fake engine unhealthy")

    @property
    def max_model_len(self) -> int | None:
        return self.context

    @property
    def needs_restart(self) -> bool:
        return self.dead

    def engine_requests(self) -> int | None:
        return len(self.running)

    async def prepare(self, request: GenerationInput, options: SamplingOptions) -> PreparedRequest:
        words = (request.prompt or " ".join(m["content"] for m in request.messages or ())).split()
        if len(words) + options.max_tokens > self.context:
            raise InvalidRequest("too long for the fake context", param="max_tokens")
        return PreparedRequest(request, options, len(words))

    async def generate(self, prepared: PreparedRequest, request_id: str) -> AsyncIterator[Delta]:
        if self.fail_generate:
            raise EngineError("fake engine failed")
        self.running.add(request_id)
        finished = False
        try:
            n = prepared.options.max_tokens
            for i in range(n):
                await asyncio.sleep(self.token_delay_s)
                last = i == n - 1
                yield Delta(f"t{i} ", 1, "length" if last else None, prepared.prompt_tokens)
            finished = True
            self.served += 1
        finally:
            self.running.discard(request_id)
            if not finished:
                self.aborted.append(request_id)
