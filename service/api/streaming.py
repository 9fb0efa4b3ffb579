"""Delivery of a `Generation`: server-sent events for streams, and for plain responses a race between the
generation and the client hanging up, so that a vanished client aborts its request in the engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.errors import error_body
from service.dispatch import Generation
from service.errors import GatewayError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


class ClosingStreamingResponse(StreamingResponse):
    """Closes the generation whatever happens to the response (disconnect, error, server shutdown)."""

    def __init__(self, generation: Generation, body: AsyncIterator[str]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self._generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._generation.aclose()


async def sse_events(
    generation: Generation,
    chunk: Callable[[str], dict[str, Any] | None],
    final: Callable[[], list[dict[str, Any]]],
) -> AsyncIterator[str]:
    """`chunk(text)` formats each text delta, `final()` the closing events; errors after the first token can
    no longer change the status code, so they travel as an error event before `[DONE]`."""
    try:
        async for text in generation.chunks():
            event = chunk(text)
            if event is not None:
                yield sse(event)
        for event in final():
            yield sse(event)
    except GatewayError as exc:
        yield sse(error_body(exc.message, exc.error_type, exc.param))
    yield sse("[DONE]")


class ClientGone(Exception):
    """The client hung up before a non-streamed answer was ready; nothing is left to send."""


async def collect_text(generation: Generation, request: Request) -> str:
    """All the text of a non-streamed generation; aborts it if the client disconnects first."""

    async def consume() -> str:
        return "".join([text async for text in generation.chunks()])

    work = asyncio.ensure_future(consume())
    hangup = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        raise ClientGone()
    finally:
        hangup.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        await generation.aclose()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
