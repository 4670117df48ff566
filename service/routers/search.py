"""``/search``: the search bar (hybrid retrieval, then the reranker)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from aisle.index.filters import Filters
from aisle.service.deps import EngineDep, SettingsDep, check_k, check_query
from aisle.service.engine import Engine, RulesConflict
from aisle.service.errors import ApiError
from aisle.service.experiments.deps import ContextDep, plan_context, plan_for, record_served
from aisle.service.ranking.config import RankingConfig
from aisle.service.routers.responses import ranked_response
from aisle.service.schemas import RankedResponse, SearchFilters, SearchRequest

router = APIRouter(tags=["search"])


async def get_ranking(request: Request) -> RankingConfig:
    """The app's ranking configuration (built from the settings at start-up)."""
    state = request.app.state
    ranking = getattr(state, "ranking", None)
    if ranking is None:
        ranking = state.ranking = RankingConfig.from_settings(state.settings)
    return ranking


RankingDep = Annotated[RankingConfig, Depends(get_ranking)]


def to_filters(filters: SearchFilters | None) -> Filters | None:
    if filters is None:
        return None
    brand = tuple(filters.brand) if isinstance(filters.brand, list) else filters.brand
    return Filters(filters.category, brand, filters.price_min, filters.price_max, filters.in_stock)


def run_search(
    request: Request, engine: Engine, settings: SettingsDep, ranking: RankingConfig, body: SearchRequest
) -> Response:
    started = time.perf_counter()
    check_k(settings, body.k)
    check_query(settings, body.query)
    plan = plan_for(request, "search", body.user_id, body.session_id, body.context)
    try:
        hits = engine.search(
            body.query,
            body.k,
            filters=to_filters(body.filters),
            exclude_ids=body.exclude_ids,
            explain=body.explain,
            ctx=plan_context(request, plan, engine),
            rules=plan.rules(ranking.rule_book, body.rules),
            fusion=plan.fusion(ranking.fusion),
            retrieval=plan.retrieval(body.retrieval, "retrieval" in body.model_fields_set),  # type: ignore[arg-type]
            request_id=request.state.request_id,
        )
    except RulesConflict as exc:
        raise ApiError(422, str(exc)) from None
    record_served(request, plan, engine, hits, body.query)
    query_log = request.app.state.query_log
    if hits and query_log is not None:
        query_log.record(body.query)
    matcher = engine.matcher(body.query) if body.highlight else None
    return ranked_response(
        request, engine, hits, started, labels=plan.labels, extra=engine.spelling(body.query), matcher=matcher
    )


@router.post("/search", response_model=RankedResponse, response_model_exclude_none=True)
def search(
    request: Request, engine: EngineDep, settings: SettingsDep, ranking: RankingDep, body: SearchRequest
) -> Response:
    """Ranked products for a query: hybrid (dense + BM25) retrieval, then business rules.

    Filters, exclusions and per-request rules (caps, pins, boosts, diversity, exploration)
    are optional; ``explain: true`` returns the parts of every score.
    """
    return run_search(request, engine, settings, ranking, body)


@router.get("/search", response_model=RankedResponse, response_model_exclude_none=True)
def search_get(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    ranking: RankingDep,
    q: Annotated[str, Query(min_length=1, max_length=512, description="The query text.")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    explain: bool = False,
    highlight: bool = False,
    context: ContextDep = None,
) -> Response:
    """The same search for a plain search bar form."""
    body = SearchRequest(
        query=q,
        k=k,
        user_id=user_id,
        session_id=session_id,
        explain=explain,
        highlight=highlight,
        context=context,
    )
    return run_search(request, engine, settings, ranking, body)
