"""The one reranker: hard rules, soft rules, MMR diversity, exploration and explanations.

``rerank`` turns a few hundred candidates into the k results of a response, in four steps:

1. **Eligibility** (hard): duplicates are merged (the best relevance counts); of products whose
   pictures are near-duplicates (``ItemTable.picture_groups``, with ``distinct_pictures``) only
   the best is kept, a pinned one first, and on a product page (``same_picture_as``) none that
   shows the page's own picture; out-of-stock items
   (``in_stock_only``), ``exclude_ids`` and, with ``exclude_purchased``, the user's recent
   purchases are removed. Nothing removed here is ever shown, pins included: a pinned item that
   is out of stock stays hidden (pin it again with ``in_stock_only: false`` to override).
2. **Soft scores**: ``base = relevance + boosts − penalties`` (``aisle.service.ranking.scoring``).
3. **Pins** (hard): each applicable pin (``RuleSet.pins_for``) whose item is an eligible
   candidate takes its position, in position order, first rule first; a pin that would break a
   cap given the pins already placed is dropped. The service adds pinned items to the
   candidates (``aisle.service.ranking.hybrid``), so a pin works even when retrieval missed its item.
4. **Greedy fill**, position by position: a pinned slot gets its pin; an exploration slot gets a
   seeded random pick among the ``exploration.pool`` best candidates outside the user's
   affinities (if any fits); any other slot gets the candidate maximising the MMR score
   ``base − δ·max(0, max cosine to the items already placed)`` with ``δ = (1 − λ)/λ``, which
   orders exactly as MMR's ``λ·base − (1 − λ)·max_sim`` does. Caps are hard: a candidate whose
   brand (category) already has ``max`` items within the cap's first ``within`` positions is
   skipped there. When nothing fits a position, the next pin is pulled forward into it; when
   no pin is left either, the list ends: a list never has holes, and never breaks a cap.

Exploration slots: ``share · k`` on average (the fractional part decides one more slot with the
request's generator), never the first position, only for users with affinities. The generator
is seeded by a hash of the request id, so a request id always gets the same list.

Each result's score is ``final = relevance + boosts − penalties − diversity`` (relevance being
``semantic + lexical + personal``, and ``image`` on a version with an image space, plus ``other``
when retrieval's parts do not add up). With
``explain`` each result carries those parts, ``relevance_rank`` (its rank by relevance among
eligible candidates, 1-based), ``position`` and ``rules``: the rules that changed its score
(``boost:*``, ``price_band``, ``diversity``), placed it (``pin``, ``exploration``), or moved it
up by withholding a better candidate (``cap:brand``, ``cap:category``); a result the user's
affinities lifted also carries ``affinity`` (the category and brand parts of its boosts).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np

from aisle.index.items import ItemTable
from aisle.service.ranking.caps import CapTracker
from aisle.service.ranking.rules import RuleSet
from aisle.service.ranking.scoring import SoftScores, affinity_mask, eligible_mask, soft_scores
from aisle.service.ranking.types import Candidates, Hit, UserContext

RELEVANCE_PARTS = ("semantic", "lexical", "personal")
#: Parts reported only when retrieval produced them (a version with an image space).
OPTIONAL_PARTS = ("image",)


def request_rng(request_id: str) -> random.Random:
    """A generator seeded by the request id (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def rerank(
    candidates: Candidates,
    items: ItemTable,
    ctx: UserContext,
    rules: RuleSet,
    k: int,
    *,
    request_id: str = "",
    explain: bool = False,
    item_vectors: np.ndarray | None = None,
    query: str | None = None,
    category: str | None = None,
    depth: int | None = None,
    same_picture_as: int | None = None,
) -> list[Hit]:
    """The top ``k`` of ``candidates`` under ``rules`` (see the module docstring).

    Args:
        candidates: rows of the index version of ``items`` with their relevance and its parts.
        items: the version's item table (stock, prices, margins, brands, categories).
        ctx: the requesting user (price band, purchases, affinities).
        rules: the effective rules of this request.
        k: how many results at most.
        request_id: seeds exploration.
        explain: attach the parts of each score.
        item_vectors: the version's vectors, read for diversity when ``candidates.vectors`` is
            None.
        query: the search query, for query pins.
        category: the request's category, for category pins.
        depth: the length of the list the ``k`` results begin (default ``k``): pins, caps and
            exploration slots are planned for ``depth`` positions, so that the first ``k`` equal
            the first ``k`` of ``rerank(..., depth)`` and pages can be slices of one list.
        same_picture_as: the row whose page the list is shown on (similar items): products
            with a near-duplicate of its picture are left out.

    Raises:
        ValueError: diversity is asked for (λ < 1) but no vectors are available.
    """
    if k <= 0 or len(candidates) == 0:
        return []
    pinned_rows = {items.row_of[pin.item_id] for pin in rules.pins_for(query, category) if pin.item_id in items.row_of}
    state = _prepare(candidates, items, ctx, rules, item_vectors, pinned_rows, same_picture_as)
    if state is None:
        return []
    rows, base = state.rows, state.base
    plan = max(k, depth or k)
    caps = CapTracker(rules.caps, items, rows, plan)
    pin_at = _place_pins(rules, items, state, caps, plan, query, category)
    explore_at, rng = _exploration_slots(ctx, rules, plan, pin_at, request_id)
    outside = ~affinity_mask(rows, items, ctx) if explore_at else None

    delta = (1.0 - rules.diversity.lambda_) / rules.diversity.lambda_
    # score[i] is candidate i's current MMR score; ``gone`` is 0, or -inf once i is placed or
    # reserved for a pin, and is added back whenever the scores are recomputed.
    gone = np.zeros(len(rows))
    gone[list(pin_at.values())] = -np.inf
    score = base + gone
    max_sim = np.zeros(len(rows))
    pending_pins = sorted(pin_at.items())
    picks: list[tuple[int, float, list[str]]] = []
    for position in range(k):
        how: list[str] = []
        choice = None
        if pending_pins and pending_pins[0][0] == position:
            choice = pending_pins.pop(0)[1]
            how.append("pin")
        elif position in explore_at and outside is not None and rng is not None:
            blocked = caps.blocked(position)
            allowed = np.isfinite(score) & outside
            choice = _explore_pick(allowed if blocked is None else allowed & ~blocked, rules, rng)
            if choice is not None:
                how.append("exploration")
                caps.add(choice, position)
        if choice is None:
            blocked = caps.blocked(position)
            masked = score if blocked is None else np.where(blocked, -np.inf, score)
            best = int(np.argmax(masked))
            if masked[best] > -np.inf:
                choice = best
                if explain and blocked is not None:
                    how.extend(caps.withheld(position, int(np.argmax(score)), choice))
                caps.add(choice, position)
            else:
                choice, dropped = _pull_pin_forward(pending_pins, caps, position)
                # A pin that cannot move here competes as a plain candidate from now on.
                gone[dropped] = 0.0
                score[dropped] = base[dropped] - delta * max_sim[dropped]
                if choice is None:
                    break
                how.append("pin")
        picks.append((choice, delta * float(max_sim[choice]), how))
        gone[choice] = score[choice] = -np.inf
        if delta and state.vectors is not None:
            np.maximum(max_sim, state.similarities(choice), out=max_sim)
            np.multiply(max_sim, -delta, out=score)
            score += base
            score += gone
    return _hits(state, picks, explain)


class _State:
    """The eligible candidates, sorted by base score (descending, then row), and their parts."""

    def __init__(
        self,
        rows: np.ndarray,
        relevance: np.ndarray,
        parts: dict[str, np.ndarray],
        soft: SoftScores,
        vectors: np.ndarray | None,
        vector_index: np.ndarray | None,
        sources: np.ndarray | None,
    ) -> None:
        self.rows = rows
        self.relevance = relevance
        self.parts = parts
        self.soft = soft
        self.base = relevance + soft.boosts - soft.penalties
        # The vectors of the candidates as given (not gathered: a copy costs more than the
        # similarities it would serve); ``vector_index[i]`` is eligible candidate i's row there.
        self.vectors = vectors
        self.vector_index = vector_index
        self.sources = sources

    def similarities(self, choice: int) -> np.ndarray:
        """Cosine of every eligible candidate with candidate ``choice``."""
        assert self.vectors is not None and self.vector_index is not None
        return (self.vectors @ self.vectors[self.vector_index[choice]])[self.vector_index]

    def index_of(self, row: int) -> int | None:
        """The candidate index of ``row``, or None if it is not an eligible candidate."""
        found = np.flatnonzero(self.rows == row)
        return int(found[0]) if len(found) else None

    def relevance_ranks(self, chosen: np.ndarray) -> list[int]:
        """1-based ranks by relevance alone (ties by row) of the candidates ``chosen``."""
        order = np.lexsort((self.rows, -self.relevance))
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(1, len(order) + 1)
        return ranks[chosen].tolist()


def _prepare(
    candidates: Candidates,
    items: ItemTable,
    ctx: UserContext,
    rules: RuleSet,
    item_vectors: np.ndarray | None,
    pinned_rows: set[int] = frozenset(),  # type: ignore[assignment]
    same_picture_as: int | None = None,
) -> _State | None:
    rows = np.asarray(candidates.rows, dtype=np.int64)
    relevance = np.asarray(candidates.relevance, dtype=np.float64)
    keep = eligible_mask(rows, items, ctx, rules)
    # One entry per row: order by row, best relevance first, and keep each row's first entry.
    by_row = np.lexsort((-relevance, rows))
    first = np.r_[True, rows[by_row][1:] != rows[by_row][:-1]]
    keep_index = by_row[first & keep[by_row]]
    if len(keep_index) == 0:
        return None
    rows, relevance = rows[keep_index], relevance[keep_index]
    soft = soft_scores(rows, items, ctx, rules)
    # Most products share their picture with none: only candidates that do need the work.
    if items.picture_shared is not None and rules.distinct_pictures:
        shared = items.picture_shared[rows]
        if shared.any():
            distinct = _distinct_pictures(
                rows, relevance + soft.boosts - soft.penalties, shared, items, pinned_rows, same_picture_as
            )
            if not distinct.all():
                keep_index, rows, relevance = keep_index[distinct], rows[distinct], relevance[distinct]
                soft.boosts, soft.penalties = soft.boosts[distinct], soft.penalties[distinct]
                soft.by_rule = {name: values[distinct] for name, values in soft.by_rule.items()}
                if len(rows) == 0:  # everything showed the product page's own picture
                    return None
    order = np.lexsort((rows, -(relevance + soft.boosts - soft.penalties)))
    index = keep_index[order]
    rows, relevance = rows[order], relevance[order]
    soft.boosts, soft.penalties = soft.boosts[order], soft.penalties[order]
    soft.by_rule = {name: values[order] for name, values in soft.by_rule.items()}
    parts = {name: np.asarray(values, dtype=np.float64)[index] for name, values in candidates.parts.items()}
    vectors, vector_index = None, None
    if rules.diversity.lambda_ < 1.0:
        if candidates.vectors is not None:
            vectors, vector_index = np.asarray(candidates.vectors, dtype=np.float32), index
        elif item_vectors is not None:
            vectors, vector_index = np.asarray(item_vectors[rows], dtype=np.float32), np.arange(len(rows))
        else:
            raise ValueError("diversity (lambda < 1) needs the candidates' vectors: pass item_vectors")
    sources = np.asarray(candidates.sources)[index] if candidates.sources is not None else None
    return _State(rows, relevance, parts, soft, vectors, vector_index, sources)


def _distinct_pictures(
    rows: np.ndarray,
    base: np.ndarray,
    shared: np.ndarray,
    items: ItemTable,
    pinned_rows: set[int],
    page_row: int | None,
) -> np.ndarray:
    """Mask keeping one candidate per near-duplicate picture group: a pinned one, else the best.

    Only the ``shared`` candidates (whose picture has a near-duplicate somewhere) can be dropped.
    Candidates showing the picture of ``page_row`` (the product page's own) are all dropped.
    """
    assert items.picture_groups is not None
    keep = np.ones(len(rows), dtype=bool)
    at = np.flatnonzero(shared)
    candidate_groups = items.picture_groups[rows[at]]
    pinned = np.isin(rows[at], np.fromiter(pinned_rows, dtype=np.int64)) if pinned_rows else np.zeros(len(at), bool)
    # Order: pinned first, then by base score (descending); the first of each group stays.
    order = np.lexsort((rows[at], -base[at], ~pinned))
    first = np.zeros(len(at), dtype=bool)
    _, first_at = np.unique(candidate_groups[order], return_index=True)
    first[order[first_at]] = True
    if page_row is not None:
        first &= (candidate_groups != items.picture_groups[page_row]) | pinned
    keep[at] = first
    return keep


def _place_pins(
    rules: RuleSet,
    items: ItemTable,
    state: _State,
    caps: CapTracker,
    k: int,
    query: str | None,
    category: str | None,
) -> dict[int, int]:
    """Position → candidate index of every pin honoured (see step 3 of the module docstring)."""
    pin_at: dict[int, int] = {}
    pinned: set[int] = set()
    for pin in sorted(rules.pins_for(query, category), key=lambda p: p.position):
        position = pin.position - 1
        row = items.row_of.get(pin.item_id)
        choice = state.index_of(row) if row is not None else None
        if position >= k or position in pin_at or choice is None or choice in pinned:
            continue
        if not caps.allows(choice, position):
            continue
        caps.add(choice, position)
        pin_at[position] = choice
        pinned.add(choice)
    return pin_at


def _pull_pin_forward(pending: list[tuple[int, int]], caps: CapTracker, position: int) -> tuple[int | None, list[int]]:
    """The next pin that fits ``position`` (nothing else does), and the pins skipped for it."""
    dropped: list[int] = []
    while pending:
        planned, choice = pending.pop(0)
        if caps.move(choice, planned, position):
            return choice, dropped
        caps.remove(choice, planned)
        dropped.append(choice)
    return None, dropped


def _exploration_slots(
    ctx: UserContext, rules: RuleSet, k: int, pin_at: dict[int, int], request_id: str
) -> tuple[set[int], random.Random | None]:
    """The exploration positions, and the generator that will pick their items."""
    share = rules.exploration.share
    if share <= 0 or k < 2 or not (ctx.top_categories or ctx.top_brands):
        return set(), None
    rng = request_rng(request_id)
    expected = share * k
    count = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
    free = [position for position in range(1, k) if position not in pin_at]
    return set(rng.sample(free, min(count, len(free)))), rng


def _explore_pick(allowed: np.ndarray, rules: RuleSet, rng: random.Random) -> int | None:
    pool = np.flatnonzero(allowed)
    if len(pool) == 0:
        return None
    if len(pool) > rules.exploration.pool:
        # Candidates are sorted by base score, so the first indexes are the most relevant.
        pool = pool[: rules.exploration.pool]
    return int(pool[rng.randrange(len(pool))])


def _hits(state: _State, picks: list[tuple[int, float, list[str]]], explain: bool) -> list[Hit]:
    """The hits of the placed candidates, in order (one NumPy gather per column, not per hit)."""
    if not picks:
        return []
    chosen = np.array([choice for choice, _, _ in picks], dtype=np.int64)
    diversity = np.array([value for _, value, _ in picks], dtype=np.float64)
    rows = state.rows[chosen].tolist()
    finals = (state.base[chosen] - diversity).tolist()
    if not explain:
        return [Hit(row, final) for row, final in zip(rows, finals)]
    count = len(chosen)
    reported = RELEVANCE_PARTS + tuple(name for name in OPTIONAL_PARTS if name in state.parts)
    parts = {name: state.parts[name][chosen].tolist() if name in state.parts else [0.0] * count for name in reported}
    relevance = state.relevance[chosen].tolist()
    boosts = state.soft.boosts[chosen].tolist()
    penalties = state.soft.penalties[chosen].tolist()
    applied = {name: (values[chosen] != 0).tolist() for name, values in state.soft.by_rule.items()}
    ranks = state.relevance_ranks(chosen)
    affinity = [name for name in ("category", "brand") if f"boost:affinity_{name}" in state.soft.by_rule]
    hits = []
    for n, (row, final) in enumerate(zip(rows, finals)):
        details: dict[str, Any] = {name: round(parts[name][n], 6) for name in reported}
        residual = relevance[n] - sum(parts[name][n] for name in reported)
        if abs(residual) > 1e-9:
            details["other"] = round(residual, 6)
        rules = picks[n][2] + [name for name, flags in applied.items() if flags[n]]
        if diversity[n] > 0:
            rules.append("diversity")
        details.update(
            {
                "relevance": round(relevance[n], 6),
                "boosts": round(boosts[n], 6),
                "penalties": round(penalties[n], 6),
                "diversity": round(float(diversity[n]), 6),
                "final": round(final, 6),
                "relevance_rank": ranks[n],
                "position": n + 1,
                "rules": rules,
            }
        )
        leaning = {name: round(float(state.soft.by_rule[f"boost:affinity_{name}"][chosen[n]]), 6) for name in affinity}
        if any(leaning.values()):
            details["affinity"] = leaning
        if state.sources is not None:
            details["retrieved_by"] = str(state.sources[int(chosen[n])])
        hits.append(Hit(row, final, details))
    return hits
