"""The distinct_pictures rule: one product per near-duplicate picture group in any list."""

from __future__ import annotations

import numpy as np

from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import Boosts, Exploration, Pin, RuleSet
from aisle.service.ranking.types import ANONYMOUS
from tests.service.ranking.builders import Item, candidates, item_table

RULES = RuleSet(boosts=Boosts(boost=0.0), exploration=Exploration(share=0.0))


def _items():  # type: ignore[no-untyped-def]
    items = item_table([Item(f"i{r}") for r in range(6)])
    # Rows 0, 2 and 4 show one picture; 1, 3, 5 each their own.
    items.set_picture_groups(np.array([0, 1, 0, 3, 0, 5]))
    return items


def ids(hits, items) -> list[str]:  # type: ignore[no-untyped-def]
    return [items.ids[hit.row] for hit in hits]


def test_the_best_of_a_picture_group_stays() -> None:
    items = _items()
    cands = candidates(range(6), [0.5, 0.9, 0.8, 0.7, 0.95, 0.1])
    assert ids(rerank(cands, items, ANONYMOUS, RULES, 6), items) == ["i4", "i1", "i3", "i5"]
    allowed = RULES.model_copy(update={"distinct_pictures": False})
    assert len(rerank(cands, items, ANONYMOUS, allowed, 6)) == 6


def test_a_pinned_product_keeps_its_place_over_a_better_duplicate() -> None:
    items = _items()
    pinned = RULES.model_copy(update={"pins": (Pin(item_id="i0", position=2),)})
    hits = rerank(candidates(range(6), [0.5, 0.9, 0.8, 0.7, 0.95, 0.1]), items, ANONYMOUS, pinned, 6)
    assert ids(hits, items) == ["i1", "i0", "i3", "i5"]


def test_a_product_page_never_offers_its_own_picture() -> None:
    items = _items()
    cands = candidates([1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.95, 0.1])
    hits = rerank(cands, items, ANONYMOUS, RULES, 5, same_picture_as=0)
    assert ids(hits, items) == ["i1", "i3", "i5"]
    only_duplicates = candidates([2, 4], [0.8, 0.9])
    assert rerank(only_duplicates, items, ANONYMOUS, RULES, 5, same_picture_as=0) == []
