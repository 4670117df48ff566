"""``/items/{id}/similar``: the product page."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from service.deps import EngineDep
from service.errors import ApiError
from service.routers.responses import ranked_response
from service.schemas import RankedResponse

router = APIRouter(tags=["items"])


@router.get("/items/{item_id}/similar", response_model=RankedResponse, response_model_exclude_none=True)
def similar(
    request: Request,
    engine: EngineDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    explain: bool = False,
) -> dict:
    """Products similar to ``item_id`` (never the item itself)."""
    started = time.perf_counter()
    try:
        hits = engine.similar(item_id, k, explain=explain)
    except KeyError:
        raise ApiError(404, f"unknown item id '{item_id}' in index version {engine.version}") from None
    return ranked_response(request, engine, hits, started)
