"""`GET /metrics`: the app's own Prometheus registry in text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import GatewayDep, require_key

router = APIRouter(dependencies=[require_key("metrics")])


@router.get("/metrics", response_class=Response)
async def metrics(gateway: GatewayDep) -> Response:
    return Response(generate_latest(gateway.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
