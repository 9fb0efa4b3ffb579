"""What routes depend on: the gateway's parts (kept on `app.state`, no globals) and the API-key check."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import SecretStr

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
    check_key: KeyCheck = field(init=False)

    def __post_init__(self) -> None:
        self.check_key = KeyCheck(self.config.auth.api_keys)


# Dependencies are `async def` on purpose: FastAPI runs plain `def` ones in a worker thread, a hop that
# costs more than everything else the gateway does for a request.
async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


class KeyCheck:
    """The API-key check, with the keys encoded once: `check(authorization header)` raises Unauthorized."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._keys = [key.get_secret_value().encode() for key in keys]

    def __call__(self, authorization: bytes | None) -> None:
        if not self._keys:
            return
        scheme, _, token = (authorization or b"").partition(b" ")
        presented = token.strip()
        # Compare against every key in constant time; the token itself is never logged or echoed.
        matched = any([hmac.compare_digest(presented, key) for key in self._keys])
        if scheme.lower() != b"bearer" or not matched:
            raise Unauthorized(
                "missing or invalid API key (send `Authorization: Bearer <key>`)",
                param="authorization",
                headers={"WWW-Authenticate": "Bearer"},
            )


def _check_key(request: Request, gateway: Gateway) -> None:
    header = request.headers.get("authorization")
    gateway.check_key(header.encode("latin-1") if header is not None else None)


def require_key(scope: Literal["generate", "health", "metrics"]):  # noqa: ANN201 - a FastAPI dependency
    async def check(request: Request, gateway: GatewayDep) -> None:
        auth = gateway.config.auth
        if (
            scope == "generate"
            or (scope == "health" and auth.protect_health)
            or (scope == "metrics" and auth.protect_metrics)
        ):
            _check_key(request, gateway)

    return Depends(check)
