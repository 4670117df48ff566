"""``POST /events``: interactions in, acknowledged only once durably stored."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from aisle.service.attribution.resolve import attribute
from aisle.service.deps import WRITE_GUARD, SettingsDep, check_batch_size
from aisle.service.errors import ApiError
from aisle.service.events.schemas import EventsRequest, EventsResponse
from aisle.service.events.store import EventStoreUnavailable, StoredEvent
from aisle.service.json_body import FastJsonRoute
from aisle.service.metrics import record_events
from aisle.service.personal.deps import PersonalizationDep

router = APIRouter(route_class=FastJsonRoute, tags=["events"])
#: Seconds a client should wait before retrying after a failed commit (disk full, I/O error).
RETRY_AFTER_S = "5"


async def batch_within_limit(request: Request, settings: SettingsDep) -> None:
    """Refuses an oversized batch (413) before its events are validated one by one.

    FastAPI parses the JSON body before it solves dependencies and validates the body after
    them, so the parsed body is at hand here, and counting its events is cheap, while validating
    thousands of events on the event loop stalled every other request.
    """
    try:
        body = await request.json()
    except ValueError:  # malformed JSON: FastAPI reports it
        return
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        check_batch_size(settings, len(body["events"]))


@router.post("/events", response_model=EventsResponse, dependencies=[*WRITE_GUARD, Depends(batch_within_limit)])
def post_events(request: Request, body: EventsRequest, settings: SettingsDep, personal: PersonalizationDep) -> dict:
    """Stores a batch of events; duplicates (same ``event_id``) are counted and change nothing.

    Clicks, add-to-carts and purchases are attributed (``request_id``, ``position``, a purchase
    window: ``aisle.service.attribution``) and the attribution is stored with the event.

    The answer comes after the commit (SQLite WAL, ``synchronous=FULL``): an acknowledged event
    survives a crash, and the requester's next recommendation already reflects it. A failed
    commit answers 503 with ``Retry-After``; nothing of the batch was stored, and re-sending it
    is safe.
    """
    check_batch_size(settings, len(body.events))
    arrival = time.time()
    hasher = personal.hasher
    holder = request.app.state.holder
    known = holder.engine.index.items.row_of if holder is not None and holder.loaded else {}
    unknown: dict[str, None] = {}
    stored = []
    for event in body.events:
        if event.item_id not in known:
            unknown[event.item_id] = None
        stored.append(
            StoredEvent(
                event_key=hasher.event(event.event_id),
                user_key=hasher.user(event.user_id) if event.user_id else None,
                session_key=hasher.session(event.session_id) if event.session_id else None,
                item_id=event.item_id,
                type=event.type,
                timestamp=event.seconds(arrival),
                received=arrival,
            )
        )
    experiments = getattr(request.app.state, "experiments", None)
    try:
        if experiments is not None:  # attribution reads the database too (PostgreSQL: it may be down)
            raw = [(event.request_id, event.position, event.revenue) for event in body.events]
            stored = attribute(stored, raw, experiments.served, experiments.clicks, experiments.attribution_window_s)
        result = personal.store.append(stored)
    except EventStoreUnavailable as exc:
        raise ApiError(
            503,
            f"{exc}; nothing of this batch was stored, retry it later",
            "storage_unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None
    record_events(request, len(result.accepted), result.duplicates)
    return {
        "accepted": len(result.accepted),
        "duplicates": result.duplicates,
        "unknown_items": list(unknown),
        "request_id": getattr(request.state, "request_id", None),
    }
