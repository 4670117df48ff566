"""``/users/{user_id}/recommendations`` and ``/users/{user_id}/profile``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from aisle.service.deps import WRITE_GUARD, EngineDep, SettingsDep, check_k
from aisle.service.engine import Engine
from aisle.service.errors import ApiError, ErrorResponse
from aisle.service.events.store import EventStoreUnavailable
from aisle.service.experiments.deps import ContextDep, plan_context, plan_for, record_served
from aisle.service.experiments.runtime import Plan
from aisle.service.personal.context import describe_profile
from aisle.service.personal.deps import PersonalizationDep
from aisle.service.personal.profiles import ProfileView
from aisle.service.personal.recommend import recommendation_candidates
from aisle.service.personal.runtime import Personalization
from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import RuleSet, RulesOverride
from aisle.service.routers.responses import ranked_response
from aisle.service.schemas import RankedResponse

router = APIRouter(tags=["users"])
UserId = Annotated[
    str, Path(min_length=1, max_length=256, description="The shop's user id (stored only as a keyed hash).")
]


def recommendation_rules(
    request: Request, personal: Personalization, view: ProfileView | None, engine: Engine, plan: Plan
) -> RuleSet:
    """The ``recommendations`` rules (with campaigns and the variant's) and ``recommend_exclude`` on top."""
    rule_book = request.app.state.ranking.rule_book
    exclude = personal.config.exclude
    if exclude == "none":
        return plan.rules(rule_book, RulesOverride(exclude_purchased=False))
    rules = plan.rules(rule_book)
    if exclude == "interacted" and view is not None and view.engine.version == engine.version:
        ids = engine.index.items.ids
        seen = tuple(ids[row] for row in view.weight_by_row())
        rules = rules.model_copy(update={"exclude_ids": (*rules.exclude_ids, *seen)})
    return rules


@router.get("/users/{user_id}/recommendations", response_model=RankedResponse, response_model_exclude_none=True)
def recommendations(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    personal: PersonalizationDep,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    explain: bool = False,
    context: ContextDep = None,
) -> Response:
    """Personalized recommendations; a user without history gets the popular list, never an error.

    Each result says where it came from: ``source`` is ``profile``, ``popular``,
    ``bought_together`` (or ``catalogue`` in a shop without any event yet).
    """
    started = time.perf_counter()
    check_k(settings, k)
    plan = plan_for(request, "recommendations", user_id, session_id, context)
    view = plan.view
    ctx = plan_context(request, plan, engine)
    rules = recommendation_rules(request, personal, view, engine, plan)
    row_of = engine.index.items.row_of
    excluded = [row_of[item] for item in rules.exclude_ids if item in row_of]
    # Without personalization (an experiment's control) the visitor gets the popular list.
    candidates = recommendation_candidates(
        engine,
        personal.profiles,
        view if plan.personalized else None,
        plan.personal_config(personal.config),
        n=settings.candidates,
        exclude_rows=excluded,
        image_weight=request.app.state.ranking.fusion.profile_image_weight,
    )
    hits = rerank(
        candidates,
        engine.index.items,
        ctx,
        rules,
        k,
        request_id=request.state.request_id,
        explain=explain,
    )
    sources = candidates.sources if candidates.sources is not None else []
    source_of = dict(zip(candidates.rows.tolist(), (str(source) for source in sources)))
    record_served(request, plan, engine, hits)
    return ranked_response(
        request, engine, hits, started, [source_of.get(hit.row, "profile") for hit in hits], labels=plan.labels
    )


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
    (with their decayed weights), the price band, category and brand affinities.

    Private: it needs the API key when one is configured (a storefront shows "your profile" from
    its backend), so nobody else can read a shopper's history, learn from ``known`` whether an id
    (an e-mail address) has any, or read an anonymous visitor's session through ``session_id``.
    """
    view = personal.profiles.view(user_id, session_id)
    body = describe_profile(view, user_id, top)
    body["request_id"] = request.state.request_id
    return body
