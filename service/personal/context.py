"""From a ``ProfileView`` to what ranking and the profile endpoint need.

* ``user_context``: the ``UserContext`` of a request (profile vector, evidence, price band,
  recent purchases, category and brand affinities), for the index version of the request.
* ``describe_profile``: the ``GET /users/{id}/profile`` body.

Item-level facts are read from the version the profiles were built against (``view.index``),
so a request served by a newer version during a rebuild still gets a coherent context; a
version built with another model gets no profile vector (its space is not comparable).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import EMPTY_PROFILE, EVENT_TYPES, SpaceBinding
from aisle.service.engine import Engine
from aisle.service.personal.profiles import ProfileView
from aisle.service.ranking.types import ANONYMOUS, UserContext

#: Event types whose items define the price band: what people pay (or mean to), not browse.
PRICE_TYPES = ("purchase", "add_to_cart")
PRICE_QUANTILES = (0.1, 0.9)
TOP_AFFINITIES = 3


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles: tuple[float, ...]) -> list[float]:
    """Quantiles of ``values`` where each value counts with its weight (midpoint rule)."""
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cumulative = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return [float(np.interp(q, cumulative, values)) for q in quantiles]


def price_band(view: ProfileView) -> tuple[float, float] | None:
    """The 10th–90th weighted percentile of the prices of items bought or put in the cart."""
    items = view.index.items
    rows, weights = [], []
    for (row, event_type), weight in view.item_weights.items():
        if event_type in PRICE_TYPES and weight > 0 and math.isfinite(items.price[row]):
            rows.append(row)
            weights.append(weight)
    if not rows:
        return None
    low, high = weighted_quantiles(items.price[np.array(rows)], np.array(weights), PRICE_QUANTILES)
    return round(low, 2), round(high, 2)


def purchased_recently(view: ProfileView, window_s: float) -> frozenset[str]:
    """Ids of items purchased within the last ``window_s`` seconds, but for consumables due again."""
    ids = view.index.items.ids
    cutoff = view.now - window_s
    return frozenset(
        ids[row] for row, last in view.last_purchase.items() if last >= cutoff and row not in view.due_again
    )


def affinities(view: ProfileView, field: str, top: int = TOP_AFFINITIES) -> tuple[str, ...]:
    """The ``top`` categories (or brands) with the most decayed weight, strongest first."""
    items = view.index.items
    read = items.category if field == "category" else items.brand
    totals: dict[str, float] = {}
    for row, weight in view.weight_by_row().items():
        value = read(row)
        if value:
            totals[value] = totals.get(value, 0.0) + weight
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(name for name, _ in ranked[:top])


def user_context(view: ProfileView | None, engine: Engine, purchase_window_s: float) -> UserContext:
    """The ranking context of a request served by ``engine``."""
    if view is None:
        return ANONYMOUS
    profile = view.text
    if not view.binding.comparable(SpaceBinding.of(engine.index)):
        profile = EMPTY_PROFILE  # profiles of another model's space are not comparable
    return UserContext(
        image_profile=image_profile(view, engine.index),
        profile=profile.vector,
        mass=profile.mass * view.freshness if profile.vector is not None else 0.0,
        price_band=price_band(view),
        purchased_recently=purchased_recently(view, purchase_window_s),
        top_categories=affinities(view, "category"),
        top_brands=affinities(view, "brand"),
    )


def image_profile(view: ProfileView, index: LoadedIndex) -> np.ndarray | None:
    """The requester's image-space profile, if both versions' image spaces share a model."""
    profile = view.profiles.get("image")
    here, there = index.image, view.index.image
    if profile is None or here is None or there is None or here.fingerprint != there.fingerprint:
        return None
    return profile.vector


def significant(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (old events have tiny weights)."""
    return float(f"{value:.{digits}g}")


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def describe_profile(view: ProfileView | None, user_id: str, top: int = 10) -> dict[str, Any]:
    """What Aisle believes about a user: counts, strongest items with decayed weights, price band."""
    counts = {event_type: 0 for event_type in EVENT_TYPES}
    if view is None:
        return {
            "user_id": user_id,
            "known": False,
            "events": {"total": 0, **counts},
            "evidence": 0.0,
            "top_items": [],
            "price_band": None,
            "top_categories": [],
            "top_brands": [],
            "linked_sessions": 0,
            "first_event": None,
            "last_event": None,
            "spaces": [],
        }
    counts.update(view.counts)
    items = view.index.items
    by_row: dict[int, dict[str, float]] = {}
    for (row, event_type), weight in view.item_weights.items():
        by_row.setdefault(row, {})[event_type] = weight
    ranked = sorted(by_row.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    band = price_band(view)
    return {
        "user_id": user_id,
        "known": True,
        "index_version": view.binding.version,
        "events": {"total": sum(view.counts.values()), **counts},
        "evidence": significant(view.text.mass),
        "top_items": [
            {
                "id": items.ids[row],
                "title": items.titles[row],
                "weight": significant(sum(types.values())),
                "by_type": {event_type: significant(weight) for event_type, weight in sorted(types.items())},
            }
            for row, types in ranked
        ],
        "price_band": None if band is None else {"min": band[0], "max": band[1]},
        "top_categories": list(affinities(view, "category")),
        "top_brands": list(affinities(view, "brand")),
        "linked_sessions": view.linked_sessions,
        "first_event": _iso(view.first_ts),
        "last_event": _iso(view.last_ts),
        "spaces": sorted(name for name, profile in view.profiles.items() if profile.vector is not None),
    }
