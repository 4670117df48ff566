"""Structured filters over a version's items, turned into a boolean row mask for the ANN search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.items import ItemTable


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
        return all(
            value is None for value in
            (self.category, self.brand, self.price_min, self.price_max, self.in_stock)
        )


def filter_mask(items: ItemTable, filters: Filters | None) -> np.ndarray | None:
    """Rows satisfying every filter, or None when nothing is filtered."""
    if filters is None or filters.is_empty():
        return None
    mask = np.ones(len(items), dtype=bool)
    if filters.category:
        mask &= np.isin(items.category_codes, items.category_prefix_codes(filters.category))
    if filters.brand:
        wanted = [filters.brand] if isinstance(filters.brand, str) else list(filters.brand)
        codes = [items.brand_code_of[b.casefold()] for b in wanted if b.casefold() in items.brand_code_of]
        mask &= np.isin(items.brand_codes, np.array(codes, dtype=np.int32))
    if filters.price_min is not None:
        mask &= items.price >= filters.price_min
    if filters.price_max is not None:
        mask &= items.price <= filters.price_max
    if filters.in_stock is not None:
        mask &= items.in_stock == filters.in_stock
    return mask
