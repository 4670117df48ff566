"""``/users/{user_id}/recommendations`` and ``/users/{user_id}/profile``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from aisle.service.deps import EngineDep, SettingsDep, check_k
from aisle.service.engine import Engine
from aisle.service.personal.context import describe_profile, user_context
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
    request: Request, personal: Personalization, view: ProfileView | None, engine: Engine
) -> RuleSet:
    """The ``recommendations`` rules with the ``recommend_exclude`` setting applied on top."""
    rule_book = request.app.state.ranking.rule_book
    exclude = personal.config.exclude
    if exclude == "none":
        return rule_book.for_surface("recommendations", RulesOverride(exclude_purchased=False))
    rules = rule_book.for_surface("recommendations")
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
) -> Response:
    """Personalized recommendations; a user without history gets the popular list, never an error.

    Each result says where it came from: ``source`` is ``profile``, ``popular``,
    ``bought_together`` (or ``catalogue`` in a shop without any event yet).
    """
    started = time.perf_counter()
    check_k(settings, k)
    view = personal.profiles.view(user_id, session_id)
    ctx = user_context(view, engine, personal.config.purchase_window_s)
    rules = recommendation_rules(request, personal, view, engine)
    row_of = engine.index.items.row_of
    excluded = [row_of[item] for item in rules.exclude_ids if item in row_of]
    candidates = recommendation_candidates(
        engine,
        personal.profiles,
        view,
        personal.config,
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
    return ranked_response(request, engine, hits, started, [source_of.get(hit.row, "profile") for hit in hits])


@router.get("/users/{user_id}/profile")
def profile(
    request: Request,
    personal: PersonalizationDep,
    user_id: UserId,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    top: Annotated[int, Query(ge=1, le=100, description="How many contributing items to list.")] = 10,
) -> dict:
    """What Aisle believes about the user: event counts, the items weighing most on the profile
    (with their decayed weights), the price band, category and brand affinities."""
    view = personal.profiles.view(user_id, session_id)
    body = describe_profile(view, user_id, top)
    body["request_id"] = request.state.request_id
    return body
