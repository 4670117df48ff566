"""Personalized search lift, on MovieLens tags, through the service's API.

User U tagged movie M with text T at time t (``aisle.training.recsys_data.TagCase``): T is the query,
U's ratings before t (M excluded) are the history. Each case gets its own user id, its history is
posted to ``POST /events`` with the real gaps between ratings, ending at the present (the tag
moment), and ``POST /search`` runs once anonymously and once with the user id. The lift is the
change in MRR@100 and HR@10 of M. Ratings become event types by strength (4.5–5 purchase,
3.5–4 add_to_cart, 2.5–3 click, lower view), as the service would see a shop's signals.

Personalization is the service's code (``aisle.service.ranking``), so this runs only over HTTP: on a
service the user runs (``--via-http``) or on a local ``aisle serve`` the evaluation starts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aisle.index.catalog import Catalog, Product
from aisle.training.metrics import summarize_ranks, target_rank
from aisle.training.recsys_data import MovieLensData, TagCase

DEPTH = 100
RATING_TYPES = ((4.5, "purchase"), (3.5, "add_to_cart"), (2.5, "click"), (0.0, "view"))


def event_type(rating: float) -> str:
    return next(kind for floor, kind in RATING_TYPES if rating >= floor)


def movie_catalog(data: MovieLensData) -> Catalog:
    """The movies as a catalogue (id = movieId, title = "Title (year). Genres")."""
    return Catalog(
        [Product(id=str(m.movie), title=m.text()) for m in sorted(data.movies.values(), key=lambda m: m.movie)]
    )


def post_history(client: Any, user_id: str, case: TagCase, now: float, batch: int = 500) -> int:
    """Posts the case's ratings as events ending at ``now``; returns how many were posted."""
    events = [
        {
            "event_id": f"{user_id}-{n}",
            "user_id": user_id,
            "item_id": str(rating.movie),
            "type": event_type(rating.rating),
            "timestamp": now - (case.timestamp - rating.timestamp),
        }
        for n, rating in enumerate(case.history)
    ]
    for start in range(0, len(events), batch):
        client.post("/events", json={"events": events[start : start + batch]}).raise_for_status()
    return len(events)


def _search(client: Any, query: str, user_id: str | None) -> list[str]:
    body: dict[str, Any] = {"query": query[:512], "k": DEPTH}
    if user_id is not None:
        body["user_id"] = user_id
    response = client.post("/search", json=body)
    response.raise_for_status()
    return [result["id"] for result in response.json()["results"]]


def evaluate_lift(
    client: Any, cases: Sequence[TagCase], *, run_id: str, name: str = "movielens_tags"
) -> dict[str, Any]:
    """Search with and without the user's profile: metrics of both and their difference."""
    started = time.perf_counter()
    now = time.time()
    anonymous, personal = [], []
    for number, case in enumerate(cases):
        user_id = f"eval-{run_id}-{number}"
        post_history(client, user_id, case, now)
        anonymous.append(target_rank(_search(client, case.query, None), str(case.movie)))
        personal.append(target_rank(_search(client, case.query, user_id), str(case.movie)))
    cutoffs = (10, DEPTH)
    plain = summarize_ranks(anonymous, cutoffs)
    with_profile = summarize_ranks(personal, cutoffs)
    lift = {key: round(float(with_profile[key]) - float(plain[key]), 4) for key in plain if key != "cases"}
    return {
        "runs": {
            "search": {"metrics": plain},
            "personalized_search": {"metrics": with_profile},
        },
        "lift": lift,
        "settings": {
            "data": name,
            "cases": len(cases),
            "engine": "service over HTTP (POST /search)",
            "rating_to_event": {kind: floor for floor, kind in RATING_TYPES},
            "run_id": run_id,
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
