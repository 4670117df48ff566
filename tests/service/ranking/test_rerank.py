"""Unit tests of the reranker: each rule's effect, explanations, exploration's determinism."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import Boosts, Cap, Diversity, Exploration, Pin, PriceBand, RuleSet
from aisle.service.ranking.scoring import price_band_distance
from aisle.service.ranking.types import ANONYMOUS, UserContext
from tests.service.ranking.builders import Item, candidates, item_table, unit_vectors

NO_SOFT_RULES = RuleSet(boosts=Boosts(boost=0.0), exploration=Exploration(share=0.0))


def ids_of(hits, items) -> list[str]:
    return [items.ids[hit.row] for hit in hits]


def test_lambda_one_is_pure_relevance_order() -> None:
    items = item_table([Item(f"i{r}") for r in range(30)])
    relevance = np.random.default_rng(3).uniform(0, 1, 30)
    vectors = unit_vectors(30, seed=3)
    hits = rerank(
        candidates(range(30), relevance, vectors),
        items,
        ANONYMOUS,
        NO_SOFT_RULES.model_copy(update={"diversity": Diversity(lambda_=1.0)}),
        10,
    )
    assert [hit.row for hit in hits] == list(np.argsort(-relevance)[:10])
    assert [hit.score for hit in hits] == pytest.approx(sorted(relevance, reverse=True)[:10])


def test_diversity_pushes_near_duplicates_down() -> None:
    items = item_table([Item(f"i{r}") for r in range(4)])
    # Rows 0 and 1 are the same product twice; row 2 is different and slightly less relevant.
    vectors = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    cands = candidates([0, 1, 2, 3], [1.0, 0.99, 0.9, 0.5], vectors)
    plain = rerank(cands, items, ANONYMOUS, NO_SOFT_RULES, 3)
    diverse = rerank(
        cands, items, ANONYMOUS, NO_SOFT_RULES.model_copy(update={"diversity": Diversity(lambda_=0.5)}), 3, explain=True
    )
    assert [h.row for h in plain] == [0, 1, 2]
    assert [h.row for h in diverse] == [0, 2, 3]
    assert diverse[1].explain["diversity"] == 0.0  # orthogonal to row 0
    assert "diversity" not in diverse[0].explain["rules"]


def test_margin_boost_moves_an_item_up() -> None:
    items = item_table([Item("plain", margin=0.0), Item("profitable", margin=0.5)])
    cands = candidates([0, 1], [0.8, 0.7])
    assert ids_of(rerank(cands, items, ANONYMOUS, NO_SOFT_RULES, 2), items) == ["plain", "profitable"]
    boosted = NO_SOFT_RULES.model_copy(update={"boosts": Boosts(margin=0.4, boost=0.0)})
    hits = rerank(cands, items, ANONYMOUS, boosted, 2, explain=True)
    assert ids_of(hits, items) == ["profitable", "plain"]
    assert hits[0].explain["boosts"] == pytest.approx(0.2)
    assert hits[0].explain["rules"] == ["boost:margin"]
    assert hits[0].explain["relevance_rank"] == 2


def test_brand_and_category_boosts() -> None:
    items = item_table([Item("a", brand="Acme", category="Home > Kitchen"), Item("b", brand="Other", category="Tools")])
    rules = NO_SOFT_RULES.model_copy(
        update={"boosts": Boosts(boost=0.0, brands={"acme": 0.1}, categories={"Home": 0.05})}
    )
    hits = rerank(candidates([0, 1], [0.5, 0.6]), items, ANONYMOUS, rules, 2, explain=True)
    assert ids_of(hits, items) == ["a", "b"]
    assert hits[0].explain["boosts"] == pytest.approx(0.15)
    assert set(hits[0].explain["rules"]) == {"boost:brand", "boost:category"}


def test_price_band_penalty_demotes_items_outside_the_band() -> None:
    items = item_table([Item("pricey", price=400.0), Item("usual", price=50.0), Item("no-price")])
    ctx = UserContext(price_band=(20.0, 100.0))
    rules = NO_SOFT_RULES.model_copy(update={"price_band": PriceBand(weight=0.2)})
    hits = rerank(candidates([0, 1, 2], [0.9, 0.8, 0.75]), items, ctx, rules, 3, explain=True)
    assert ids_of(hits, items) == ["usual", "no-price", "pricey"]
    # 400 is two octaves above 100: the penalty is capped at the full weight.
    assert hits[2].explain["penalties"] == pytest.approx(0.2)
    assert hits[2].explain["rules"] == ["price_band"]
    assert hits[0].explain["penalties"] == 0.0


def test_price_band_distance_in_octaves() -> None:
    distance = price_band_distance(np.array([50, 150, 200, 10, 5, np.nan, 0]), (20.0, 100.0))
    assert distance == pytest.approx([0, np.log2(1.5), 1, 1, 1, 0, 0])


def test_exploration_is_deterministic_per_request_id_and_varies_across_ids() -> None:
    # Items 0-19 are in the user's favourite category, 20-39 are not and less relevant.
    items = item_table([Item(f"i{r}", category="Home" if r < 20 else "Garden") for r in range(40)])
    ctx = UserContext(top_categories=("Home",))
    rules = NO_SOFT_RULES.model_copy(update={"exploration": Exploration(share=0.2, pool=10)})
    cands = candidates(range(40), np.linspace(1.0, 0.0, 40))

    def explored(request_id: str) -> list[tuple[int, int]]:
        hits = rerank(cands, items, ctx, rules, 10, request_id=request_id, explain=True)
        return [(h.explain["position"], h.row) for h in hits if "exploration" in h.explain["rules"]]

    first = explored("request-1")
    assert len(first) == 2 and all(row >= 20 and position > 1 for position, row in first)
    assert explored("request-1") == first
    assert len({tuple(explored(f"request-{n}")) for n in range(20)}) > 5
    assert explored("anonymous") != [] and rerank(cands, items, ANONYMOUS, rules, 10, request_id="x") == rerank(
        cands, items, ANONYMOUS, NO_SOFT_RULES, 10
    )  # no affinities, no exploration


def test_pins_override_relevance_but_not_stock() -> None:
    items = item_table([Item(f"i{r}") for r in range(5)] + [Item("sold-out", in_stock=False)])
    rules = NO_SOFT_RULES.model_copy(
        update={
            "pins": (
                Pin(item_id="i4", position=1),
                Pin(item_id="sold-out", position=2),
                Pin(item_id="i3", position=2, query="kettle"),
            )
        }
    )
    cands = candidates(range(6), [0.9, 0.8, 0.7, 0.6, 0.1, 1.0])
    hits = rerank(cands, items, ANONYMOUS, rules, 4, explain=True, query="Kettle ")
    assert ids_of(hits, items) == ["i4", "i3", "i0", "i1"]
    assert hits[0].explain["rules"] == ["pin"]
    assert ids_of(rerank(cands, items, ANONYMOUS, rules, 4, query="toaster"), items) == ["i4", "i0", "i1", "i2"]
    lenient = rules.model_copy(update={"in_stock_only": False})
    assert ids_of(rerank(cands, items, ANONYMOUS, lenient, 2, query="toaster"), items) == ["i4", "sold-out"]


def test_caps_limit_a_brand_within_the_window_only() -> None:
    items = item_table(
        [Item(f"a{r}", brand="Acme") for r in range(6)] + [Item(f"b{r}", brand="Bolt") for r in range(2)]
    )
    rules = NO_SOFT_RULES.model_copy(update={"caps": (Cap(field="brand", max=2, within=4),)})
    cands = candidates(range(8), [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.2, 0.1])
    hits = rerank(cands, items, ANONYMOUS, rules, 6, explain=True)
    assert ids_of(hits, items) == ["a0", "a1", "b0", "b1", "a2", "a3"]
    assert hits[2].explain["rules"] == ["cap:brand"]
    # Without other brands the window cannot be filled: the list stops rather than break the cap.
    only_acme = rerank(candidates(range(6), np.linspace(1, 0.5, 6)), items, ANONYMOUS, rules, 6)
    assert len(only_acme) == 2


def test_excluded_and_recently_bought_items_never_show() -> None:
    items = item_table([Item(f"i{r}") for r in range(5)])
    ctx = UserContext(purchased_recently=frozenset({"i0"}))
    rules = NO_SOFT_RULES.model_copy(update={"exclude_ids": ("i1",)})
    cands = candidates([0, 1, 2, 2, 3, 4], [0.9, 0.8, 0.1, 0.7, 0.6, 0.5])
    hits = rerank(cands, items, ctx, rules, 5, explain=True)
    assert ids_of(hits, items) == ["i2", "i3", "i4"]
    assert hits[0].score == pytest.approx(0.7)  # a duplicate keeps its best relevance
    allowed = rules.model_copy(update={"exclude_purchased": False})
    assert ids_of(rerank(cands, items, ctx, allowed, 5), items)[0] == "i0"


def test_explanation_reports_residual_and_sources() -> None:
    items = item_table([Item("x", boost=1.0)])
    cands = candidates([0], [0.9], parts={"semantic": [0.3], "lexical": [0.4]})
    cands.sources = np.array(["dense+lexical"], dtype=object)
    rules = RuleSet(exploration=Exploration(share=0.0))
    (hit,) = rerank(cands, items, ANONYMOUS, rules, 3, explain=True)
    assert hit.explain["other"] == pytest.approx(0.2)
    assert hit.explain["boosts"] == pytest.approx(0.1)
    assert hit.explain["final"] == pytest.approx(1.0) == hit.score
    assert hit.explain["retrieved_by"] == "dense+lexical"


def test_diversity_without_vectors_is_a_clear_error() -> None:
    items = item_table([Item("x"), Item("y")])
    rules = NO_SOFT_RULES.model_copy(update={"diversity": Diversity(lambda_=0.5)})
    with pytest.raises(ValueError, match="item_vectors"):
        rerank(candidates([0, 1], [0.5, 0.4]), items, ANONYMOUS, rules, 2)
    hits = rerank(candidates([0, 1], [0.5, 0.4]), items, ANONYMOUS, rules, 2, item_vectors=unit_vectors(2))
    assert len(hits) == 2
