"""Category and brand affinity: what a user leans towards beyond the catalogue's own mix.

Beside the profile vector (which says what the user's items *read* like), personalized search
boosts products of the categories and brands the user keeps coming back to (the reranker's
``affinity`` rule, ``aisle.service.ranking.scoring``). From the profile's decayed item weights
(``ProfileView.item_weights``, every event type), each raised to ``TEMPER``:

* a category path counts as the bag of its components (``Electronics > Audio`` → electronics,
  audio), so that a user of headphones leans towards audio and electronics too, and a
  catalogue whose category holds several tags (MovieLens genres) works alike;
* the user's share of a component (or brand) ``s`` is ``P(s) = (m(s) + α·c(s)) / (W + α)``,
  with ``m(s)`` the weight of the user's items with ``s``, ``W`` their total weight, ``c(s)``
  the catalogue's share of products with ``s`` and ``α = PRIOR_MASS``: a first purchase moves
  the share only part of the way;
* the lean towards ``s`` is how far that share exceeds the catalogue's, ``(P − c) / (1 − c)``
  clipped to [0, 1]: a category every product has says nothing, and a user who buys what
  everyone buys leans nowhere;
* a product's category affinity is the mean lean over its path's components; its brand
  affinity is the lean towards its brand (none without a brand).

Why tempered weights: the profile's activity half-life (a few events) is right for what the user
wants next, but a taste for a genre or a brand is longer-lived; ``w^TEMPER`` keeps the order of
the weights and stretches their half-life by ``1 / TEMPER``.
"""

from __future__ import annotations

import weakref

import numpy as np

from aisle.index.catalog import CATEGORY_SEPARATOR
from aisle.index.items import ItemTable
from aisle.service.personal.profiles import ProfileView
from aisle.service.ranking.types import UserAffinity

#: Exponent of the profile's item weights (see the module docstring): a taste half-life of about
#: four events where the profile vector's is two. Set by that reasoning, not tuned.
TEMPER = 0.5
#: Pseudo-weight of the catalogue's own mix in the user's shares: one fresh purchase (tempered
#: weight 8^TEMPER ≈ 2.8) moves its share about 40% of the way to the user's. Not tuned either.
PRIOR_MASS = 4.0


class _Vocabulary:
    """One item table's category components and brands, with the catalogue's share of each."""

    def __init__(self, items: ItemTable) -> None:
        rows = len(items.category_codes)
        self.component_of: dict[str, int] = {}
        owners: list[int] = []
        members: list[int] = []
        for code, name in enumerate(items.category_names):
            for part in dict.fromkeys(p.strip() for p in name.split(CATEGORY_SEPARATOR.strip())):
                if part:
                    owners.append(code)
                    members.append(self.component_of.setdefault(part, len(self.component_of)))
        self.owners = np.array(owners, dtype=np.int64)
        self.members = np.array(members, dtype=np.int64)
        categories = len(items.category_names)
        self.parts_per_category = np.bincount(self.owners, minlength=categories).astype(np.float64)
        per_category = np.bincount(items.category_codes, minlength=categories).astype(np.float64)
        self.component_share = np.bincount(
            self.members, weights=per_category[self.owners], minlength=len(self.component_of)
        ) / max(rows, 1)
        self.brand_share = np.bincount(items.brand_codes, minlength=len(items.brand_names)) / max(rows, 1)
        self.blank_brand = items.brand_code_of.get("")


_VOCABULARIES: weakref.WeakKeyDictionary[ItemTable, _Vocabulary] = weakref.WeakKeyDictionary()


def _vocabulary(items: ItemTable) -> _Vocabulary:
    vocabulary = _VOCABULARIES.get(items)
    if vocabulary is None:
        vocabulary = _VOCABULARIES.setdefault(items, _Vocabulary(items))
    return vocabulary


def lean(mass: np.ndarray, total: float, base: np.ndarray, prior: float = PRIOR_MASS) -> np.ndarray:
    """How far the user's smoothed share of each value exceeds the catalogue's, in [0, 1]."""
    share = (mass + prior * base) / (total + prior)
    room = 1.0 - base
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(room > 1e-12, (share - base) / room, 0.0)
    return np.clip(excess, 0.0, 1.0)


def user_affinity(view: ProfileView, items: ItemTable) -> UserAffinity | None:
    """The user's affinities in the codes of ``items`` (the served version), or None without history."""
    return affinity_of(view.index.items, view.weight_by_row(), items)


def affinity_of(source: ItemTable, by_row: dict[int, float], items: ItemTable) -> UserAffinity | None:
    """Affinities from decayed weights of ``source`` rows, in the codes of ``items``.

    ``source`` is the version the profile was built for; when it is not ``items`` (a request
    during a version swap) categories and brands are matched by name.
    """
    rows = np.fromiter(by_row.keys(), dtype=np.int64, count=len(by_row))
    weights = np.fromiter(by_row.values(), dtype=np.float64, count=len(by_row))
    keep = (weights > 0) & np.isfinite(weights)
    rows, weights = rows[keep], weights[keep] ** TEMPER
    total = float(weights.sum())
    if not total > 0:
        return None
    vocabulary = _vocabulary(items)
    categories = len(items.category_names)
    if source is items:
        category_mass = np.bincount(items.category_codes[rows], weights=weights, minlength=categories)
        brands = np.bincount(items.brand_codes[rows], weights=weights, minlength=len(items.brand_names))
        components = np.bincount(
            vocabulary.members, weights=category_mass[vocabulary.owners], minlength=len(vocabulary.component_of)
        )
    else:
        components, brands = _by_name(source, items, vocabulary, rows, weights)
    component_lean = lean(components, total, vocabulary.component_share)
    by_category = np.bincount(vocabulary.owners, weights=component_lean[vocabulary.members], minlength=categories)
    with np.errstate(divide="ignore", invalid="ignore"):
        category = np.where(vocabulary.parts_per_category > 0, by_category / vocabulary.parts_per_category, 0.0)
    brand = lean(brands, total, vocabulary.brand_share)
    if vocabulary.blank_brand is not None:
        brand[vocabulary.blank_brand] = 0.0  # products without a brand share nothing
    return UserAffinity(category=category, brand=brand)


def _by_name(
    source: ItemTable, items: ItemTable, vocabulary: _Vocabulary, rows: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Component and brand masses of ``source`` rows, in the codes of ``items`` (matched by name)."""
    components = np.zeros(len(vocabulary.component_of))
    brands = np.zeros(len(items.brand_names))
    category_mass = np.bincount(source.category_codes[rows], weights=weights, minlength=len(source.category_names))
    for code in np.flatnonzero(category_mass):
        name = source.category_names[code]
        for part in dict.fromkeys(p.strip() for p in name.split(CATEGORY_SEPARATOR.strip())):
            at = vocabulary.component_of.get(part)
            if at is not None:
                components[at] += category_mass[code]
    brand_mass = np.bincount(source.brand_codes[rows], weights=weights, minlength=len(source.brand_names))
    for code in np.flatnonzero(brand_mass):
        served = items.brand_code_of.get(source.brand_names[code])
        if served is not None:
            brands[served] += brand_mass[code]
    return components, brands
