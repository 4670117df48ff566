"""``/suggest``: the search box as the shopper types (query completions and product hits)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Query, Request, Response

from aisle.service.deps import EngineDep, SettingsDep
from aisle.service.engine import Engine
from aisle.service.highlight import highlight_result
from aisle.service.json_body import FastJsonRoute
from aisle.service.personal.deps import context_for
from aisle.service.query_log import QueryLog
from aisle.service.ranking.rules import RuleSet
from aisle.service.ranking.types import ANONYMOUS, UserContext
from aisle.service.routers.search import RankingDep
from aisle.service.schemas import SuggestResponse

router = APIRouter(route_class=FastJsonRoute, tags=["search"])

#: Longest text the suggest box takes (a prefix, not a pasted document).
MAX_PREFIX_CHARS = 128


@router.get("/suggest", response_model=SuggestResponse, response_model_exclude_none=True)
def suggest(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    ranking: RankingDep,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_PREFIX_CHARS, description="What the shopper has typed so far.")
    ],
    k: Annotated[int, Query(ge=1, le=20, description="Suggestions and products, at most k of each.")] = 5,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> Response:
    """Completions of the typed text and the products it already finds.

    ``suggestions``: first the shop's own queries that begin with the text (counted without user
    ids, shown once searched several times), then the last word completed from the catalogue's
    words, ranked by how often they occur with the words before it. ``results``: products whose
    words match, the last word as a prefix ("backp" finds backpacks), typos in the finished
    words corrected, personalized for the user or session, each with its ``highlight``.
    """
    started = time.perf_counter()
    ctx = context_for(request, user_id, session_id, engine)
    rules = ranking.rule_book.for_surface("search")
    body = suggest_body(engine, request.app.state.query_log, q, k, ctx=ctx, rules=rules)
    body = {
        "request_id": request.state.request_id,
        "index_version": engine.version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        **body,
    }
    return Response(pydantic_core.to_json(body), media_type="application/json")


def suggest_body(
    engine: Engine,
    query_log: QueryLog | None,
    q: str,
    k: int,
    *,
    ctx: UserContext = ANONYMOUS,
    rules: RuleSet | None = None,
    request_id: str = "",
) -> dict[str, Any]:
    """Everything ``/suggest`` answers but the request's id, version and time (the benchmark
    times this function)."""
    hits = engine.suggest(q, k, ctx=ctx, rules=rules, request_id=request_id)
    suggestions: dict[str, dict[str, str]] = {}
    if query_log is not None:
        for text, _ in query_log.completions(q, k):
            suggestions.setdefault(text, {"text": text, "source": "queries"})
    if len(suggestions) < k:
        for text in engine.completions(q, k):
            suggestions.setdefault(text, {"text": text, "source": "catalogue"})
    matcher = engine.matcher(q, prefix=True)
    results = []
    for hit in hits:
        result = engine.result(hit)
        result["highlight"] = highlight_result(result, matcher)
        results.append(result)
    return {**engine.spelling(q), "suggestions": list(suggestions.values())[:k], "results": results}
