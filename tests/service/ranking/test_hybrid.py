"""Candidate generation: dense + BM25 fusion, the personal blend, similar items."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.index.filters import Filters, select_rows
from aisle.index.loaded import LoadedIndex
from aisle.index.profile import personal_share
from aisle.service.ranking.hybrid import FusionParams, item_candidates, query_candidates
from aisle.service.ranking.types import UserContext
from tests.fakes import HashingEncoder

PRODUCTS = [
    Product("grinder-dw", "Angle grinder DW4524 4-1/2 inch", brand="DeWalt", category="Tools > Power", price=89.0),
    Product("grinder-mk", "Angle grinder 115 mm", brand="Makita", category="Tools > Power", price=79.0),
    Product("drill", "Cordless drill driver 18V", brand="DeWalt", category="Tools > Power", price=159.0),
    Product("hammer", "Claw hammer with fiberglass handle", brand="Stanley", category="Tools > Hand", price=19.0),
    Product("kettle", "Electric kettle 1.7 litre", brand="Bosch", category="Home > Kitchen", price=39.0),
    Product("toaster", "Two slice toaster", brand="Bosch", category="Home > Kitchen", price=29.0),
    Product("knife", "Chef knife 8 inch", brand="Victorinox", category="Home > Kitchen", price=49.0, in_stock=False),
    Product("pan", "Cast iron skillet 10 inch", brand="Lodge", category="Home > Kitchen", price=35.0),
]
ENCODER = HashingEncoder()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LoadedIndex:
    root = tmp_path_factory.mktemp("hybrid") / "index"
    report = build_version(Catalog(PRODUCTS), root, ENCODER, BuildOptions(show_progress=False))
    return LoadedIndex.load(report.path)


def by_id(index: LoadedIndex, cands) -> dict[str, dict[str, float]]:
    return {
        index.items.ids[row]: {
            name: float(values[n]) for name, values in {**cands.parts, "relevance": cands.relevance}.items()
        }
        for n, row in enumerate(cands.rows)
    }


def test_weighted_fusion_scores_every_candidate_on_both_signals(index: LoadedIndex) -> None:
    query = "dw4524 grinder"
    vector = ENCODER.encode_queries([query])[0]
    fusion = FusionParams(dense_weight=0.4, lexical_weight=0.6)
    cands = query_candidates(index, query, vector, n=3, fusion=fusion)
    bm25 = index.lexical.scores(query)
    for n, row in enumerate(cands.rows):
        cosine = float(index.text.vectors[row] @ vector)
        assert cands.parts["semantic"][n] == pytest.approx(0.4 * cosine, abs=1e-6)
        assert cands.parts["lexical"][n] == pytest.approx(0.6 * bm25[row] / bm25.max(), abs=1e-6)
        assert cands.relevance[n] == pytest.approx(cands.parts["semantic"][n] + cands.parts["lexical"][n])
    parts = by_id(index, cands)
    # The exact model number gets the full lexical weight and the top relevance.
    assert parts["grinder-dw"]["lexical"] == pytest.approx(0.6)
    assert max(parts, key=lambda item: parts[item]["relevance"]) == "grinder-dw"
    assert cands.vectors is not None and cands.vectors.shape == (len(cands), ENCODER.dim)


def test_retrieval_modes_and_rrf(index: LoadedIndex) -> None:
    query = "angle grinder"
    vector = ENCODER.encode_queries([query])[0]
    dense = query_candidates(index, query, vector, n=4, retrieval="dense")
    assert len(dense) == 4 and not dense.parts["lexical"].any()
    lexical = query_candidates(index, query, None, n=4, retrieval="lexical")
    assert {index.items.ids[r] for r in lexical.rows} == {"grinder-dw", "grinder-mk"}
    assert lexical.parts["lexical"].max() == pytest.approx(1.0) and not lexical.parts["semantic"].any()
    fusion = FusionParams(method="rrf", dense_weight=0.5, lexical_weight=1.0, rrf_k=60)
    rrf = query_candidates(index, query, vector, n=4, fusion=fusion)
    # A candidate first in both lists gets the most RRF can give; one in neither gets 0.
    assert rrf.relevance.max() <= 0.5 / 61 + 1.0 / 61 + 1e-12
    dense_first = int(dense.rows[np.argmax(dense.relevance)])
    at = list(rrf.rows).index(dense_first)
    assert rrf.parts["semantic"][at] == pytest.approx(0.5 / 61)
    with pytest.raises(ValueError, match="query vector"):
        query_candidates(index, query, None, n=4, retrieval="hybrid")


def test_filters_exclusions_and_pinned_extras(index: LoadedIndex) -> None:
    query = "grinder"
    vector = ENCODER.encode_queries([query])[0]
    row_of = index.items.row_of
    selection = select_rows(index.items, Filters(category="Tools"))
    cands = query_candidates(
        index,
        query,
        vector,
        n=2,
        selection=selection,
        exclude_rows=[row_of["grinder-mk"]],
        extra_rows=[row_of["hammer"], row_of["kettle"]],
    )
    ids = {index.items.ids[row] for row in cands.rows}
    assert "grinder-mk" not in ids and "kettle" not in ids  # excluded; outside the filter
    assert "hammer" in ids and all(index.items.category(row).startswith("Tools") for row in cands.rows)
    assert cands.sources[list(cands.rows).index(row_of["hammer"])] in ("pin", "dense")


def test_personal_blend_moves_towards_the_profile(index: LoadedIndex) -> None:
    query = "kitchen"
    vector = ENCODER.encode_queries([query])[0]
    profile = np.asarray(index.text.vectors[index.items.row_of["pan"]], dtype=np.float32)
    ctx = UserContext(profile=profile, mass=12.0)
    share = personal_share(12.0)
    plain = by_id(index, query_candidates(index, query, vector, n=8))
    personal = by_id(index, query_candidates(index, query, vector, n=8, ctx=ctx))
    for item, parts in personal.items():
        assert parts["semantic"] == pytest.approx((1 - share) * plain[item]["semantic"])
        assert parts["relevance"] == pytest.approx(parts["semantic"] + parts["lexical"] + parts["personal"])
    assert personal["pan"]["personal"] == pytest.approx(share, abs=1e-5)  # cosine with itself is 1
    assert all(personal["pan"]["personal"] >= p["personal"] for p in personal.values())


def test_similar_items_never_include_the_item(index: LoadedIndex) -> None:
    row = index.items.row_of["grinder-dw"]
    cands = item_candidates(index, row, n=5)
    assert row not in cands.rows and len(cands) == 5
    vector = np.asarray(index.text.vectors[row])
    np.testing.assert_allclose(cands.parts["semantic"], index.text.vectors[cands.rows] @ vector, rtol=1e-5)


def test_fusion_defaults_are_the_settings_defaults() -> None:
    from aisle.service.settings import ServiceSettings

    fields = ServiceSettings.model_fields
    assert FusionParams() == FusionParams(
        fields["fusion_method"].default,
        fields["fusion_dense_weight"].default,
        fields["fusion_lexical_weight"].default,
        fields["fusion_rrf_k"].default,
    )
