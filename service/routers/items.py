"""``/items/{id}/similar``: the product page (dense neighbours and bought-together, then the reranker)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from aisle.service.deps import EngineDep, SettingsDep, check_k
from aisle.service.engine import RulesConflict
from aisle.service.errors import ApiError
from aisle.service.experiments.deps import ContextDep, plan_context, plan_for, record_served
from aisle.service.json_body import FastJsonRoute
from aisle.service.personal.recommend import bought_with_item
from aisle.service.routers.responses import ranked_response
from aisle.service.routers.search import FiltersQuery, RankingDep, filters_from_query
from aisle.service.schemas import RankedResponse

router = APIRouter(route_class=FastJsonRoute, tags=["items"])


@router.get("/items/{item_id}/similar", response_model=RankedResponse, response_model_exclude_none=True)
def similar(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    ranking: RankingDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    filters: FiltersQuery = None,
    explain: bool = False,
    context: ContextDep = None,
) -> Response:
    """Products similar to ``item_id`` (never the item itself) and those bought with it, leaning
    towards the user's taste.

    The ``similar`` rules apply (by default more diversity than search).
    """
    started = time.perf_counter()
    check_k(settings, k)
    parsed = filters_from_query(filters, engine)
    row = engine.item_row(item_id)
    if row is None:
        raise ApiError(404, f"unknown item id '{item_id}' in index version {engine.version}")
    plan = plan_for(request, "similar", user_id, session_id, context)
    personal = getattr(request.app.state, "personal", None)
    together = None
    if personal is not None:
        together = bought_with_item(personal.profiles, engine.index, row, settings.candidates)
    try:
        hits = engine.similar(
            item_id,
            k,
            filters=parsed,
            explain=explain,
            ctx=plan_context(request, plan, engine),
            rules=plan.rules(ranking.rule_book),
            request_id=request.state.request_id,
            together=together,
            together_weight=plan.personal_config(personal.config).bought_together_weight if personal else 0.0,
            fusion=ranking.fusion,
        )
    except RulesConflict as exc:
        raise ApiError(422, str(exc)) from None
    record_served(request, plan, engine, hits)
    return ranked_response(request, engine, hits, started, labels=plan.labels)
