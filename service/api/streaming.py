"""Delivery of a `Generation` on the raw ASGI interface: server-sent events for streams, and for plain
responses the collected text; either way a client that hangs up aborts its request in the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Send

from service.api.asgi import encode, until_disconnect
from service.api.errors import error_body
from service.dispatch import Generation
from service.errors import GatewayError

_SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ],
}
DONE = b"data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + encode(data) + b"\n\n"


async def stream_events(
    generation: Generation,
    chunk: Callable[[str], dict[str, Any]],
    final: Callable[[], list[dict[str, Any]]],
    receive: Receive,
    send: Send,
) -> None:
    """`chunk(text)` formats each text delta, `final()` the closing events; errors after the first token can
    no longer change the status code, so they travel as an error event before `[DONE]`. The last text, the
    closing events and `[DONE]` go out as one write (each write is a syscall and a wake-up of the client).
    The generation is closed whatever happens."""

    async def run() -> None:
        await send(_SSE_START)
        last = b""
        try:
            async for text in generation.chunks():
                event = sse(chunk(text))
                if generation.summary.finish_reason is not None:
                    last = event  # the last text: it goes out with the closing events, in one write
                    continue
                await send({"type": "http.response.body", "body": event, "more_body": True})
            tail = last + b"".join([sse(event) for event in final()])
        except GatewayError as exc:
            tail = last + sse(error_body(exc.message, exc.error_type, exc.param))
        await send({"type": "http.response.body", "body": tail + DONE, "more_body": False})

    try:
        await until_disconnect(run(), receive)
    finally:
        await generation.aclose()


async def collect_text(generation: Generation, receive: Receive) -> str | None:
    """All the text of a non-streamed generation; None (and the generation aborted) if the client
    disconnected first."""
    parts: list[str] = []

    async def consume() -> None:
        async for text in generation.chunks():
            parts.append(text)

    try:
        gone = await until_disconnect(consume(), receive)
    finally:
        await generation.aclose()
    return None if gone else "".join(parts)
