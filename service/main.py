"""The app factory: `create_app(config)` wires fleet, router, dispatcher and telemetry into a FastAPI app
whose lifespan starts the engines and stops them again in reverse order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.routing import Route

from service.api import generate, health, metrics, openai
from service.api.asgi import GenerationEndpoint, GenerationFastPath
from service.api.deps import Gateway
from service.api.errors import install_error_handlers
from service.dispatch import Dispatcher
from service.engines.base import Engine
from service.errors import ConfigError
from service.fleet import Fleet
from service.routing import Router
from service.settings import FleetConfig
from service.telemetry import Telemetry


def create_app(config: FleetConfig, *, engines: Sequence[Engine] | None = None) -> FastAPI:
    """`engines` replaces the engines the fleet file describes (unit tests with fakes)."""
    fleet = Fleet.from_config(config, engines)
    router = Router(config.routing.policy, _weights(config, fleet), failover=config.routing.failover)
    telemetry = Telemetry(lambda: fleet.replicas)
    for replica in fleet.replicas:
        telemetry.prime(replica.name, replica.variant)
    gateway = Gateway(
        config, fleet, Dispatcher(fleet, router, telemetry, config.limits.request_timeout_s), telemetry
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await fleet.start()
        try:
            yield
        finally:
            await fleet.stop()

    app = FastAPI(
        title="sparsefleet gateway",
        summary="Dense and sparse vLLM replicas behind one OpenAI-compatible API, with per-variant metrics.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    generation_routes = {
        "/generate": generate.generate,
        "/v1/completions": openai.completions,
        "/v1/chat/completions": openai.chat_completions,
    }
    endpoints = {
        path: GenerationEndpoint(
            partial(handle, gateway), max_body_bytes=config.limits.max_body_bytes, authorize=gateway.check_key
        )
        for path, handle in generation_routes.items()
    }
    for path, endpoint in endpoints.items():
        app.router.routes.append(Route(path, endpoint, methods=["POST"]))
    app.add_middleware(GenerationFastPath, endpoints=endpoints)
    for module in (openai, health, metrics):
        app.include_router(module.router)
    return app


def _weights(config: FleetConfig, fleet: Fleet) -> dict[str, float]:
    weights = config.routing.weights
    unknown = sorted(set(weights) - set(fleet.variants))
    if unknown:
        raise ConfigError(
            f"routing.weights: unknown variant {unknown[0]!r}; variants: {', '.join(fleet.variants)}"
        )
    return dict(weights) if weights else dict.fromkeys(fleet.variants, 1.0)
