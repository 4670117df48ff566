"""``/suggest``: the search box as the shopper types (query completions and product hits).

It answers on every keystroke, so the route is lean (see DECISIONS.md, "/suggest's HTTP path"):
its query parameters are one pydantic model validated in one call rather than FastAPI's
per-parameter dependency solving, and an anonymous request (no ``user_id``/``session_id``) is
answered on the event loop: its work is in memory and bounded (a prefix of at most
``MAX_PREFIX_CHARS``, at most 20 of each), about a millisecond, of which the thread pool's
hand-off would add a tenth. A request naming a user or session runs in the thread pool, as
every other handler does, because its profile view may read the event store.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic_core
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from aisle.service.deps import engine_of
from aisle.service.engine import Engine
from aisle.service.highlight import highlight_result
from aisle.service.json_body import FastJsonRoute
from aisle.service.personal.deps import context_for
from aisle.service.query_log import QueryLog
from aisle.service.ranking.rules import RuleSet
from aisle.service.ranking.types import ANONYMOUS, UserContext
from aisle.service.routers.search import ranking_of
from aisle.service.schemas import SuggestResponse

router = APIRouter(route_class=FastJsonRoute, tags=["search"])

#: Longest text the suggest box takes (a prefix, not a pasted document).
MAX_PREFIX_CHARS = 128


class SuggestQuery(BaseModel):
    """The query parameters of ``GET /suggest`` (others are ignored, as FastAPI ignores them)."""

    model_config = ConfigDict(extra="ignore")

    q: str = Field(min_length=1, max_length=MAX_PREFIX_CHARS, description="What the shopper has typed so far.")
    k: int = Field(5, ge=1, le=20, description="Suggestions and products, at most k of each.")
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI ``parameters`` of a query model: the route reads them itself."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = dict(field_schema)
        description = field_schema.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": field_schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def parse_query(request: Request) -> SuggestQuery:
    """The request's parameters, validated; a 422 envelope naming each bad one (``query.k: ...``)
    as FastAPI's own validation words it."""
    try:
        return SuggestQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.get(
    "/suggest",
    response_model=SuggestResponse,
    response_model_exclude_none=True,
    openapi_extra={"parameters": _query_parameters(SuggestQuery)},
)
async def suggest(request: Request) -> Response:
    """Completions of the typed text and the products it already finds.

    ``suggestions``: first the shop's own queries that begin with the text (counted without user
    ids, shown once searched several times), then the last word completed from the catalogue's
    words, ranked by how often they occur with the words before it. ``results``: products whose
    words match, the last word as a prefix ("backp" finds backpacks), typos in the finished
    words corrected, personalized for the user or session, each with its ``highlight``.
    """
    started = time.perf_counter()
    params = parse_query(request)
    state = request.app.state
    engine = engine_of(request)
    if params.user_id or params.session_id:
        body = await run_in_threadpool(_personal_body, request, engine, params)
    else:
        body = suggest_body(engine, state.query_log, params.q, params.k, rules=_search_rules(request))
    body = {
        "request_id": request.state.request_id,
        "index_version": engine.version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        **body,
    }
    return Response(pydantic_core.to_json(body), media_type="application/json")


def _search_rules(request: Request) -> RuleSet:
    return ranking_of(request).rule_book.for_surface("search")


def _personal_body(request: Request, engine: Engine, params: SuggestQuery) -> dict[str, Any]:
    ctx = context_for(request, params.user_id, params.session_id, engine)
    return suggest_body(engine, request.app.state.query_log, params.q, params.k, ctx=ctx, rules=_search_rules(request))


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
    times this function).

    The catalogue's part of an anonymous answer (spelling, completions, products) depends only
    on the engine (one index version, live changes included: each makes a new engine), the text,
    ``k`` and the rules, so it is kept in the engine's ``suggestions`` cache: shoppers type the
    same first letters. The shop's own queries are read fresh each time.
    """
    if ctx is ANONYMOUS and not request_id:
        key = f"{k}\x00{q}"
        cached_rules, catalogue = engine.suggestions.get_or_compute(
            key, lambda: (rules, _catalogue_part(engine, q, k, ctx, rules, request_id))
        )
        if cached_rules is not rules:  # another caller's rules: never answer with them
            catalogue = _catalogue_part(engine, q, k, ctx, rules, request_id)
    else:
        catalogue = _catalogue_part(engine, q, k, ctx, rules, request_id)
    suggestions: dict[str, dict[str, str]] = {}
    if query_log is not None:
        for text, _ in query_log.completions(q, k):
            suggestions.setdefault(text, {"text": text, "source": "queries"})
    for text in catalogue["completions"]:
        if len(suggestions) >= k:
            break
        suggestions.setdefault(text, {"text": text, "source": "catalogue"})
    return {**catalogue["spelling"], "suggestions": list(suggestions.values())[:k], "results": catalogue["results"]}


def _catalogue_part(
    engine: Engine, q: str, k: int, ctx: UserContext, rules: RuleSet | None, request_id: str
) -> dict[str, Any]:
    hits = engine.suggest(q, k, ctx=ctx, rules=rules, request_id=request_id)
    matcher = engine.matcher(q, prefix=True)
    results = []
    for hit in hits:
        result = engine.result(hit)
        result["highlight"] = highlight_result(result, matcher)
        results.append(result)
    return {
        # The spelling of the analysis the results came from (the one cached for them): the word
        # being typed is completed, never corrected.
        "spelling": engine.spelling(q, prefix=True),
        "completions": engine.completions(q, k),
        "results": results,
    }
