"""`/health` (process alive), `/ready` (which replicas can serve), `/replicas` (full status)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import GatewayDep, require_key
from service.schemas import ReadyStatus, ReplicaStatus

router = APIRouter(dependencies=[require_key("health")])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyStatus, responses={503: {"model": ReadyStatus}})
async def ready(gateway: GatewayDep) -> JSONResponse:
    states = {r.name: str(r.state) for r in gateway.fleet.replicas}
    any_ready = any(r.healthy for r in gateway.fleet.replicas)
    return JSONResponse(ReadyStatus(ready=any_ready, replicas=states).model_dump(), 200 if any_ready else 503)


@router.get("/replicas", response_model=list[ReplicaStatus])
async def replicas(gateway: GatewayDep) -> list[ReplicaStatus]:
    return [
        ReplicaStatus(
            name=r.name,
            kind=r.kind,
            variant=r.variant,
            state=str(r.state),
            ready=r.healthy,
            error=r.last_error,
            in_flight=r.in_flight,
            queued=r.queued,
            max_concurrency=r.max_concurrency,
            max_queue=r.max_queue,
            engine_requests=r.engine.engine_requests(),
            max_model_len=r.engine.max_model_len,
            restarts=r.restarts,
            metadata=r.metadata.model_dump(),
        )
        for r in gateway.fleet.replicas
    ]
