"""``/admin/*``: operations on the running service (API key required when one is configured)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from aisle.index.manifest import IndexValidationError
from aisle.index.versions import VersionError
from aisle.service.deps import WRITE_GUARD
from aisle.service.errors import ApiError, ErrorResponse
from aisle.service.json_body import FastJsonRoute

log = logging.getLogger(__name__)

router = APIRouter(route_class=FastJsonRoute, tags=["admin"], dependencies=WRITE_GUARD)


class ReloadResponse(BaseModel):
    """The outcome of ``POST /admin/reload``."""

    request_id: str
    swapped: bool = Field(..., description="False when the newest published version was already serving.")
    index_version: str = Field(..., description="The version serving after this call.")
    previous_version: str | None = Field(None, description="The version serving before this call.")
    items: int = Field(..., description="Products in the version serving now.")


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Nothing is published under the index root."},
        409: {"model": ErrorResponse, "description": "The new version is invalid; the previous one keeps serving."},
    },
)
async def reload_index(request: Request) -> ReloadResponse:
    """Swaps in the newest published version after validating it; the old one serves meanwhile.

    Validation covers every file's presence, size and sha256, the model fingerprint, the vector
    dimensions and a smoke query. A refused version changes nothing: the answer is 409 with
    the reason, and the previous version keeps answering every request.
    """
    holder = request.app.state.holder
    previous = holder.engine.version if holder.loaded else None
    try:
        # Loading reads and checksums files: off the event loop so that searches keep flowing.
        swapped, version = await asyncio.to_thread(holder.reload)
    except VersionError as exc:
        raise ApiError(404, str(exc)) from None
    except IndexValidationError as exc:
        raise ApiError(409, f"new index version refused, still serving {previous}: {exc}", "invalid_index") from None
    return ReloadResponse(
        request_id=request.state.request_id,
        swapped=swapped,
        index_version=version,
        previous_version=previous,
        items=len(holder.engine.index),
    )
