"""The vectorised parts of reranking: which candidates may be shown, and the soft-rule scores.

Everything here works on the candidates' arrays at once (NumPy), so that reranking a few
hundred candidates costs microseconds; ``aisle.service.ranking.rerank`` only loops over the k picks.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from aisle.index.items import ItemTable
from aisle.service.ranking.rules import RuleSet
from aisle.service.ranking.types import UserContext


def eligible_mask(rows: np.ndarray, items: ItemTable, ctx: UserContext, rules: RuleSet) -> np.ndarray:
    """Candidates that pass the filtering hard rules: in stock, not excluded, not bought lately."""
    eligible = np.ones(len(rows), dtype=bool)
    if items.removed is not None:  # deleted through the live catalogue: never shown, whatever the rules
        eligible &= ~items.removed[rows]
    if rules.in_stock_only:
        eligible &= items.in_stock[rows]
    excluded = set(rules.exclude_ids)
    if rules.exclude_purchased:
        excluded |= ctx.purchased_recently
    if excluded:
        excluded_rows = [items.row_of[item_id] for item_id in excluded if item_id in items.row_of]
        if excluded_rows:
            eligible &= ~members(rows, excluded_rows)
    return eligible


@dataclass
class SoftScores:
    """Per-candidate boosts and penalties, total and by rule (for explanations)."""

    boosts: np.ndarray
    penalties: np.ndarray
    #: Rule name (``boost:margin``, ``boost:boost``, ``boost:brand``, ``boost:category``,
    #: ``boost:affinity_category``, ``boost:affinity_brand``, ``price_band``) → that rule's
    #: contribution per candidate; only rules that apply.
    by_rule: dict[str, np.ndarray]


def soft_scores(rows: np.ndarray, items: ItemTable, ctx: UserContext, rules: RuleSet) -> SoftScores:
    """Boosts from catalogue fields, brands, categories and the user's affinities; the price-band penalty."""
    count = len(rows)
    by_rule: dict[str, np.ndarray] = {}
    boosts = rules.boosts
    if boosts.margin:
        by_rule["boost:margin"] = boosts.margin * items.margin[rows].astype(np.float64)
    if boosts.boost:
        by_rule["boost:boost"] = boosts.boost * items.boost[rows].astype(np.float64)
    if boosts.brands:
        codes = items.brand_codes[rows]
        total = np.zeros(count)
        for brand, weight in boosts.brands.items():
            code = items.brand_code_of.get(brand.strip().casefold())
            if code is not None:
                total[codes == code] += weight
        by_rule["boost:brand"] = total
    if boosts.categories:
        codes = items.category_codes[rows]
        total = np.zeros(count)
        for prefix, weight in boosts.categories.items():
            total[members(codes, category_codes_under(items, prefix))] += weight
        by_rule["boost:category"] = total
    affinity = ctx.affinity
    if affinity is not None:
        if rules.affinity.category:
            lean = affinity.lookup(affinity.category, items.category_codes[rows])
            by_rule["boost:affinity_category"] = rules.affinity.category * lean
        if rules.affinity.brand:
            lean = affinity.lookup(affinity.brand, items.brand_codes[rows])
            by_rule["boost:affinity_brand"] = rules.affinity.brand * lean
    penalties = np.zeros(count)
    if ctx.price_band is not None and rules.price_band.weight > 0:
        penalties = rules.price_band.weight * price_band_distance(items.price[rows], ctx.price_band)
        by_rule["price_band"] = penalties
    by_rule = {name: values for name, values in by_rule.items() if values.any()}
    total_boosts = np.zeros(count)
    for name, values in by_rule.items():
        if name.startswith("boost:"):
            total_boosts += values
    return SoftScores(total_boosts, penalties, by_rule)


def price_band_distance(prices: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """How far each price lies outside ``band``, in octaves (factors of 2), capped at 1.

    0 inside the band and for items without a price; 1 at half the lower bound or twice the
    upper bound and beyond. Octaves because prices are compared by ratio: 10 € above a 20 €
    band is far, 10 € above a 2,000 € band is not.
    """
    low, high = float(min(band)), float(max(band))
    prices = np.asarray(prices, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        octaves = np.log2(prices)  # NaN without a price
        above = octaves - np.log2(high) if high > 0 else np.zeros_like(octaves)
        below = np.log2(low) - octaves if low > 0 else np.zeros_like(octaves)
        distance = np.fmax(above, below)  # positive outside the band, negative inside
    distance[~(prices > 0)] = 0.0  # no price (or a non-positive one): no penalty
    return np.clip(distance, 0.0, 1.0)


def affinity_mask(rows: np.ndarray, items: ItemTable, ctx: UserContext) -> np.ndarray:
    """Candidates inside the user's strongest affinities (a top category or a top brand)."""
    inside = np.zeros(len(rows), dtype=bool)
    if ctx.top_brands:
        codes = [items.brand_code_of[b.casefold()] for b in ctx.top_brands if b.casefold() in items.brand_code_of]
        inside |= members(items.brand_codes[rows], codes)
    for category in ctx.top_categories:
        inside |= members(items.category_codes[rows], category_codes_under(items, category))
    return inside


#: Per item table: category prefix → codes. Finding the codes scans every category name, which
#: costs more than a whole rerank on a large catalogue; rules and affinities repeat prefixes.
_PREFIX_CODES: weakref.WeakKeyDictionary[ItemTable, OrderedDict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_PREFIX_CACHE_SIZE = 1024


def category_codes_under(items: ItemTable, prefix: str) -> np.ndarray:
    """``items.category_prefix_codes(prefix)``, cached per item table (LRU)."""
    cache = _PREFIX_CODES.get(items)
    if cache is None:
        cache = _PREFIX_CODES.setdefault(items, OrderedDict())
    codes = cache.get(prefix)
    if codes is None:
        codes = items.category_prefix_codes(prefix)
        cache[prefix] = codes
        if len(cache) > _PREFIX_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(prefix)
    return codes


def members(values: np.ndarray, wanted: np.ndarray | list[int]) -> np.ndarray:
    """``np.isin(values, wanted)``, faster for the few wanted values rules and users have."""
    wanted = np.asarray(wanted, dtype=values.dtype if values.dtype.kind in "iu" else np.int64)
    if len(wanted) > 16:
        return np.isin(values, wanted)
    found = np.zeros(len(values), dtype=bool)
    for value in wanted.tolist():
        found |= values == value
    return found
