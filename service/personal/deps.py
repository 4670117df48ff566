"""FastAPI dependencies of personalization: the runtime, and the requester's ``UserContext``.

Routes with ``user_id``/``session_id`` query parameters take ``UserContextDep``; routes whose
ids come in a JSON body call ``context_for(request, user_id, session_id, engine)``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from aisle.service.deps import EngineDep
from aisle.service.engine import Engine
from aisle.service.errors import ApiError
from aisle.service.personal.context import user_context
from aisle.service.personal.runtime import Personalization
from aisle.service.ranking.types import ANONYMOUS, UserContext


async def get_personalization(request: Request) -> Personalization:
    """The running personalization (503 while the service is still starting)."""
    personal = getattr(request.app.state, "personal", None)
    if personal is None:
        raise ApiError(503, "personalization is not ready yet", headers={"Retry-After": "1"})
    return personal


def context_for(
    request: Request, user_id: str | None, session_id: str | None, engine: Engine | None = None
) -> UserContext:
    """The context of a requester; anonymous when no ids are given or nothing is known yet.

    Args:
        request: the request (the app holds the personalization runtime).
        user_id: the shop's user id, if any.
        session_id: the visitor's session id, if any.
        engine: the engine serving the request (default: the holder's current one).
    """
    if not user_id and not session_id:
        return ANONYMOUS
    personal = getattr(request.app.state, "personal", None)
    if personal is None:
        return ANONYMOUS
    if engine is None:
        engine = request.app.state.holder.engine
    view = personal.profiles.view(user_id, session_id)
    return user_context(view, engine, personal.config.purchase_window_s)


def get_user_context(
    request: Request,
    engine: EngineDep,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> UserContext:
    """``UserContextDep``: the context from the ``user_id`` and ``session_id`` query parameters."""
    return context_for(request, user_id, session_id, engine)


PersonalizationDep = Annotated[Personalization, Depends(get_personalization)]
UserContextDep = Annotated[UserContext, Depends(get_user_context)]
