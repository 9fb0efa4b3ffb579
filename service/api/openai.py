"""OpenAI-compatible routes: `/v1/completions`, `/v1/chat/completions` (streaming too) and `/v1/models`.

`model` names a variant (routed by policy among its replicas) or a replica (pinned). Responses carry the
usual OpenAI fields plus `replica`, `variant` and `timings`, which OpenAI clients keep as extra attributes.
The two generation routes are served on the raw ASGI interface (service/api/asgi.py says why).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.types import Receive, Scope, Send

from service.api.asgi import parse, send_empty, send_json
from service.api.deps import Gateway, GatewayDep, require_key
from service.api.streaming import collect_text, stream_events
from service.dispatch import Generation
from service.schemas import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList

router = APIRouter(prefix="/v1", dependencies=[require_key("generate")])


async def completions(gateway: Gateway, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
    body = parse(CompletionRequest, scope, raw)
    await _serve(body, body.max_tokens, gateway, receive, send, chat=False)


async def chat_completions(gateway: Gateway, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
    body = parse(ChatCompletionRequest, scope, raw)
    await _serve(body, body.max_completion_tokens or body.max_tokens, gateway, receive, send, chat=True)


@router.get("/models", response_model=ModelList)
async def models(gateway: GatewayDep) -> ModelList:
    created = int(time.time())
    fleet = gateway.fleet
    cards = [
        ModelCard(
            id=variant,
            created=created,
            kind="variant",
            variant=variant,
            replicas=[r.name for r in replicas],
            max_model_len=_min_len(r.engine.max_model_len for r in replicas),
            metadata=replicas[0].metadata.model_dump(exclude={"report"}),
        )
        for variant, replicas in fleet.variants.items()
    ]
    cards += [
        ModelCard(
            id=r.name,
            created=created,
            kind="replica",
            variant=r.variant,
            replicas=[r.name],
            max_model_len=r.engine.max_model_len,
            metadata=r.metadata.model_dump(exclude={"report"}),
        )
        for r in fleet.replicas
    ]
    return ModelList(data=cards)


def _min_len(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


async def _serve(
    body: CompletionRequest | ChatCompletionRequest,
    max_tokens: int | None,
    gateway: Gateway,
    receive: Receive,
    send: Send,
    *,
    chat: bool,
) -> None:
    target = gateway.dispatcher.resolve(body.model, param="model")
    options = body.options(body.temperature, gateway.config.limits.default_max_tokens, max_tokens)
    generation = await gateway.dispatcher.open(body.generation_input(), options, target)
    shape = _ChatShape(generation, body) if chat else _CompletionShape(generation, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        await stream_events(generation, shape.chunk, lambda: shape.final_chunks(include_usage), receive, send)
        return
    text = await collect_text(generation, receive)
    if text is None:
        await send_empty(send, 499)
        return
    await send_json(send, 200, shape.response(text))


class _Shape:
    object_name = ""
    chunk_name = ""
    id_prefix = ""

    def __init__(self, generation: Generation, body: CompletionRequest | ChatCompletionRequest) -> None:
        self.g = generation
        self.head = {
            "id": f"{self.id_prefix}-{generation.id}",
            "created": int(time.time()),
            "model": body.model or generation.variant,
        }
        self.extra = {"replica": generation.replica, "variant": generation.variant}

    def usage(self) -> dict[str, int]:
        s = self.g.summary
        return {
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "total_tokens": s.prompt_tokens + s.completion_tokens,
        }

    def timings(self) -> dict[str, float | None]:
        return {"ttft_s": self.g.summary.ttft_s, "total_s": self.g.summary.total_s}

    def choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def chunk(self, text: str) -> dict[str, Any]:
        return {**self.head, "object": self.chunk_name, "choices": [self.choice(text, None)], **self.extra}

    def final_chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        last = {
            **self.head,
            "object": self.chunk_name,
            "choices": [self.choice("", self.g.summary.finish_reason)],
            **self.extra,
        }
        if not include_usage:
            return [last]
        return [
            last,
            {
                **self.head,
                "object": self.chunk_name,
                "choices": [],
                "usage": self.usage(),
                "timings": self.timings(),
                **self.extra,
            },
        ]

    def response(self, text: str) -> dict[str, Any]:
        return {
            **self.head,
            "object": self.object_name,
            "choices": [self.full_choice(text)],
            "usage": self.usage(),
            **self.extra,
            "timings": self.timings(),
        }

    def full_choice(self, text: str) -> dict[str, Any]:
        raise NotImplementedError


class _CompletionShape(_Shape):
    object_name = chunk_name = "text_completion"
    id_prefix = "cmpl"

    def choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def full_choice(self, text: str) -> dict[str, Any]:
        return self.choice(text, self.g.summary.finish_reason)


class _ChatShape(_Shape):
    object_name = "chat.completion"
    chunk_name = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def __init__(self, generation: Generation, body: CompletionRequest | ChatCompletionRequest) -> None:
        super().__init__(generation, body)
        self._role_sent = False

    def choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        delta: dict[str, str] = {"content": text} if text or not finish_reason else {}
        if not self._role_sent:
            delta["role"] = "assistant"
            self._role_sent = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def full_choice(self, text: str) -> dict[str, Any]:
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": self.g.summary.finish_reason,
        }
