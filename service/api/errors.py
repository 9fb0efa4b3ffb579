"""Errors at the HTTP edge: every failure becomes `{"error": {"message", "type", "param"}}` (OpenAI's shape),
bad input a 4xx naming the field, and nothing a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import GatewayError

log = logging.getLogger(__name__)


def error_body(message: str, error_type: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param}}


def error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.error_type, exc.param), exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return JSONResponse(
            error_body(
                f"request body is not valid JSON: {first.get('msg')}", "invalid_request_error", "body"
            ),
            400,
        )
    # Model-level validators report no location; the message itself names the fields then.
    param = ".".join(loc) if loc else None
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return JSONResponse(error_body(message, "invalid_request_error", param or "body"), 400)


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(
        error_body(str(exc.detail), "invalid_request_error", None),
        exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal error; see the gateway log", "server_error", None), 500)


class BodyLimitMiddleware:
    """Buffers request bodies up to `max_bytes` and answers 413 beyond, before any route parses them.

    Raw ASGI (not BaseHTTPMiddleware) so streaming responses and disconnect detection pass through intact:
    after replaying the body, `receive` is the server's own again.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            error_body(f"request body larger than {self.max_bytes} bytes", "invalid_request_error", "body"),
            413,
        )
        await response(scope, receive, send)
