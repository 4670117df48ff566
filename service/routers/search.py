"""``/search``: the search bar."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from index.filters import Filters
from service.deps import EngineDep
from service.routers.responses import ranked_response
from service.schemas import RankedResponse, SearchFilters, SearchRequest

router = APIRouter(tags=["search"])


def to_filters(filters: SearchFilters | None) -> Filters | None:
    if filters is None:
        return None
    brand = tuple(filters.brand) if isinstance(filters.brand, list) else filters.brand
    return Filters(filters.category, brand, filters.price_min, filters.price_max, filters.in_stock)


def run_search(request: Request, engine: EngineDep, body: SearchRequest) -> dict:
    started = time.perf_counter()
    hits = engine.search(
        body.query, body.k, filters=to_filters(body.filters),
        exclude_ids=body.exclude_ids, explain=body.explain,
    )
    return ranked_response(request, engine, hits, started)


@router.post("/search", response_model=RankedResponse, response_model_exclude_none=True)
def search(request: Request, engine: EngineDep, body: SearchRequest) -> dict:
    """Ranked products for a query, with optional filters, exclusions and explanations."""
    return run_search(request, engine, body)


@router.get("/search", response_model=RankedResponse, response_model_exclude_none=True)
def search_get(
    request: Request,
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=512, description="The query text.")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> dict:
    """The same search for a plain search bar form."""
    body = SearchRequest(query=q, k=k, user_id=user_id, session_id=session_id)
    return run_search(request, engine, body)
