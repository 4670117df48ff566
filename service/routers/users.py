"""``/users/{user_id}/recommendations``, ``/users/{user_id}/recently-viewed`` and ``/users/{user_id}/profile``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from aisle.service.deps import WRITE_GUARD, EngineDep, SettingsDep, check_k
from aisle.service.engine import Engine, Hit, RulesConflict
from aisle.service.errors import ApiError, ErrorResponse
from aisle.service.events.store import EventStoreUnavailable
from aisle.service.experiments.deps import ContextDep, plan_context, plan_for, record_served
from aisle.service.json_body import FastJsonRoute
from aisle.service.personal.context import describe_profile
from aisle.service.personal.deps import PersonalizationDep
from aisle.service.personal.recommend import PageContext, RecommendationSource, recommendation_rules
from aisle.service.routers.responses import ranked_response
from aisle.service.routers.search import FiltersQuery, filters_from_query
from aisle.service.schemas import RankedResponse

router = APIRouter(route_class=FastJsonRoute, tags=["users"])
UserId = Annotated[
    str, Path(min_length=1, max_length=256, description="The shop's user id (stored only as a keyed hash).")
]
MAX_CONTEXT_ITEMS = 100


def page_context(engine: Engine, cart: list[str], item_id: str | None) -> PageContext:
    """The storefront page's cart and product as rows of ``engine``'s version (unknown ids ignored)."""
    if len(cart) > MAX_CONTEXT_ITEMS:
        raise ApiError(422, f"cart: at most {MAX_CONTEXT_ITEMS} items, got {len(cart)}")
    rows = tuple(row for row in (engine.item_row(item) for item in cart) if row is not None)
    return PageContext(cart=rows, viewing=engine.item_row(item_id) if item_id else None)


@router.get("/users/{user_id}/recommendations", response_model=RankedResponse, response_model_exclude_none=True)
def recommendations(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    personal: PersonalizationDep,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    cart: Annotated[
        list[str],
        Query(max_length=256, description="Items in the cart (repeat the parameter); never recommended."),
    ] = [],  # noqa: B006 (FastAPI copies the default)
    item_id: Annotated[
        str | None,
        Query(
            min_length=1, max_length=256, description="The product being viewed: what is bought with it comes first."
        ),
    ] = None,
    filters: FiltersQuery = None,
    explain: bool = False,
    context: ContextDep = None,
) -> Response:
    """Personalized recommendations; a user without history gets the popular list, never an error.

    Always ``k`` results when the filters allow ``k`` items (backfilled from the popular list
    and the catalogue). Each result says where it came from: ``source`` is ``profile``,
    ``popular``, ``bought_together``, ``repurchase`` (or ``catalogue`` in a shop without any
    event yet).
    """
    started = time.perf_counter()
    check_k(settings, k)
    parsed = filters_from_query(filters, engine)
    plan = plan_for(request, "recommendations", user_id, session_id, context)
    view = plan.view
    config = plan.personal_config(personal.config)
    rule_book = request.app.state.ranking.rule_book
    # Without personalization (an experiment's control) the visitor gets the popular list.
    source = RecommendationSource.for_request(
        personal.profiles, config, view if plan.personalized else None, page_context(engine, cart, item_id)
    )
    source.image_weight = request.app.state.ranking.fusion.profile_image_weight
    source.collaborative = personal.collaborative
    try:
        hits, sources = engine.recommend(
            source,
            k,
            filters=parsed,
            explain=explain,
            ctx=plan_context(request, plan, engine),
            rules=recommendation_rules(lambda override: plan.rules(rule_book, override), config, view, engine),
            request_id=request.state.request_id,
        )
    except RulesConflict as exc:
        raise ApiError(422, str(exc)) from None
    record_served(request, plan, engine, hits)
    return ranked_response(request, engine, hits, started, sources, labels=plan.labels)


@router.get(
    "/users/{user_id}/recently-viewed",
    response_model=RankedResponse,
    response_model_exclude_none=True,
    dependencies=WRITE_GUARD,
)
def recently_viewed(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    personal: PersonalizationDep,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> Response:
    """The items the user (or session) viewed or clicked most recently, latest first.

    Private like the profile: it needs the API key when one is configured (it reveals history),
    so a storefront renders it from its backend.
    """
    started = time.perf_counter()
    check_k(settings, k)
    view = personal.profiles.view(user_id, session_id)
    hits: list[Hit] = []
    if view is not None:
        ids = view.index.items.ids
        for rank, row in enumerate(view.recently_viewed):
            served = engine.item_row(ids[row])
            if served is not None:
                hits.append(Hit(served, 1.0 - rank / len(view.recently_viewed)))
    return ranked_response(request, engine, hits[:k], started, ["recently_viewed"] * min(k, len(hits)))


class ErasureResponse(BaseModel):
    """The outcome of ``DELETE /users/{user_id}``."""

    erased_events: int = Field(
        ..., description="Events deleted: the user's own and their linked sessions' anonymous ones."
    )
    linked_sessions: int = Field(..., description="Sessions linked to the user whose anonymous events were deleted.")
    request_id: str | None = None


@router.delete(
    "/users/{user_id}",
    response_model=ErasureResponse,
    dependencies=WRITE_GUARD,
    responses={503: {"model": ErrorResponse, "description": "Storage busy or full: nothing was erased, retry."}},
)
def forget_user(request: Request, personal: PersonalizationDep, user_id: UserId) -> ErasureResponse:
    """Erases a user: their events, their linked sessions' anonymous events, their profile, and
    what those events added to popularity and "bought together" counts.

    The deletion is durable before the answer, and this worker's profiles are rebuilt without
    the user before it too; every other worker on the same data rebuilds within a second. A
    restart or a new index version replays the log, which no longer holds the events. Erasing
    an unknown or already erased user answers the same way with zero counts.
    """
    try:
        erasure = personal.store.erase_user(personal.hasher.user(user_id))
    except EventStoreUnavailable as exc:
        raise ApiError(
            503, f"{exc}; nothing was erased, retry", "storage_unavailable", headers={"Retry-After": "5"}
        ) from None
    # What the served-response log and experiment exposures hold of the user goes too.
    request.app.state.experiments.served.erase(personal.hasher.user(user_id), list(erasure.session_keys))
    request.app.state.erasures.catch_up()
    return ErasureResponse(
        erased_events=erasure.events, linked_sessions=erasure.sessions, request_id=request.state.request_id
    )


@router.get("/users/{user_id}/profile", dependencies=WRITE_GUARD)
def profile(
    request: Request,
    personal: PersonalizationDep,
    user_id: UserId,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    top: Annotated[int, Query(ge=1, le=100, description="How many contributing items to list.")] = 10,
) -> dict:
    """What Aisle believes about the user: event counts, the items weighing most on the profile
    (with their weights), the price band, category and brand affinities.

    Private: it needs the API key when one is configured (a storefront shows "your profile" from
    its backend), so nobody else can read a shopper's history, learn from ``known`` whether an id
    (an e-mail address) has any, or read an anonymous visitor's session through ``session_id``.
    """
    view = personal.profiles.view(user_id, session_id)
    body = describe_profile(view, user_id, top)
    body["request_id"] = request.state.request_id
    return body
