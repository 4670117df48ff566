"""Filters → allowed rows: semantics of each field, canonical cache keys, the per-version cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.index.catalog import Product
from aisle.index.filters import Filters, filter_mask, select_rows
from aisle.index.items import ItemTable, write_items
from tests.index.conftest import small_products


@pytest.fixture
def items(tmp_path: Path) -> ItemTable:
    products = small_products()
    write_items(tmp_path / "items.parquet", products, [p.content_hash() for p in products])
    return ItemTable.read(tmp_path / "items.parquet")


def ids_of(items: ItemTable, filters: Filters) -> set[str]:
    mask = filter_mask(items, filters)
    assert mask is not None
    return {items.ids[row] for row in np.flatnonzero(mask)}


def expected(predicate) -> set[str]:
    return {p.id for p in small_products() if predicate(p)}


def test_category_prefix_matches_whole_components_case_insensitively(items: ItemTable) -> None:
    kitchen = ids_of(items, Filters(category="home>KITCHEN"))
    assert kitchen == expected(lambda p: p.category in ("Home > Kitchen > Knives", "Home > Kitchen"))
    assert not kitchen & expected(lambda p: p.category == "Home > Kitchenware")
    assert ids_of(items, Filters(category="Home > Kitchen > Knives")) == expected(
        lambda p: p.category == "Home > Kitchen > Knives"
    )
    assert ids_of(items, Filters(category="Home > Kit")) == set()


def test_brand_one_or_several_case_insensitive(items: ItemTable) -> None:
    assert ids_of(items, Filters(brand="acme")) == expected(lambda p: p.brand == "Acme")
    assert ids_of(items, Filters(brand=("ZETA", "omni", "unknown"))) == expected(lambda p: p.brand in ("Zeta", "Omni"))
    assert ids_of(items, Filters(brand="nobody")) == set()


def test_price_bounds_are_inclusive_and_exclude_unpriced(items: ItemTable) -> None:
    assert ids_of(items, Filters(price_min=10, price_max=20)) == expected(
        lambda p: p.price is not None and 10 <= p.price <= 20
    )
    assert ids_of(items, Filters(price_min=0)) == expected(lambda p: p.price is not None)


def test_stock_and_combined_filters(items: ItemTable) -> None:
    assert ids_of(items, Filters(in_stock=True)) == expected(lambda p: p.in_stock)
    assert ids_of(items, Filters(in_stock=False)) == expected(lambda p: not p.in_stock)
    combined = Filters(category="Home", brand=("acme", "zeta"), price_max=30, in_stock=True)
    assert ids_of(items, combined) == expected(
        lambda p: (
            p.category.startswith("Home")
            and p.brand in ("Acme", "Zeta")
            and p.price is not None
            and p.price <= 30
            and p.in_stock
        )
    )


def test_no_constraint_means_no_mask(items: ItemTable) -> None:
    assert filter_mask(items, None) is None
    assert filter_mask(items, Filters()) is None
    assert filter_mask(items, Filters(category=" > ", brand=("", " "))) is None


def test_equal_filters_share_one_cached_selection(items: ItemTable) -> None:
    first = select_rows(items, Filters(category="Home > Kitchen", brand=("Acme", "zeta")))
    again = select_rows(items, Filters(category="home>kitchen", brand=("ZETA", "acme")))
    assert first is again
    assert not first.mask.flags.writeable
    # The plain mask is the caller's own copy: changing it cannot corrupt the cache.
    mask = filter_mask(items, Filters(category="Home > Kitchen", brand=("Acme", "zeta")))
    mask[:] = True
    assert first.count == int(np.count_nonzero(first.mask)) < len(items)


def test_cache_is_bounded(items: ItemTable) -> None:
    for price in range(items.selections.capacity + 10):
        select_rows(items, Filters(price_min=price))
    assert len(items.selections) == items.selections.capacity


def test_products_without_brand_or_category_never_match_those_filters(tmp_path: Path) -> None:
    products = [Product(id="a", title="A"), Product(id="b", title="B", brand="X", category="Y")]
    write_items(tmp_path / "items.parquet", products, [p.content_hash() for p in products])
    table = ItemTable.read(tmp_path / "items.parquet")
    assert ids_of(table, Filters(brand="X")) == {"b"}
    assert ids_of(table, Filters(category="Y")) == {"b"}
