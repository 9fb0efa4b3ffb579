"""What routes depend on: the gateway's parts (kept on `app.state`, no globals) and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from service.dispatch import Dispatcher
from service.errors import Unauthorized
from service.fleet import Fleet
from service.settings import FleetConfig
from service.telemetry import Telemetry


@dataclass
class Gateway:
    config: FleetConfig
    fleet: Fleet
    dispatcher: Dispatcher
    telemetry: Telemetry


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _check_key(request: Request, gateway: Gateway) -> None:
    keys = gateway.config.auth.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode()
    # Compare against every key in constant time; the token itself is never logged or echoed.
    matched = any(hmac.compare_digest(presented, key.get_secret_value().encode()) for key in keys)
    if scheme.lower() != "bearer" or not matched:
        raise Unauthorized(
            "missing or invalid API key (send `Authorization: Bearer <key>`)",
            param="authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_key(scope: Literal["generate", "health", "metrics"]):  # noqa: ANN201 - a FastAPI dependency
    def check(request: Request, gateway: GatewayDep) -> None:
        auth = gateway.config.auth
        if (
            scope == "generate"
            or (scope == "health" and auth.protect_health)
            or (scope == "metrics" and auth.protect_metrics)
        ):
            _check_key(request, gateway)

    return Depends(check)
