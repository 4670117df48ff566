"""Recommendations: candidates from the profile, popular items and "bought together/after".

For a requester with profile ``p``, evidence ``m`` and freshness ``f`` (``ProfileView``), with
``s = f · personal_share(m, cap=profile_cap, half_mass=half_mass)``::

    relevance(i) = s · (cos(p, v_i) + ℓ · title(i)) + (1 − s) · popular(i) + b · together(i)

``title`` is the BM25 match of the item with the titles of the profile's ``lexical_items``
strongest items (best = 1) and ``ℓ`` the ``lexical_weight``: the words a customer's items share
(brand, line, kind of part) that the averaged vector blurs.
``popular`` is the decayed count divided by the largest (the best seller scores 1),
``together`` the co-occurrence score of the item with the seeds (best = 1; the partners'
partners added with ``second_order_weight``) raised to ``together_exponent``, and ``b`` the
``bought_together_weight``. The seeds are the profile's strongest items plus the request's
context: the items in the cart and the product being viewed. Without history ``s = 0`` and the
list is the popular list; as evidence accumulates it slides towards the profile, with no switch.

Held back: the items in the cart, the product being viewed, and variants of recent purchases (``is_variant``: a candidate
close to an item bought within ``variant_hold_s``, of its brand and category, unless it is what
people buy with it): after an espresso machine, its twin in another colour waits while what is
bought with it comes forward. A customer whose own purchases already hold two variants of one
product (a filament in two colours, a part in two sizes) buys variants: for them nothing is held.
Purchases themselves stay out (the rules' ``exclude_purchased``) except consumables due again
(``repurchase``): those come back at the shop's typical interval, scored like the best
bought-together item (source ``repurchase``).

Candidates are the union of the profile's ANN neighbours, the title matches, the popular items,
the co-occurring items and, when these are fewer than asked (a new shop, a narrow filter), the
catalogue's own order (its ``boost`` field first): always ``k`` results when the filters allow
``k`` items.
``Engine.recommend`` runs them through the reranker like every other surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import SpaceBinding, personal_share
from aisle.index.selection import RowSelection
from aisle.service.personal.collaborative import CollaborativeScorer
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.context import image_profile
from aisle.service.personal.profiles import ProfileService, ProfileView
from aisle.service.ranking.rules import RuleSet, RulesOverride
from aisle.service.ranking.types import Candidates

if TYPE_CHECKING:
    from aisle.service.engine import Engine

SOURCES = ("profile", "popular", "bought_together", "repurchase")
#: Strongest profile items used as co-occurrence seeds.
SEED_ITEMS = 20
#: At most this many of the strongest items' title words are matched, the rarest first, and
#: no more than ``TITLE_POSTINGS`` rows in all (BM25's work grows with them, not with the catalogue).
TITLE_WORDS = 32
TITLE_POSTINGS = 5_000
#: A word in more rows than a ``COMMON_WORD_SHARE``-th of the catalogue (and than
#: ``COMMON_WORD_ROWS``) is too common to match on.
COMMON_WORD_SHARE = 20
COMMON_WORD_ROWS = 50
#: A context item (cart, product page) weighs like the strongest profile item times this.
CONTEXT_SEED_WEIGHT = 1.0


@dataclass(frozen=True)
class PageContext:
    """What the storefront says about the moment of the request (rows of the served version).

    Attributes:
        cart: items in the cart, beside those the events put there.
        viewing: the product on the page being viewed, if any.
    """

    cart: tuple[int, ...] = ()
    viewing: int | None = None


def _translate(rows: np.ndarray, source: LoadedIndex, target: LoadedIndex) -> np.ndarray:
    """Rows of ``source``'s version as rows of ``target``'s (dropping items it does not have)."""
    if source is target or source.version == target.version:
        return np.asarray(rows, dtype=np.int64)
    ids, row_of = source.items.ids, target.items.row_of
    mapped = [row_of.get(ids[int(row)]) for row in rows]
    return np.array([row for row in mapped if row is not None], dtype=np.int64)


@dataclass
class RecommendationSource:
    """One request's recommendation candidates: the ``Engine.recommend`` candidate source.

    Built by ``for_request`` from the requester's profile view and context; the engine asks it
    for candidates within the filter's selection and without the rows rules exclude.
    """

    profiles: ProfileService
    config: PersonalConfig
    view: ProfileView | None
    context: PageContext = field(default_factory=PageContext)
    held_back: tuple[int, ...] = ()
    #: Share of the image-space profile in the cosine of items with a picture (versions with an
    #: image space; ``aisle.service.ranking.hybrid``'s ``profile_image_weight``).
    image_weight: float = 0.0
    #: The served model's collaborative vectors, if it has them (``collaborative_weight``).
    collaborative: CollaborativeScorer | None = None

    @classmethod
    def for_request(
        cls, profiles: ProfileService, config: PersonalConfig, view: ProfileView | None, context: PageContext
    ) -> RecommendationSource:
        return cls(profiles, config, view, context)

    def candidates(
        self, index: LoadedIndex, *, n: int, selection: RowSelection | None, exclude_rows: np.ndarray
    ) -> Candidates:
        """Scored candidates for ``index``'s version (see the module docstring)."""
        view, config = self.view, self.config
        binding = SpaceBinding.of(index)
        same_rows = view is not None and view.binding.same_rows(binding)
        mask = selection.mask if selection is not None else None
        # Never the cart's items, nor the product on the page being viewed.
        shown = set(self.context.cart)
        if self.context.viewing is not None:
            shown.add(self.context.viewing)
        if same_rows and view is not None:
            shown.update(view.in_cart)
        excluded = np.unique(np.concatenate([np.asarray(exclude_rows, np.int64), np.fromiter(shown, np.int64)]))
        wanted = n + len(excluded)

        vector = view.text.vector if view is not None else None
        if vector is not None and view is not None and not view.binding.comparable(binding):
            vector = None
        share = 0.0
        if vector is not None and view is not None:
            share = view.freshness * personal_share(view.text.mass, cap=config.profile_cap, half_mass=config.half_mass)

        pools: list[np.ndarray] = []
        if vector is not None:
            found, _ = index.text.ann.search(vector, wanted, selection)
            pools.append(found)
        lexical_rows, lexical_score = self._title_match(index, wanted, selection, same_rows and vector is not None)
        pools.append(lexical_rows)
        counts = None
        popular = self.profiles.popularity()
        if popular is not None:
            built_for, counts = popular
            top_rows, _ = counts.top(wanted if mask is None else max(wanted, 4 * wanted))
            pools.append(_translate(top_rows, built_for, index))
            if built_for.version != index.version:
                counts = None  # rows differ: popularity only nominates candidates until the rebuild
        together_rows, together_score = self._together(index, wanted, same_rows)
        pools.append(together_rows)
        due = np.fromiter(view.due_again, np.int64) if same_rows and view is not None else np.empty(0, np.int64)
        pools.append(due)
        learnt = self._collaborative(index, same_rows)
        if len(learnt):
            pools.append(np.argsort(-learnt, kind="stable")[:wanted])

        rows = np.unique(np.concatenate(pools)) if pools else np.empty(0, np.int64)
        if mask is not None:
            rows = rows[mask[rows]]
        if len(excluded):
            rows = rows[~np.isin(rows, excluded)]
        if len(rows) < n:
            rows = np.union1d(rows, _catalogue_rows(index, n - len(rows), mask, np.union1d(excluded, rows)))
        rows = rows.astype(np.int64)
        vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
        rows, vectors = self._without_variants(index, rows, vectors, np.union1d(together_rows, due), same_rows)
        cosine = (vectors @ vector).astype(np.float64) if vector is not None else np.zeros(len(rows))
        if len(lexical_rows):
            cosine += config.lexical_weight * _lookup(lexical_rows, lexical_score, rows)
        pictures = index.image
        picture_profile = image_profile(view, index) if view is not None and vector is not None else None
        if picture_profile is not None and pictures is not None and pictures.present is not None:
            if self.image_weight > 0:
                picture_cosine = (np.asarray(pictures.vectors[rows], dtype=np.float32) @ picture_profile).astype(
                    np.float64
                )
                weight = self.image_weight
                cosine = np.where(pictures.present[rows], (1 - weight) * cosine + weight * picture_cosine, cosine)
        popular_score = counts.scores_of(rows) if counts is not None else np.zeros(len(rows))
        parts = {
            "personal": share * cosine,
            "popular": (1.0 - share) * popular_score,
            "bought_together": config.bought_together_weight * _lookup(together_rows, together_score, rows),
            "repurchase": config.bought_together_weight * np.isin(rows, due),
        }
        if len(learnt):
            parts["collaborative"] = config.collaborative_weight * learnt[rows]
        names = [
            name for name in ("personal", "popular", "bought_together", "repurchase", "collaborative") if name in parts
        ]
        stacked = np.vstack([parts[name] for name in names])
        # A learnt next-item score is personal: it is reported as the profile's.
        sources = np.array((*SOURCES, "profile"), dtype=object)[np.argmax(stacked, axis=0)]
        sources[parts["repurchase"] > 0] = "repurchase"  # say why a bought item is back
        relevance = stacked.sum(axis=0)
        backfill = ~(stacked > 0).any(axis=0)
        if backfill.any():  # nothing to say about them: the catalogue's order, below the rest
            sources[backfill] = "catalogue"
            relevance[backfill] = 1e-6 * _catalogue_order(index, rows[backfill])
        if not stacked.any():  # a shop without events: the catalogue's order
            relevance = _catalogue_order(index, rows)
            parts = {"catalogue": relevance.copy()}
            sources = np.full(len(rows), "catalogue", dtype=object)
        return Candidates(rows=rows, relevance=relevance, parts=parts, sources=sources, vectors=vectors)

    def _strongest(self, n: int) -> list[int]:
        """The rows of the profile's ``n`` strongest items, strongest first (ties by row)."""
        if self.view is None:
            return []
        weights = self.view.weight_by_row()
        return [row for row, _ in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def _title_match(
        self, index: LoadedIndex, wanted: int, selection: RowSelection | None, usable: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose text matches the titles of the customer's strongest items: ``(rows, BM25 / best)``.

        The brand, model and category words of what a customer chose say things an averaged text
        vector blurs (people buy the same brand, the same line, the same kind of part again).
        """
        empty = np.empty(0, np.int64), np.empty(0)
        if not usable or self.config.lexical_weight <= 0:
            return empty
        lexical = index.lexical
        words: dict[str, int] = {}
        for row in self._strongest(self.config.lexical_items):
            for token in lexical.tokens(index.items.product(row).title):
                # Words only: the analyser splits "32w" into "32w", "32" and "w" again, and
                # the pieces are among the commonest tokens.
                if token.isalpha() and token not in words:
                    words[token] = lexical.document_frequency(token)
        # The rarest words say the most and cost the least: common words add little to BM25
        # and most of its work.
        common = max(COMMON_WORD_ROWS, len(index.items) // COMMON_WORD_SHARE)
        chosen: list[str] = []
        postings = 0
        for frequency, token in sorted((f, t) for t, f in words.items() if 1 < f <= common)[:TITLE_WORDS]:
            if chosen and postings + frequency > TITLE_POSTINGS:
                break
            chosen.append(token)
            postings += frequency
        if not chosen:
            return empty
        rows, scores = lexical.top(" ".join(chosen), wanted, selection)
        if not len(rows):
            return empty
        scores = np.asarray(scores, dtype=np.float64)
        return np.asarray(rows, dtype=np.int64), scores / scores[0]

    def _collaborative(self, index: LoadedIndex, same_rows: bool) -> np.ndarray:
        """Relative next-item scores of every row from the collaborative vectors (empty without)."""
        if self.collaborative is None or self.config.collaborative_weight <= 0 or not same_rows or self.view is None:
            return np.empty(0)
        return self.collaborative.scores(
            index, self.view.weight_by_row(), self.view.last_purchase, self.config.collaborative_temperature
        )

    def _together(self, index: LoadedIndex, wanted: int, same_rows: bool) -> tuple[np.ndarray, np.ndarray]:
        """Items bought with or after the seeds: the profile's strongest items and the context."""
        together = self.profiles.cooccurrence()
        empty = np.empty(0, np.int64), np.empty(0)
        if together is None or self.config.bought_together_weight <= 0:
            return empty
        built_for, pairs = together
        if built_for.version != index.version:
            return empty
        seeds: dict[int, float] = {}
        if same_rows and self.view is not None:
            weights = self.view.weight_by_row()
            seeds = {row: weights[row] for row in self._strongest(SEED_ITEMS)}
        strongest = max(seeds.values(), default=1.0) * CONTEXT_SEED_WEIGHT
        for row in (*self.context.cart, *((self.context.viewing,) if self.context.viewing is not None else ())):
            seeds[row] = seeds.get(row, 0.0) + strongest
        if not seeds:
            return empty
        rows, scores = pairs.scores(seeds, wanted, second_order=self.config.second_order_weight)
        return rows, scores.astype(np.float64) ** self.config.together_exponent

    def _without_variants(
        self, index: LoadedIndex, rows: np.ndarray, vectors: np.ndarray, together: np.ndarray, same_rows: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drops near-duplicates of items bought within the purchase window (not bought-together ones)."""
        view = self.view
        if view is None or not same_rows or not view.last_purchase or not len(rows):
            return rows, vectors
        cutoff = view.now - self.config.variant_hold_s
        bought = np.array([row for row, when in view.last_purchase.items() if when >= cutoff], dtype=np.int64)
        if not len(bought) or buys_variants(index, view.last_purchase, self.config.variant_similarity):
            return rows, vectors
        bought_vectors = np.asarray(index.text.vectors[bought], dtype=np.float32)
        similarity = vectors @ bought_vectors.T
        closest = similarity.argmax(axis=1)
        variant = np.array(
            [
                is_variant(index, int(row), int(bought[at]), float(similarity[i, at]), self.config.variant_similarity)
                for i, (row, at) in enumerate(zip(rows, closest))
            ],
            dtype=bool,
        )
        keep = ~variant | np.isin(rows, together)
        self.held_back = tuple(int(row) for row in rows[~keep])
        return rows[keep], vectors[keep]


#: Without a brand or category to compare, only near-duplicates this close count as variants.
NEAR_DUPLICATE = 0.97


def is_variant(index: LoadedIndex, row: int, bought: int, cosine: float, threshold: float) -> bool:
    """``row`` is a variant of ``bought``: the same product in another colour, size or pack.

    Close in meaning (``threshold``) and of the same brand and category where the catalogue
    gives them; a catalogue without either needs a near-duplicate (``NEAR_DUPLICATE``).
    """
    if cosine < threshold:
        return False
    items = index.items
    known = False
    for read in (items.brand, items.category):
        mine, theirs = read(row), read(bought)
        if mine and theirs:
            if mine.casefold() != theirs.casefold():
                return False
            known = True
    return known or cosine >= max(threshold, NEAR_DUPLICATE)


#: ``buys_variants`` looks at this many of the customer's latest purchases.
VARIANT_HISTORY = 100


def buys_variants(index: LoadedIndex, last_purchase: dict[int, float], threshold: float) -> bool:
    """Whether two of the customer's latest purchases are variants of one product (``is_variant``).

    Such a customer buys a product in several colours, sizes or packs: its variants are what they
    buy next, not substitutes for what they have.
    """
    latest = sorted(last_purchase, key=lambda row: (-last_purchase[row], row))[:VARIANT_HISTORY]
    rows = np.array([row for row in latest if row < len(index)], dtype=np.int64)
    if len(rows) < 2:
        return False
    vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
    # Only the pairs close enough in meaning are checked against brand and category.
    first, second = np.nonzero(np.triu(vectors @ vectors.T >= threshold, k=1))
    similarity = np.einsum("ij,ij->i", vectors[first], vectors[second])
    return any(
        is_variant(index, int(rows[a]), int(rows[b]), float(cosine), threshold)
        for a, b, cosine in zip(first, second, similarity)
    )


def recommendation_rules(
    rules_for: Callable[[RulesOverride | None], RuleSet],
    config: PersonalConfig,
    view: ProfileView | None,
    engine: Engine,
) -> RuleSet:
    """The ``recommendations`` rules with the ``recommend_exclude`` setting applied on top.

    ``rules_for(override)``: the surface's rules for this request (campaigns and an
    experiment's variant included) with ``override`` on top.
    """
    if config.exclude == "none":
        return rules_for(RulesOverride(exclude_purchased=False))
    rules = rules_for(None)
    if config.exclude == "interacted" and view is not None and view.binding.version == engine.version:
        ids = engine.index.items.ids
        seen = tuple(ids[row] for row in view.weight_by_row())
        rules = rules.model_copy(update={"exclude_ids": (*rules.exclude_ids, *seen)})
    return rules


def user_together(
    profiles: ProfileService, view: ProfileView, engine: Engine, n: int = 200
) -> tuple[np.ndarray, np.ndarray] | None:
    """Items bought with or after the requester's strongest items, for search and similar items.

    None when the pairs or the profile belong to another version than ``engine``'s.
    """
    together = profiles.cooccurrence()
    if together is None or together[0].version != engine.version or view.binding.version != engine.version:
        return None
    weights = view.weight_by_row()
    seeds = dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:SEED_ITEMS])
    rows, scores = together[1].scores(seeds, n)
    return (rows, scores.astype(np.float64)) if len(rows) else None


def bought_with_item(profiles: ProfileService, index: LoadedIndex, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Items bought together with (or after) item ``row`` of ``index``'s version, best first.

    For the product page: ``(rows, scores)`` with the best score 1.0; empty when the profiles
    are built for another version (during a rebuild) or nothing co-occurs with the item.
    """
    together = profiles.cooccurrence()
    if together is None or together[0].version != index.version:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return together[1].scores({row: 1.0}, n)


def _catalogue_rows(index: LoadedIndex, n: int, mask: np.ndarray | None, excluded: np.ndarray) -> np.ndarray:
    """Up to ``n`` rows in the catalogue's own order (highest ``boost`` first, then file order)."""
    boost = index.items.boost.astype(np.float64)
    order = np.lexsort((np.arange(len(boost)), -boost))
    if mask is not None:
        order = order[mask[order]]
    if len(excluded):
        order = order[~np.isin(order, excluded)]
    return order[:n].astype(np.int64)


def _catalogue_order(index: LoadedIndex, rows: np.ndarray) -> np.ndarray:
    """Relevance in the catalogue's order: 1 for the first, falling linearly."""
    boost = index.items.boost.astype(np.float64)[rows]
    rank = np.empty(len(rows))
    rank[np.lexsort((rows, -boost))] = np.arange(len(rows))
    return 1.0 - rank / max(len(rows), 1)


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
