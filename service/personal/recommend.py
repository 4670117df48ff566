"""Recommendations: candidates from the profile, popular items and "bought together", blended.

For a requester with profile ``p`` and decayed evidence ``m``, with
``s = personal_share(m, cap=profile_cap, half_mass=half_mass)``::

    relevance(i) = s · cos(p, v_i) + (1 − s) · popular(i) + b · together(i)

``popular`` is the decayed count divided by the largest (so the best seller scores 1),
``together`` the co-occurrence score of the item with the user's strongest items (best = 1) and
``b`` the ``bought_together_weight``. Without history ``s = 0`` and the list is the popular list;
as evidence accumulates it slides towards the profile, with no switch anywhere. Candidates are
the union of the profile's ANN neighbours, the popular items and the co-occurring items; each
is scored on all three signals (0 where a signal has nothing to say), and the reranker applies
the business rules of the ``recommendations`` surface. Each result names its main ``source``.

With no event at all in the shop, popular is empty: the catalogue's own order (its ``boost``
field first) is the cold-start list, so a new shop still gets an answer.
"""

from __future__ import annotations

import numpy as np

from aisle.index.profile import personal_share
from aisle.service.engine import Engine
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.context import image_profile
from aisle.service.personal.profiles import ProfileService, ProfileView
from aisle.service.ranking.types import Candidates

SOURCES = ("profile", "popular", "bought_together")
#: Strongest profile items used as co-occurrence seeds.
SEED_ITEMS = 20


def _translate(rows: np.ndarray, source: Engine, target: Engine) -> np.ndarray:
    """Rows of ``source``'s version as rows of ``target``'s (dropping items it does not have)."""
    if source is target or source.version == target.version:
        return rows
    ids, row_of = source.index.items.ids, target.index.items.row_of
    mapped = [row_of.get(ids[int(row)]) for row in rows]
    return np.array([row for row in mapped if row is not None], dtype=np.int64)


def recommendation_candidates(
    engine: Engine,
    profiles: ProfileService,
    view: ProfileView | None,
    config: PersonalConfig,
    *,
    n: int,
    exclude_rows: np.ndarray | None = None,
    image_weight: float = 0.0,
) -> Candidates:
    """Scored candidates for one requester (see the module docstring).

    ``image_weight``: share of the image-space profile in the cosine of items with a picture
    (versions with an image space; ``aisle.service.ranking.hybrid``'s ``profile_image_weight``).
    """
    excluded = np.asarray(exclude_rows if exclude_rows is not None else [], dtype=np.int64)
    vector = view.text.vector if view is not None else None
    if vector is not None and view is not None and view.engine.encoder.fingerprint != engine.encoder.fingerprint:
        vector = None  # built with another model: not comparable
    share = 0.0
    if vector is not None and view is not None:
        share = personal_share(view.text.mass, cap=config.profile_cap, half_mass=config.half_mass)

    pools: list[np.ndarray] = []
    if vector is not None:
        found, _ = engine.index.text.ann.search(vector, n + len(excluded))
        pools.append(found)
    counts = None
    popular = profiles.popularity()
    if popular is not None:
        built_for, counts = popular
        top_rows, _ = counts.top(n + len(excluded))
        pools.append(_translate(top_rows, built_for, engine))
        if built_for.version != engine.version:
            counts = None  # rows differ: popularity only nominates candidates until the rebuild
    together_rows, together_score = np.empty(0, np.int64), np.empty(0)
    together = profiles.cooccurrence()
    if view is not None and together is not None and config.bought_together_weight > 0:
        built_for, pairs = together
        weights = view.weight_by_row()
        seeds = dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:SEED_ITEMS])
        rows, scores = pairs.scores(seeds, n + len(excluded))
        if built_for.version == engine.version:
            together_rows, together_score = rows, scores.astype(np.float64)
        pools.append(together_rows)
    if not any(len(pool) for pool in pools):
        return _catalogue_candidates(engine, n + len(excluded))

    rows = np.unique(np.concatenate(pools))
    if len(excluded):
        rows = rows[~np.isin(rows, excluded)]
    vectors = np.asarray(engine.index.text.vectors[rows], dtype=np.float32)
    cosine = (vectors @ vector).astype(np.float64) if vector is not None else np.zeros(len(rows))
    pictures = engine.index.image
    picture_profile = image_profile(view, engine) if view is not None and vector is not None else None
    if picture_profile is not None and pictures is not None and pictures.present is not None and image_weight > 0:
        picture_cosine = (np.asarray(pictures.vectors[rows], dtype=np.float32) @ picture_profile).astype(np.float64)
        cosine = np.where(pictures.present[rows], (1 - image_weight) * cosine + image_weight * picture_cosine, cosine)
    parts = {
        "personal": share * cosine,
        "popular": (1.0 - share) * (counts.scores_of(rows) if counts is not None else np.zeros(len(rows))),
        "bought_together": config.bought_together_weight * _lookup(together_rows, together_score, rows),
    }
    relevance = parts["personal"] + parts["popular"] + parts["bought_together"]
    stacked = np.vstack([parts["personal"], parts["popular"], parts["bought_together"]])
    sources = np.array(SOURCES, dtype=object)[np.argmax(stacked, axis=0)]
    return Candidates(rows=rows, relevance=relevance, parts=parts, sources=sources, vectors=vectors)


def bought_with_item(profiles: ProfileService, engine: Engine, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Items frequently bought together with item ``row`` of ``engine``'s version, best first.

    For the product page: ``(rows, scores)`` with the best score 1.0; empty when the profiles
    are built for another version (during a rebuild) or nothing co-occurs with the item.
    """
    together = profiles.cooccurrence()
    if together is None or together[0].version != engine.version:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return together[1].scores({row: 1.0}, n)


def _catalogue_candidates(engine: Engine, n: int) -> Candidates:
    """The cold-start list of a shop without events: highest ``boost`` first, then file order."""
    items = engine.index.items
    boost = items.boost.astype(np.float64)
    order = np.lexsort((np.arange(len(boost)), -boost))[:n]
    rows = order.astype(np.int64)
    relevance = 1.0 - np.arange(len(rows)) / max(len(rows), 1)
    vectors = np.asarray(engine.index.text.vectors[rows], dtype=np.float32)
    return Candidates(
        rows=rows,
        relevance=relevance,
        parts={"catalogue": relevance.copy()},
        sources=np.full(len(rows), "catalogue", dtype=object),
        vectors=vectors,
    )


def _lookup(rows: np.ndarray, scores: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``scores`` of ``wanted`` rows (0 where absent); ``rows`` need not be sorted."""
    out = np.zeros(len(wanted))
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    at = np.minimum(np.searchsorted(sorted_rows, wanted), len(rows) - 1)
    found = sorted_rows[at] == wanted
    out[found] = scores[order[at[found]]]
    return out
