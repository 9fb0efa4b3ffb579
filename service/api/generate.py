"""`POST /generate`: the gateway's own generation route (docs/contracts.md section 2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.deps import GatewayDep, require_key
from service.api.streaming import ClientGone, ClosingStreamingResponse, collect_text, sse_events
from service.dispatch import Generation
from service.schemas import GenerateRequest, GenerateResponse, Timings, Usage

router = APIRouter(dependencies=[require_key("generate")])


@router.post(
    "/generate", response_model=GenerateResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
async def generate(body: GenerateRequest, request: Request, gateway: GatewayDep) -> Any:
    dispatcher = gateway.dispatcher
    target = dispatcher.replica(body.replica) if body.replica else dispatcher.variant(body.variant)
    options = body.options(body.temperature, gateway.config.limits.default_max_tokens)
    generation = await dispatcher.open(body.generation_input(), options, target)
    if body.stream:
        return ClosingStreamingResponse(generation, _events(generation))
    try:
        text = await collect_text(generation, request)
    except ClientGone:
        return Response(status_code=499)
    return _response(generation, text)


def _response(generation: Generation, text: str) -> GenerateResponse:
    s = generation.summary
    return GenerateResponse(
        id=generation.id,
        text=text,
        replica=generation.replica,
        variant=generation.variant,
        finish_reason=s.finish_reason,
        usage=Usage(prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens),
        timings=Timings(ttft_s=s.ttft_s, total_s=s.total_s),
    )


def _events(generation: Generation):  # noqa: ANN202 - an SSE body iterator
    who = {"replica": generation.replica, "variant": generation.variant}

    def final() -> list[dict[str, Any]]:
        s = generation.summary
        return [
            {
                "text": "",
                **who,
                "finish_reason": s.finish_reason,
                "usage": {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens},
                "timings": {"ttft_s": s.ttft_s, "total_s": s.total_s},
            }
        ]

    return sse_events(generation, lambda text: {"text": text, **who}, final)
