"""Property tests of the reranker over random candidate lists, catalogues and rule sets.

Whatever the input: hard rules are never violated (stock, exclusions, recent purchases, caps),
no item appears twice, pins sit at their positions when they can, the list is as long as the
hard rules allow, and every explanation adds up to its score.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import Boosts, Cap, Diversity, Exploration, Pin, PriceBand, RuleSet
from aisle.service.ranking.types import Hit, UserContext
from tests.service.ranking.builders import Item, candidates, item_table, unit_vectors

BRANDS = ["", "acme", "globex", "initech"]
CATEGORIES = ["", "Home > Kitchen", "Home > Bath", "Tools"]
QUERIES = [None, "red kettle", "drill"]


def random_items(count: int, rng: np.random.Generator) -> list[Item]:
    """A catalogue of ``count`` items with random brands, categories, stock and prices."""
    return [
        Item(
            id=f"i{row}",
            brand=BRANDS[rng.integers(len(BRANDS))],
            category=CATEGORIES[rng.integers(len(CATEGORIES))],
            price=None if rng.random() < 0.2 else float(rng.uniform(1, 1000)),
            in_stock=bool(rng.random() < 0.7),
            margin=None if rng.random() < 0.3 else float(rng.uniform(0, 1)),
            boost=None if rng.random() < 0.5 else float(rng.uniform(-1, 1)),
        )
        for row in range(count)
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    # Bulk data comes from a seeded generator (fast to draw); the structure (sizes, rules,
    # context) from Hypothesis, so that failures shrink to small rule sets.
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    count = draw(st.integers(1, 40))
    items = random_items(count, rng)
    ids = [item.id for item in items]
    size = draw(st.integers(0, 60))
    rows = rng.integers(0, count, size=size).tolist()  # duplicates allowed
    relevance = rng.uniform(-1, 2, size=size).tolist()
    caps = draw(
        st.lists(
            st.builds(
                Cap,
                field=st.sampled_from(["brand", "category"]),
                max=st.integers(1, 3),
                within=st.one_of(st.none(), st.integers(1, 12)),
            ),
            max_size=2,
        )
    )
    pins = draw(
        st.lists(
            st.builds(
                Pin,
                item_id=st.sampled_from(ids + ["unknown"]),
                position=st.integers(1, 17),
                query=st.sampled_from(QUERIES[:2]),
                category=st.sampled_from([None, "Home", "Tools"]),
            ),
            max_size=4,
        )
    )
    rules = RuleSet(
        in_stock_only=draw(st.booleans()),
        exclude_purchased=draw(st.booleans()),
        exclude_ids=tuple(draw(st.lists(st.sampled_from(ids), max_size=5))),
        caps=tuple(caps),
        pins=tuple(pins),
        boosts=Boosts(
            margin=draw(st.floats(-1, 1)),
            boost=draw(st.floats(-1, 1)),
            brands=draw(st.dictionaries(st.sampled_from(BRANDS[1:]), st.floats(-0.5, 0.5), max_size=2)),
            categories=draw(st.dictionaries(st.sampled_from(["Home", "Tools"]), st.floats(-0.5, 0.5), max_size=2)),
        ),
        price_band=PriceBand(weight=draw(st.floats(0, 1))),
        diversity=Diversity(lambda_=draw(st.sampled_from([1.0, 0.9, 0.5, 0.2]))),
        exploration=Exploration(share=draw(st.sampled_from([0.0, 0.1, 0.3, 0.5])), pool=draw(st.integers(1, 10))),
    )
    band = draw(st.one_of(st.none(), st.tuples(st.floats(1, 100), st.floats(100, 1000))))
    ctx = UserContext(
        price_band=band,
        purchased_recently=frozenset(draw(st.lists(st.sampled_from(ids), max_size=5))),
        top_categories=tuple(draw(st.lists(st.sampled_from(["Home", "Tools"]), max_size=2, unique=True))),
        top_brands=tuple(draw(st.lists(st.sampled_from(BRANDS[1:]), max_size=2, unique=True))),
    )
    return {
        "items": items,
        "rows": rows,
        "relevance": relevance,
        "rules": rules,
        "ctx": ctx,
        "k": draw(st.integers(1, 15)),
        "request_id": draw(st.text(max_size=12)),
        "query": draw(st.sampled_from(QUERIES)),
        "category": draw(st.sampled_from([None, "Home > Kitchen", "Tools"])),
        "seed": seed,
    }


def run(scenario: dict, explain: bool = False) -> list[Hit]:
    vectors = unit_vectors(len(scenario["items"]), seed=scenario["seed"])
    return rerank(
        candidates(scenario["rows"], scenario["relevance"], vectors),
        item_table(scenario["items"]),
        scenario["ctx"],
        scenario["rules"],
        scenario["k"],
        request_id=scenario["request_id"],
        explain=explain,
        query=scenario["query"],
        category=scenario["category"],
    )


def eligible_rows(scenario: dict) -> set[int]:
    """Candidates passing the filtering hard rules, computed independently of the reranker."""
    rules, ctx, items = scenario["rules"], scenario["ctx"], scenario["items"]
    banned = set(rules.exclude_ids) | (set(ctx.purchased_recently) if rules.exclude_purchased else set())
    return {
        row
        for row in scenario["rows"]
        if (items[row].in_stock or not rules.in_stock_only) and items[row].id not in banned
    }


def group_of(item: Item, field: str) -> str:
    return (item.brand if field == "brand" else item.category).casefold()


def cap_breaks(scenario: dict, placed: list[int], row: int) -> bool:
    """Whether ``row`` appended after ``placed`` would break a cap."""
    items, k = scenario["items"], scenario["k"]
    for cap in scenario["rules"].caps:
        window = min(cap.within or k, k)
        group = group_of(items[row], cap.field)
        if len(placed) < window and group.strip():
            if sum(group_of(items[r], cap.field) == group for r in placed[:window]) >= cap.max:
                return True
    return False


def honoured_pins(scenario: dict, eligible: set[int]) -> list[tuple[int, int]]:
    """(0-based position, row) of the pins a cap-free rule set must honour."""
    rules, k = scenario["rules"], scenario["k"]
    row_of = {item.id: row for row, item in enumerate(scenario["items"])}
    taken_positions: set[int] = set()
    taken_rows: set[int] = set()
    honoured = []
    for pin in sorted(rules.pins_for(scenario["query"], scenario["category"]), key=lambda p: p.position):
        position, row = pin.position - 1, row_of.get(pin.item_id)
        if position >= k or position in taken_positions or row not in eligible or row in taken_rows:
            continue
        taken_positions.add(position)
        taken_rows.add(row)
        honoured.append((position, row))
    return honoured


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hard_rules_always_hold(scenario: dict) -> None:
    hits = run(scenario)
    placed = [hit.row for hit in hits]
    eligible = eligible_rows(scenario)
    items, rules, k = scenario["items"], scenario["rules"], scenario["k"]

    assert len(placed) == len(set(placed)), "an item appears twice"
    assert set(placed) <= eligible, "a result breaks stock, exclusion or purchase rules"
    assert len(placed) <= k
    for cap in rules.caps:
        window = min(cap.within or k, k)
        counts = Counter(group_of(items[row], cap.field) for row in placed[:window])
        counts.pop("", None)
        assert all(count <= cap.max for count in counts.values()), f"{cap} broken: {counts}"

    if not rules.caps:
        assert len(placed) == min(k, len(eligible))
        regular = len(eligible) - len(honoured_pins(scenario, eligible))
        pins = honoured_pins(scenario, eligible)
        for position, row in pins:
            assert row in placed, "an eligible pin is missing"
            earlier_pins = sum(1 for other, _ in pins if other < position)
            if regular + earlier_pins >= position:
                assert placed[position] == row, "an eligible pin is not at its position"
    elif len(placed) < k:
        # Maximal: no eligible candidate left out could have been appended without breaking a cap.
        for row in eligible - set(placed):
            assert cap_breaks(scenario, placed, row), f"row {row} fits after the list but was left out"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_explanations_add_up_and_results_repeat(scenario: dict) -> None:
    hits = run(scenario, explain=True)
    assert [(h.row, h.score) for h in run(scenario)] == [(h.row, h.score) for h in hits]
    for position, hit in enumerate(hits, start=1):
        parts = hit.explain
        assert parts is not None and parts["position"] == position
        relevance = parts["semantic"] + parts["lexical"] + parts["personal"] + parts.get("other", 0.0)
        assert np.isclose(relevance, parts["relevance"], atol=1e-5)
        composed = relevance + parts["boosts"] - parts["penalties"] - parts["diversity"]
        assert np.isclose(composed, parts["final"], atol=1e-5)
        assert np.isclose(parts["final"], hit.score, atol=1e-5)
        assert parts["diversity"] >= 0 and parts["penalties"] >= 0
