"""`POST /generate`: the gateway's own generation route (docs/contracts.md section 2), served on the raw
ASGI interface (service/api/asgi.py says why)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from service.api.asgi import parse, send_empty, send_json
from service.api.deps import Gateway
from service.api.streaming import collect_text, stream_events
from service.dispatch import Generation
from service.schemas import GenerateRequest


async def generate(gateway: Gateway, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
    body = parse(GenerateRequest, scope, raw)
    dispatcher = gateway.dispatcher
    target = dispatcher.replica(body.replica) if body.replica else dispatcher.variant(body.variant)
    options = body.options(body.temperature, gateway.config.limits.default_max_tokens)
    generation = await dispatcher.open(body.generation_input(), options, target)
    who = {"replica": generation.replica, "variant": generation.variant}
    if body.stream:
        await stream_events(
            generation, lambda text: {"text": text, **who}, lambda: [_final(generation)], receive, send
        )
        return
    text = await collect_text(generation, receive)
    if text is None:
        await send_empty(send, 499)
        return
    await send_json(send, 200, {"id": generation.id, "text": text, **who, **_outcome(generation)})


def _outcome(generation: Generation) -> dict[str, Any]:
    s = generation.summary
    return {
        "finish_reason": s.finish_reason,
        "usage": {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens},
        "timings": {"ttft_s": s.ttft_s, "total_s": s.total_s},
    }


def _final(generation: Generation) -> dict[str, Any]:
    return {"text": "", "replica": generation.replica, "variant": generation.variant, **_outcome(generation)}
