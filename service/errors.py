"""Typed gateway errors. Code below the HTTP edge raises these; `service.api.errors` turns them into the
OpenAI-shaped JSON body `{"error": {"message", "type", "param"}}` with the status code given here."""

from __future__ import annotations


class ConfigError(Exception):
    """The fleet file or the environment is wrong; the CLI prints it as one line and exits 2."""


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class BodyTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"


class Unauthorized(GatewayError):
    status_code = 401
    error_type = "authentication_error"


class UnknownModel(GatewayError):
    status_code = 404
    error_type = "not_found_error"


class QueueFull(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"


class NoHealthyReplica(GatewayError):
    status_code = 503
    error_type = "service_unavailable"


class GenerationTimeout(GatewayError):
    status_code = 504
    error_type = "timeout_error"


class EngineFailure(GatewayError):
    """An engine failed mid-request (after failover had nothing left to try)."""

    status_code = 502
    error_type = "engine_error"
