from __future__ import annotations

from fastapi import APIRouter, Request

from service.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health(request: Request) -> HealthResponse:
    """Liveness and the version being served."""
    holder = request.app.state.holder
    if not holder.loaded:
        return HealthResponse(status="loading", index_version=None, items=0)
    engine = holder.engine
    return HealthResponse(status="ok", index_version=engine.version, items=len(engine.index))
