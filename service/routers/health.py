"""``GET /health``: liveness, readiness and the version being served."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import Field

from aisle.service.schemas import HealthResponse

router = APIRouter(tags=["health"])


class HealthStatus(HealthResponse):
    """The contract's health body plus the request id and the last refused version."""

    request_id: str
    refused_version: str | None = Field(
        None, description="The last published version refused at reload (invalid); the one above keeps serving."
    )


_HEALTH_RESPONSES: dict = {503: {"model": HealthStatus, "description": "No index version is loaded yet."}}


@router.head("/health", response_model=HealthStatus, responses=_HEALTH_RESPONSES)
@router.get("/health", response_model=HealthStatus, responses=_HEALTH_RESPONSES)
async def health(request: Request, response: Response) -> HealthStatus:
    """200 with ``status: ok`` while a version is serving; 503 with ``status: loading`` before.

    ``async``: it only reads the holder, so it runs on the event loop without a thread-pool hop.
    ``HEAD`` answers the same status without a body, for load balancers that probe with it.
    """
    holder = request.app.state.holder
    refusal = holder.last_refusal
    refused = refusal.path.name if refusal is not None else None
    if not holder.loaded:
        response.status_code = 503
        return HealthStatus(
            status="loading", index_version=None, items=0, request_id=request.state.request_id, refused_version=refused
        )
    engine = holder.engine
    return HealthStatus(
        status="ok",
        index_version=engine.version,
        items=getattr(engine.index, "live_items", len(engine.index)),
        request_id=request.state.request_id,
        refused_version=refused,
    )
