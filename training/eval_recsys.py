"""Next-item recommendation evaluation: HR@k and NDCG@k over the full catalogue.

In process (``ProfileRanker``), each user's history becomes timed events (``aisle.training.timeline``),
the profile is ``aisle.index.profile.profile_from_events`` over the index's stored item vectors — the
function the service computes profiles with — and the catalogue is ranked by cosine to it
through the version's own ANN index, exactly as the service's profile retrieval does. Through
HTTP (``HttpRecommender``) the histories are posted to ``POST /events`` and the service's
``GET /users/{id}/recommendations`` ranks, with whatever blend (profile, popularity, bought
together) and exclusions the service is configured with.

Seen items are *not* masked unless asked (``mask_seen``); the report says which it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import DecayConfig, profile_from_events
from aisle.training.datasets import SequenceCase, SequenceSet
from aisle.training.metrics import summarize_ranks, target_rank
from aisle.training.timeline import Timeline

CUTOFFS = (10, 50)


@dataclass
class RecsysReport:
    """Metrics of one run, and how they were obtained."""

    metrics: dict[str, float | int]
    settings: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "settings": self.settings, "seconds": round(self.seconds, 2)}


class ProfileRanker:
    """Ranks a loaded version's items by cosine to the served profile of a history."""

    def __init__(self, index: LoadedIndex, decay: DecayConfig, timeline: Timeline) -> None:
        self.index = index
        self.decay = decay
        self.timeline = timeline
        self.row_of = index.items.row_of

    def rank(self, case: SequenceCase, depth: int, mask_seen: bool) -> list[str]:
        """Item ids, best first, for a case's history (events on unknown ids are ignored)."""
        keep = [n for n, item in enumerate(case.history) if item in self.row_of]
        rows = [self.row_of[case.history[n]] for n in keep]
        timestamps = [case.timestamps[n] for n in keep] if case.timestamps is not None else None
        types = [case.types[n] for n in keep] if case.types is not None else None
        events, _ = self.timeline.events(rows, timestamps, types, case.now)
        profile = profile_from_events(events, self.index.text.vectors, self.decay)
        if profile.vector is None:
            return []
        seen = set(rows) if mask_seen else set()
        found, _ = self.index.text.ann.search(profile.vector, depth + len(seen))
        ids = self.index.items.ids
        return [ids[int(row)] for row in found if int(row) not in seen][:depth]


def evaluate_profiles(
    index: LoadedIndex,
    data: SequenceSet,
    *,
    decay: DecayConfig,
    timeline: Timeline,
    mask_seen: bool = False,
    limit: int | None = None,
) -> RecsysReport:
    """HR@10/50 and NDCG@10/50 of the profile ranking over ``data.cases``."""
    started = time.perf_counter()
    ranker = ProfileRanker(index, decay, timeline)
    depth = max(CUTOFFS)
    cases = data.cases[:limit] if limit else data.cases
    ranks = [target_rank(ranker.rank(case, depth, mask_seen), case.target) for case in cases]
    return RecsysReport(
        metrics=summarize_ranks(ranks, CUTOFFS),
        settings={
            "engine": "index (profile cosine, index.profile + ANN)",
            "data": data.name,
            "items": len(index),
            "history_items_masked": mask_seen,
            "timeline": {
                "step_s": timeline.step_s,
                "event_type": timeline.event_type,
                "max_events": timeline.max_events,
            },
            "decay": _describe_decay(decay),
            "model": index.manifest.get("model", {}),
        },
        seconds=time.perf_counter() - started,
    )


class HttpRecommender:
    """Posts histories as events and asks a running service for recommendations."""

    def __init__(self, client: Any, run_id: str, timeline: Timeline, batch: int = 500) -> None:
        self.client = client
        self.run_id = run_id
        self.timeline = timeline
        self.batch = batch

    def user_id(self, user: str) -> str:
        return f"eval-{self.run_id}-{user}"

    def post_histories(self, cases: Sequence[SequenceCase], now: float) -> None:
        """One event per history item, shifted so that the next interaction happens at ``now``.

        Untimed histories are spaced ``step_s`` apart, the newest one ``step_s`` before ``now``.
        """
        events: list[dict[str, Any]] = []
        for number, case in enumerate(cases):
            placed, then = self.timeline.events(list(range(len(case.history))), case.timestamps, case.types, case.now)
            for event in placed:
                events.append(
                    {
                        "event_id": f"{self.run_id}-{number}-{event.row}",
                        "user_id": self.user_id(case.user),
                        "item_id": case.history[event.row],
                        "type": event.type,
                        "timestamp": now - (then - event.timestamp),
                    }
                )
        for start in range(0, len(events), self.batch):
            response = self.client.post("/events", json={"events": events[start : start + self.batch]})
            response.raise_for_status()

    def rank(self, case: SequenceCase, depth: int) -> list[str]:
        response = self.client.get(f"/users/{self.user_id(case.user)}/recommendations", params={"k": depth})
        response.raise_for_status()
        return [result["id"] for result in response.json()["results"]]


def evaluate_http(
    client: Any, data: SequenceSet, *, timeline: Timeline, run_id: str, limit: int | None = None
) -> RecsysReport:
    """The same metrics through a running service's API (its own blend and exclusions)."""
    started = time.perf_counter()
    cases = data.cases[:limit] if limit else data.cases
    recommender = HttpRecommender(client, run_id, timeline)
    recommender.post_histories(cases, time.time())
    depth = max(CUTOFFS)
    ranks = [target_rank(recommender.rank(case, depth), case.target) for case in cases]
    return RecsysReport(
        metrics=summarize_ranks(ranks, CUTOFFS),
        settings={
            "engine": "service over HTTP (GET /users/{id}/recommendations)",
            "data": data.name,
            "history_items_masked": "as configured on the service (recommend_exclude)",
            "timeline": {
                "step_s": timeline.step_s,
                "event_type": timeline.event_type,
                "max_events": timeline.max_events,
            },
            "run_id": run_id,
        },
        seconds=time.perf_counter() - started,
    )


def _describe_decay(decay: DecayConfig) -> dict[str, Any]:
    from aisle.index.profile import EVENT_TYPES

    return {
        "decay": decay.decay,
        "weights": {t: decay.weight(t) for t in EVENT_TYPES},
        "half_lives_s": {t: decay.for_type(t).half_life_s for t in EVENT_TYPES},
    }
