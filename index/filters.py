"""Structured filters over a version's items, turned into the set of rows the ANN search may return.

A shop's front end sends the same few filters again and again (a category page, "in stock
only"), so the rows of a filter are computed once per index version and kept in a small LRU
cache on its item table; on a million products that saves several milliseconds per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aisle.index.items import ItemTable
from aisle.index.selection import RowSelection


@dataclass(frozen=True)
class Filters:
    """Hard constraints a result must satisfy.

    Attributes:
        category: a category path prefix, matched per component and case-insensitively
            (``Home > Kitchen`` matches ``Home > Kitchen > Knives``, not ``Home > Kitchenware``).
        brand: one brand or several (any of them), case-insensitive.
        price_min: inclusive lower bound; products without a price never match a price bound.
        price_max: inclusive upper bound.
        in_stock: True keeps products in stock, False those out of stock.
    """

    category: str | None = None
    brand: str | tuple[str, ...] | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def is_empty(self) -> bool:
        """True when no field constrains anything (blank category and brands count as unset)."""
        return self.cache_key() == (None, None, None, None, None)

    def cache_key(self) -> tuple:
        """A canonical, hashable form: equal keys select equal rows."""
        category = _category_parts(self.category) or None
        brands = [self.brand] if isinstance(self.brand, str) else list(self.brand or ())
        brand_key = tuple(sorted({b.strip().casefold() for b in brands if b.strip()})) or None
        return (category, brand_key, self.price_min, self.price_max, self.in_stock)


def select_rows(items: ItemTable, filters: Filters | None) -> RowSelection | None:
    """The rows satisfying every filter (cached per item table), or None when nothing is filtered."""
    if filters is None or filters.is_empty():
        return None
    key = filters.cache_key()
    return items.selections.get_or_compute(key, lambda: _compute_mask(items, key))


def filter_mask(items: ItemTable, filters: Filters | None) -> np.ndarray | None:
    """Rows satisfying every filter as a boolean mask (the caller's own copy), or None.

    ``select_rows`` is the faster form for the ANN search: it hands out the cached selection.
    """
    selection = select_rows(items, filters)
    return None if selection is None else selection.mask.copy()


def _compute_mask(items: ItemTable, key: tuple) -> np.ndarray:
    category, brands, price_min, price_max, in_stock = key
    mask = np.ones(len(items), dtype=bool)
    if category is not None:
        mask &= np.isin(items.category_codes, items.category_prefix_codes(" > ".join(category)))
    if brands is not None:
        codes = [items.brand_code_of[b] for b in brands if b in items.brand_code_of]
        mask &= np.isin(items.brand_codes, np.array(codes, dtype=np.int32))
    # NaN (no price) compares False, so a product without a price never meets a price bound.
    if price_min is not None:
        mask &= items.price >= price_min
    if price_max is not None:
        mask &= items.price <= price_max
    if in_stock is not None:
        mask &= items.in_stock == bool(in_stock)
    return mask


def _category_parts(category: str | None) -> tuple[str, ...]:
    if not category:
        return ()
    return tuple(part.strip().casefold() for part in category.split(">") if part.strip())
