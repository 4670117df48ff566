"""What the ranked routes call: plan a request (segment, variant), then record its response.

Query-parameter routes take the storefront context with ``ContextDep`` (``?channel=&device=&region=``);
``POST /search`` sends it in the body's ``context``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Query, Request

from aisle.service.engine import Engine, Hit
from aisle.service.errors import ApiError
from aisle.service.experiments.runtime import Experiments, Plan
from aisle.service.personal.affinity import user_affinity
from aisle.service.personal.recommend import user_together
from aisle.service.ranking.segments import RequestContext, Segment
from aisle.service.ranking.types import UserContext

_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,63}$"


def plan_for(
    request: Request, surface: str, user_id: str | None, session_id: str | None, context: RequestContext | None
) -> Plan:
    """The request's plan; outside a running app (no stores yet) a plain, anonymous-segment one."""
    state = request.app.state
    personal = getattr(state, "personal", None)
    view = personal.profiles.view(user_id, session_id) if personal is not None and (user_id or session_id) else None
    experiments: Experiments | None = getattr(state, "experiments", None)
    if experiments is None:
        return Plan(surface, time.time(), None, None, Segment.of(context, "new"), view)
    return experiments.plan(surface, user_id, session_id, context, view)


def plan_context(request: Request, plan: Plan, engine: Engine) -> UserContext:
    """The ranking context of the plan's visitor (the personalization's purchase window); a
    search also gets the visitor's category and brand affinities."""
    personal = getattr(request.app.state, "personal", None)
    window = personal.config.purchase_window_s if personal is not None else 30 * 86400.0
    ctx = plan.context(engine, window)
    if personal is None or plan.view is None or not plan.personalized:
        return ctx
    if plan.surface == "search":
        # Categories and brands the visitor leans towards (the search rules' ``affinity`` boost).
        ctx = replace(ctx, affinity=user_affinity(plan.view, engine.index.items))
    config = personal.config
    weight = config.search_together_weight if plan.surface == "search" else config.similar_together_weight
    if plan.surface not in ("search", "similar") or weight <= 0:
        return ctx
    # What people buy with or after the visitor's strongest items (search and similar items).
    together = user_together(personal.profiles, plan.view, engine)
    if together is None:
        return ctx
    return replace(ctx, together=together, together_weight=weight)


def record_served(request: Request, plan: Plan, engine: Engine, hits: list[Hit], query: str | None = None) -> None:
    """Remembers the response for attribution (a no-op before the stores are open)."""
    experiments: Experiments | None = getattr(request.app.state, "experiments", None)
    if experiments is not None:
        experiments.record(plan, request.state.request_id, engine, hits, query)


async def get_context(
    channel: Annotated[str | None, Query(pattern=_LABEL, description="Traffic source, e.g. web, app, email.")] = None,
    device: Annotated[str | None, Query(pattern=_LABEL, description="e.g. mobile, desktop.")] = None,
    region: Annotated[str | None, Query(pattern=_LABEL, description="e.g. a country or market code.")] = None,
) -> RequestContext | None:
    """``ContextDep``: the storefront context from query parameters (None when none is given)."""
    if channel is None and device is None and region is None:
        return None
    return RequestContext(channel=channel, device=device, region=region)


async def get_experiments(request: Request) -> Experiments:
    """The running experiments (503 while the service is still starting)."""
    experiments = getattr(request.app.state, "experiments", None)
    if experiments is None:
        raise ApiError(503, "experiments are not ready yet", headers={"Retry-After": "1"})
    return experiments


ContextDep = Annotated[RequestContext | None, Depends(get_context)]
ExperimentsDep = Annotated[Experiments, Depends(get_experiments)]
