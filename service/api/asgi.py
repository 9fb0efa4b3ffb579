"""Raw ASGI plumbing for the generation routes, the gateway's hot path.

FastAPI's request machinery (dependency injection, body parsing and validation in Python, response models,
a task group per streaming response) cost more CPU per request than everything else the gateway does, and
on a CPU-bound host that CPU time is added latency. The generation routes therefore read their body, check
the key, validate with pydantic's JSON validator (Rust) and write their responses here, directly on the
ASGI interface; everything else stays ordinary FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_body, validation_error_body
from service.errors import BodyTooLarge, GatewayError, InvalidRequest

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
# A route's work once its body is read and its key checked; `receive` then only reports a disconnect.
Handle = Callable[[Scope, bytes, Receive, Send], Awaitable[None]]

encode = msgspec.json.encode  # compact, UTF-8; several times faster than json.dumps per SSE event

_JSON = (b"content-type", b"application/json")


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header by its lower-case name (ASGI servers send names lower-cased)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None when the client hung up first; BodyTooLarge (413) beyond max_bytes,
    checked against Content-Length before anything is read."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > max_bytes:
            raise _too_large(max_bytes)
        if not message.get("more_body", False):
            return body if not chunks else b"".join([*chunks, body])
        chunks.append(body)


def _too_large(max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body larger than {max_bytes} bytes", param="body")


def parse(model: type[Model], scope: Scope, body: bytes) -> Model:
    """Validate a JSON body; every problem is an InvalidRequest (400) naming the field, as FastAPI's own
    body handling did (a missing or non-JSON Content-Type is refused like FastAPI's strict mode)."""
    if not body:
        raise InvalidRequest("request body is required", param="body")
    if not _is_json(header(scope, b"content-type")):
        raise InvalidRequest("request body must be JSON (Content-Type: application/json)", param="body")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        message, param = validation_error_body(exc.errors(include_url=False, include_input=False))
        raise InvalidRequest(message, param=param) from None


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.partition(b";")[0].strip().lower()
    return mime == b"application/json" or (mime.startswith(b"application/") and mime.endswith(b"+json"))


async def send_json(send: Send, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = encode(payload)
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_empty(send: Send, status: int) -> None:
    with contextlib.suppress(OSError):  # the client this status is for may be gone already
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def until_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> bool:
    """Run `work` until it ends or the client disconnects, which cancels it (and with it the generation in
    the engine). True when the client left first. Once the body is read, `receive` only returns when the
    client disconnects (or the response is complete)."""
    task = asyncio.ensure_future(work)
    hangup = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait((task, hangup), return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            return False
        return True
    finally:
        hangup.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class GenerationEndpoint:
    """An ASGI app for one generation route: body limit, API key, then the handler; every failure before the
    response starts is answered in OpenAI's error shape, and none becomes a traceback for the client."""

    def __init__(
        self, handle: Handle, *, max_body_bytes: int, authorize: Callable[[bytes | None], None]
    ) -> None:
        self._handle = handle
        self._max_body_bytes = max_body_bytes
        self._authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            body = await read_body(scope, receive, self._max_body_bytes)
            if body is None:
                return  # gone before it finished sending the request
            self._authorize(header(scope, b"authorization"))
            await self._handle(scope, body, receive, tracked)
        except GatewayError as exc:
            if started:
                raise
            await send_json(
                send, exc.status_code, error_body(exc.message, exc.error_type, exc.param), exc.headers
            )
        except Exception:
            log.exception("unexpected error serving POST %s", scope["path"])
            if not started:
                body = error_body("internal error; see the gateway log", "server_error", None)
                await send_json(send, 500, body)


class GenerationFastPath:
    """Hands POSTs to the generation routes straight to their endpoints, ahead of Starlette's exception
    middleware, FastAPI's exit stack and the route table (~0.1-0.2 ms of CPU per request here). The same
    endpoints stay in the route table, which answers everything else (405 for other methods)."""

    def __init__(self, app: ASGIApp, endpoints: dict[str, GenerationEndpoint]) -> None:
        self.app = app
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
