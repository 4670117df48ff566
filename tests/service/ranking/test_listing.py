"""Storefront listings against brute force: filters, matches, totals, facets, sorts and pages.

Random catalogues (seeded by hypothesis) are built into real versions with the test encoder;
every filter kind is checked against a row-by-row reference over the products themselves, and
the matches, facet counts and pages of ``Engine.listing`` against NumPy over every row.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.index.filters import FilterError, filter_mask, parse_filters, select_rows
from aisle.index.loaded import LoadedIndex
from aisle.index.versions import VersionStore
from aisle.service.engine import Engine, SortOrder
from aisle.service.ranking.listing import MatchParams, TextMatches
from aisle.service.ranking.rules import RuleBook, RuleSet
from tests.fakes import HashingEncoder

WORDS = ("red", "blue", "chair", "table", "lamp", "oak", "steel", "soft", "big", "mini", "desk", "sofa")
COLOURS = ("Red", "red", "Blue", "Green", "blue", None)
CATEGORIES = ("Home > Living", "Home > Living > Sofas", "Home > Livingroom", "Office > Desks", "Office", "")
BRANDS = ("Acme", "acme", "Zeta", "Omni", "")
SIZES = (1, 2, 2.5, 10, None)
ENCODER = HashingEncoder(32)
NO_RULES = RuleSet(in_stock_only=False)


def random_products(seed: int) -> list[Product]:
    rng = np.random.default_rng(seed)
    products = []
    for i in range(int(rng.integers(8, 70))):
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        attributes: dict[str, Any] = {}
        for name, values in (("colour", COLOURS), ("size", SIZES)):
            value = values[int(rng.integers(len(values)))]
            if value is not None:
                attributes[name] = value
        if rng.random() < 0.7:
            attributes["fragile"] = bool(rng.random() < 0.5)
        products.append(
            Product(
                id=f"p{i}",
                title=f"{words} {i}",
                brand=BRANDS[int(rng.integers(len(BRANDS)))],
                category=CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                price=None if rng.random() < 0.15 else float(rng.integers(1, 50)),
                in_stock=bool(rng.random() < 0.8),
                attributes=attributes,
            )
        )
    return products


_BUILT: dict[int, tuple[list[Product], Engine]] = {}


def engine_for(seed: int, root: Path) -> tuple[list[Product], Engine]:
    """A published, loaded version of the catalogue of ``seed`` (built once per test session)."""
    if seed not in _BUILT:
        products = random_products(seed)
        report = build_version(
            Catalog(products),
            root / f"index-{seed}",
            ENCODER,
            BuildOptions(
                show_progress=False, index_type="flat", fields={"size": ["filterable", "facetable", "sortable"]}
            ),
        )
        index = LoadedIndex.load(VersionStore(report.path.parent.parent).current_path())
        _BUILT[seed] = (products, Engine(index, ENCODER, candidates=200))
    return _BUILT[seed]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("listings")


def value_of(product: Product, name: str) -> Any:
    if name in ("brand", "category", "price", "in_stock"):
        value = getattr(product, name)
        return None if value == "" else value
    return product.attributes.get(name)


def equals(value: Any, wanted: Any, name: str) -> bool:
    if value is None:
        return False
    if name == "category":
        have = [part.lower() for part in value.split(" > ")]
        want = [part.strip().lower() for part in str(wanted).split(">") if part.strip()]
        return have[: len(want)] == want
    if isinstance(value, bool) or isinstance(wanted, bool):
        return str(value).lower() == str(wanted).lower()
    if isinstance(value, (int, float)):
        return float(value) == float(wanted)
    return str(value).lower() == str(wanted).lower()


def reference_mask(products: list[Product], raw: dict[str, Any]) -> np.ndarray:
    """Row by row, in plain Python: the rows every filter of ``raw`` keeps."""
    keep = []
    for product in products:
        ok = True
        for name, wanted in raw.items():
            if name in ("price_min", "price_max"):
                ok &= product.price is not None and (
                    product.price >= wanted if name == "price_min" else product.price <= wanted
                )
                continue
            value = value_of(product, name)
            if isinstance(wanted, dict) and "not" in wanted:
                values = wanted["not"] if isinstance(wanted["not"], list) else [wanted["not"]]
                ok &= not any(equals(value, v, name) for v in values)
            elif isinstance(wanted, dict):
                ok &= (
                    value is not None
                    and (wanted.get("min") is None or value >= wanted["min"])
                    and (wanted.get("max") is None or value <= wanted["max"])
                )
            else:
                values = wanted if isinstance(wanted, list) else [wanted]
                ok &= any(equals(value, v, name) for v in values)
        keep.append(ok)
    return np.array(keep, dtype=bool)


_SCALARS = {
    "colour": st.sampled_from(["red", "RED", "Blue", "green", "purple"]),
    "brand": st.sampled_from(["acme", "Zeta", "omni", "none"]),
    "category": st.sampled_from(["home", "Home > Living", "office > desks", "Home>Living>Sofas", "garden"]),
    "size": st.sampled_from([1, 2, 2.5, 10, 3]),
    "fragile": st.booleans(),
    "in_stock": st.booleans(),
    "price": st.integers(1, 50),
}


@st.composite
def filter_sets(draw: st.DrawFn) -> dict[str, Any]:
    """A random combination of every filter kind over random fields."""
    raw: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(_SCALARS)), unique=True, max_size=3)):
        scalar = _SCALARS[name]
        kinds = ["equals", "any", "not"] + (["range"] if name in ("size", "price") else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "equals":
            raw[name] = draw(scalar)
        elif kind == "any":
            raw[name] = draw(st.lists(scalar, min_size=1, max_size=3))
        elif kind == "not":
            raw[name] = {"not": draw(st.one_of(scalar, st.lists(scalar, min_size=1, max_size=3)))}
        else:
            low, high = sorted(draw(st.lists(st.integers(0, 30), min_size=2, max_size=2)))
            raw[name] = {"min": low if draw(st.booleans()) else None, "max": high}
    if draw(st.booleans()):
        raw["price_min"] = draw(st.integers(0, 25))
    return raw


SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW
@given(seed=st.integers(0, 7), raw=filter_sets())
def test_every_filter_kind_equals_the_row_by_row_reference(root: Path, seed: int, raw: dict[str, Any]) -> None:
    products, engine = engine_for(seed, root)
    filters = parse_filters(raw, engine.index.items.fields)
    mask = filter_mask(engine.index.items, filters)
    expected = reference_mask(products, raw)
    assert np.array_equal(mask if mask is not None else np.ones(len(products), bool), expected), raw


def brute_force_matches(engine: Engine, query: str, allowed: np.ndarray, params: MatchParams) -> tuple:
    """(rows that must match, rows that may match): NumPy over every row, the floor's float
    rounding being the only slack."""
    index = engine.index
    bm25 = index.lexical.scores(query).astype(np.float64)
    cosine = index.text.vectors @ ENCODER.encode_queries([query])[0]
    must = np.zeros(len(bm25), dtype=bool)
    may = np.zeros(len(bm25), dtype=bool)
    if allowed.any():
        best = bm25[allowed].max()
        if best > 0:
            floor = params.lexical_floor * best
            must |= allowed & (bm25 > 0) & (bm25 >= floor * (1 + 1e-5))
            may |= allowed & (bm25 > 0) & (bm25 >= floor * (1 - 1e-5))
        dense_floor = max(params.min_similarity, float(cosine[allowed].max()) - params.similarity_margin)
        must |= allowed & (cosine >= dense_floor + 1e-6)
        may |= allowed & (cosine >= dense_floor - 1e-6)
    return must, may


@SLOW
@given(
    seed=st.integers(0, 7),
    raw=filter_sets(),
    words=st.lists(st.sampled_from(WORDS + ("zzz",)), min_size=1, max_size=3),
    facets=st.lists(st.sampled_from(["colour", "size", "brand", "category", "fragile", "in_stock"]), unique=True),
)
def test_total_and_facets_equal_brute_force(
    root: Path, seed: int, raw: dict[str, Any], words: list[str], facets: list[str]
) -> None:
    products, engine = engine_for(seed, root)
    query = " ".join(words)
    filters = parse_filters(raw, engine.index.items.fields)
    allowed = reference_mask(products, raw)
    params = MatchParams()
    listing = engine.listing(query, 10, filters=filters, facets=facets, rules=NO_RULES, matching=params)
    selection = filter_mask(engine.index.items, filters)
    matches = TextMatches(
        engine.index,
        query,
        ENCODER.encode_queries([query])[0],
        n=200,
        selection=select_rows(engine.index.items, filters),
        excluded=np.empty(0, np.int64),
        extras=np.empty(0, np.int64),
        params=params,
    )
    must, may = brute_force_matches(engine, query, allowed if selection is None else selection, params)
    found = np.zeros(len(products), dtype=bool)
    found[matches.rows] = True
    assert not (must & ~found).any() and not (found & ~may).any()
    assert listing.total == len(matches.rows) and listing.matched == (listing.total > 0)
    for name in facets:
        counted = Counter(_facet_key(value_of(products[row], name)) for row in matches.rows.tolist())
        counted.pop(None, None)
        if name == "category":  # counted per full path, case as first seen
            assert sum(listing.facets[name].values()) == sum(counted.values())
        else:
            assert _case_folded(listing.facets[name]) == _case_folded(counted), name
    assert len(listing.hits) == min(10, listing.total)
    assert {hit.row for hit in listing.hits} <= set(matches.rows.tolist())


def _facet_key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _case_folded(counts: Any) -> dict[str, int]:
    folded: Counter = Counter()
    for key, count in dict(counts).items():
        folded[key.lower()] += count
    return dict(folded)


@SLOW
@given(
    seed=st.integers(0, 7),
    raw=filter_sets(),
    query=st.sampled_from(["", "red chair", "oak desk", "lamp", "soft big sofa"]),
    field=st.sampled_from(["price", "size"]),
    descending=st.booleans(),
    offset=st.integers(0, 30),
    k=st.integers(1, 15),
)
def test_sorted_pages_are_monotone_slices_of_one_list(
    root: Path, seed: int, raw: dict[str, Any], query: str, field: str, descending: bool, offset: int, k: int
) -> None:
    products, engine = engine_for(seed, root)
    filters = parse_filters(raw, engine.index.items.fields)
    order = SortOrder(field, descending)
    whole = engine.listing(query, 100, filters=filters, sort=order, rules=NO_RULES)
    page = engine.listing(query, k, offset=offset, filters=filters, sort=order, rules=NO_RULES)
    assert [hit.row for hit in page.hits] == [hit.row for hit in whole.hits][offset : offset + k]
    keys = [value_of(products[hit.row], field) for hit in whole.hits]
    present = [key for key in keys if key is not None]
    assert present == sorted(present, reverse=descending)
    assert keys == present + [None] * (len(keys) - len(present))  # no value: last
    if whole.total <= 100:
        assert len(whole.hits) == whole.total
    # Relevance breaks ties.
    for before, after in zip(whole.hits, whole.hits[1:]):
        if value_of(products[before.row], field) == value_of(products[after.row], field):
            assert before.score >= after.score - 1e-9


@SLOW
@given(
    seed=st.integers(0, 7),
    raw=filter_sets(),
    query=st.sampled_from(["", "red chair", "oak desk table", "lamp", "mini"]),
    offset=st.integers(0, 40),
    k=st.integers(1, 20),
)
def test_ranked_pages_are_slices_of_one_list(
    root: Path, seed: int, raw: dict[str, Any], query: str, offset: int, k: int
) -> None:
    products, engine = engine_for(seed, root)
    filters = parse_filters(raw, engine.index.items.fields)
    rules = RuleBook().for_surface("search")
    if raw.get("in_stock") is False:  # the default in-stock rule refuses to show them
        rules = rules.model_copy(update={"in_stock_only": False})
    whole = engine.listing(query, 100, filters=filters, rules=rules)
    page = engine.listing(query, k, offset=offset, filters=filters, rules=rules)
    assert [hit.row for hit in page.hits] == [hit.row for hit in whole.hits][offset : offset + k]
    assert page.total == whole.total
    rows = [hit.row for hit in whole.hits]
    assert len(rows) == len(set(rows)) == min(100, whole.total)
    if not query:  # a browse page lists every allowed (in-stock) row
        allowed = reference_mask(products, raw)
        if rules.in_stock_only:
            allowed &= np.array([p.in_stock for p in products])
        assert whole.total == int(allowed.sum())


def test_unknown_and_unfilterable_fields_are_refused_by_name(root: Path) -> None:
    _, engine = engine_for(0, root)
    fields = engine.index.items.fields
    with pytest.raises(FilterError, match="filters.material: unknown field"):
        parse_filters({"material": "oak"}, fields)
    with pytest.raises(FilterError, match="filters.margin: 'margin' is not filterable"):
        parse_filters({"margin": 1}, fields)
    with pytest.raises(FilterError, match="filters.colour: 'colour' is not a number field"):
        parse_filters({"colour": {"min": 1}}, fields)
    with pytest.raises(FilterError, match="filters.size: min .* is above max"):
        parse_filters({"size": {"min": 5, "max": 1}}, fields)
    with pytest.raises(FilterError, match="filters.size: 'size' holds numbers"):
        parse_filters({"size": "large"}, fields)
    with pytest.raises(FilterError, match="empty list"):
        parse_filters({"colour": []}, fields)


def test_a_query_matching_nothing_says_so(root: Path) -> None:
    _, engine = engine_for(1, root)
    listing = engine.listing("qqqq xxxx", 10, rules=NO_RULES, matching=MatchParams(min_similarity=0.99))
    assert listing.total == 0 and not listing.matched and listing.hits == []


def test_a_query_naming_an_attribute_value_favours_the_items_having_it(tmp_path: Path) -> None:
    products = [
        Product("w", "Kalenji running shoe", attributes={"gender": "Women", "kind": "Shoes"}),
        Product("m", "Afterburner trainer shoe", attributes={"gender": "Men", "kind": "Shoes"}),
    ] + [Product(f"x{i}", f"cotton scarf {i}", attributes={"gender": ["Men", "Women"][i % 2]}) for i in range(8)]
    fields = {"gender": ["searchable:2", "filterable", "facetable"], "kind": ["searchable", "facetable"]}
    report = build_version(
        Catalog(products), tmp_path / "index", ENCODER, BuildOptions(show_progress=False, fields=fields)
    )
    engine = Engine(LoadedIndex.load(report.path), ENCODER)

    def lexical(boost: float) -> dict[str, float]:
        listing = engine.listing(
            "men's running shoes", 2, rules=NO_RULES, matching=MatchParams(attribute_boost=boost), explain=True
        )
        return {engine.index.items.ids[hit.row]: hit.explain["lexical"] for hit in listing.hits}

    plain, boosted = lexical(0.0), lexical(0.3)
    weight = 0.4  # the lexical weight of the default fusion
    # The query names gender Men (search weight 2) and kind Shoes (weight 1).
    assert boosted["m"] - plain["m"] == pytest.approx(weight * 0.3 * (2 + 1), abs=1e-6)
    assert boosted["w"] - plain["w"] == pytest.approx(weight * 0.3 * 1, abs=1e-6)


def test_a_browse_page_ranks_by_popularity_then_catalogue_order(root: Path) -> None:
    products, engine = engine_for(3, root)
    popularity = np.zeros(len(products))
    popularity[[5, 2, 7]] = [0.2, 1.0, 0.6]
    listing = engine.listing("", 6, rules=NO_RULES, popularity=popularity)
    rows = [hit.row for hit in listing.hits]
    assert rows[:3] == [2, 7, 5]  # most popular first
    assert rows[3:] == [row for row in range(len(products)) if row not in (2, 5, 7)][:3]
    assert listing.total == len(products)
    assert [h.row for h in engine.listing("", 3, offset=3, rules=NO_RULES, popularity=popularity).hits] == rows[3:]


@pytest.mark.parametrize("query", ["", "red chair", "oak desk table", "soft"])
def test_pages_beyond_the_candidates_are_slices_of_the_same_list(root: Path, query: str) -> None:
    _, wide = engine_for(5, root)
    engine = Engine(wide.index, ENCODER, candidates=5)  # most matches come after the reranked ones
    whole = engine.listing(query, 100, rules=NO_RULES)
    rows = [hit.row for hit in whole.hits]
    assert len(rows) == len(set(rows)) == min(100, whole.total)
    for offset, k in ((0, 3), (3, 4), (5, 7), (12, 20), (30, 10)):
        page = engine.listing(query, k, offset=offset, rules=NO_RULES)
        assert [hit.row for hit in page.hits] == rows[offset : offset + k]
