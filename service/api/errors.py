"""Errors at the HTTP edge: every failure becomes `{"error": {"message", "type", "param"}}` (OpenAI's shape),
bad input a 4xx naming the field, and nothing a traceback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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
    message, param = validation_error_body(exc.errors())
    return JSONResponse(error_body(message, "invalid_request_error", param), 400)


def validation_error_body(errors: Sequence[Any]) -> tuple[str, str]:
    """The message and the field (`param`) of the first of pydantic's (or FastAPI's) validation errors."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = str(first.get("msg")).removeprefix("Invalid JSON: ")
        return f"request body is not valid JSON: {detail}", "body"
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    # Model-level validators report no location; the message itself names the fields then.
    param = ".".join(loc) if loc else None
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return message, param or "body"


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(
        error_body(str(exc.detail), "invalid_request_error", None),
        exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal error; see the gateway log", "server_error", None), 500)
