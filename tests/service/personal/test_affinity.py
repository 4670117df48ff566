"""Category and brand affinity in personalized search, through the HTTP API on a tiny catalogue.

The catalogue holds two brands of the same products: a shopper who bought a brand sees it lifted,
a strong text match of the other brand still comes first, the explanation names the boost, and
an anonymous (or history-less) search is exactly what it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from aisle.service.personal.affinity import affinity_of, lean
from aisle.service.ranking.rules import SEARCH_AFFINITY_BRAND, SEARCH_AFFINITY_CATEGORY
from tests.fakes import HashingEncoder
from tests.service.harness import settings_for
from tests.service.ranking.builders import Item, item_table

NOW = time.time() - 3600.0
PRODUCTS = [
    ("brio-kettle", "Electric kettle 1.7 litre", "Brio", "Kitchen > Kettles", 40.0),
    ("acme-kettle", "Electric kettle 1.7 litre", "Acme", "Kitchen > Kettles", 40.0),
    ("brio-grinder", "Burr coffee grinder, conical burrs", "Brio", "Kitchen > Coffee", 90.0),
    ("acme-brush", "Grinder cleaning brush", "Acme", "Kitchen > Coffee", 9.0),
    ("acme-jug", "Milk jug for latte art", "Acme", "Kitchen > Coffee", 15.0),
    ("acme-scale", "Coffee scale with timer", "Acme", "Kitchen > Coffee", 30.0),
    ("acme-tamper", "Espresso tamper 58 mm", "Acme", "Kitchen > Coffee", 25.0),
    ("brio-cups", "Espresso cups, set of 4", "Brio", "Kitchen > Coffee", 18.0),
    ("brio-filter", "Paper coffee filters", "Brio", "Kitchen > Coffee", 5.0),
    ("brio-towel", "Cotton bath towel", "Brio", "Home > Bath", 20.0),
    ("zeta-lamp", "LED desk lamp", "Zeta", "Home > Lighting", 60.0),
    ("zeta-drill", "Cordless drill 18V", "Zeta", "Tools > Power", 120.0),
]
#: Each fan buys three coffee accessories of one brand.
FANS = {"acme": ("acme-jug", "acme-scale", "acme-tamper"), "brio": ("brio-cups", "brio-filter", "brio-towel")}
OFF = {"affinity": {"category": 0, "brand": 0}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("affinity")
    encoder = HashingEncoder()
    settings = settings_for(root)
    catalog = root / "catalog.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"id": i, "title": t, "brand": b, "category": c, "price": p}) + "\n"
            for i, t, b, c, p in PRODUCTS
        ),
        encoding="utf-8",
    )
    build_version(load_catalog(catalog), settings.index_dir, encoder, BuildOptions(show_progress=False))
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        events = [
            {
                "event_id": f"{fan}-{n}",
                "user_id": f"{fan}-fan",
                "item_id": item,
                "type": "purchase",
                "timestamp": NOW + n,
            }
            for fan, items in FANS.items()
            for n, item in enumerate(items)
        ]
        response = client.post("/events", json={"events": events})
        assert response.status_code == 200, response.text
        yield client


def search(client: TestClient, query: str, **body) -> list[dict]:
    response = client.post("/search", json={"query": query, "k": 10, "explain": True, **body})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def by_id(results: list[dict]) -> dict[str, dict]:
    return {result["id"]: result for result in results}


def test_a_buyer_of_a_brand_sees_it_lifted(client: TestClient) -> None:
    anonymous = [r["id"] for r in search(client, "electric kettle")[:2]]
    assert sorted(anonymous) == ["acme-kettle", "brio-kettle"]
    runner_up = anonymous[1]
    fan = runner_up.split("-")[0]
    personal = search(client, "electric kettle", user_id=f"{fan}-fan")
    assert personal[0]["id"] == runner_up
    explain = by_id(personal)[runner_up]["explain"]
    assert explain["affinity"]["brand"] > 0
    assert "boost:affinity_brand" in explain["rules"]
    # Both kettles share the category: only the brand separates them; the other gets no brand lift.
    other = by_id(personal)[anonymous[0]]["explain"]
    assert other.get("affinity", {}).get("brand", 0.0) == 0.0
    # Beside them the price band: either fan paid 30 at most, a 40 kettle is above their band.
    assert explain["penalties"] > 0 and "price_band" in explain["rules"]


def test_the_lift_is_exactly_the_affinity_boost(client: TestClient) -> None:
    """Each result's score with the rule is its score without it plus its affinity boost."""
    for fan in FANS:
        on = by_id(search(client, "coffee", user_id=f"{fan}-fan"))
        off = by_id(search(client, "coffee", user_id=f"{fan}-fan", rules=OFF))
        lifted = 0
        for item, result in on.items():
            boost = sum(result["explain"].get("affinity", {}).values())
            assert result["explain"]["final"] == pytest.approx(off[item]["explain"]["final"] + boost, abs=1e-5)
            lifted += boost > 0
        assert lifted and all("affinity" not in result["explain"] for result in off.values())


def test_the_boost_is_bounded_a_strong_text_match_still_wins(client: TestClient) -> None:
    personal = search(client, "burr coffee grinder", user_id="acme-fan")
    # The brush matches one word of three; the grinder all of them, from the other brand.
    assert personal[0]["id"] == "brio-grinder"
    brush = by_id(personal)["acme-brush"]["explain"]
    assert 0 < sum(brush["affinity"].values()) <= SEARCH_AFFINITY_CATEGORY + SEARCH_AFFINITY_BRAND


def test_anonymous_and_history_less_searches_are_unchanged(client: TestClient) -> None:

    for query in ("electric kettle", "burr coffee grinder", "coffee"):
        anonymous = search(client, query)
        assert anonymous == search(client, query, rules=OFF)
        assert anonymous == search(client, query, user_id="nobody-yet")
        assert all("affinity" not in result["explain"] for result in anonymous)


def test_lean_is_the_excess_over_the_catalogue_share() -> None:
    base = np.array([0.5, 0.1, 1.0])
    # All of the user's weight on the first two values, none on the third.
    leaning = lean(np.array([8.0, 8.0, 0.0]), 8.0, base, prior=0.0)
    assert leaning.tolist() == [1.0, 1.0, 0.0]
    # A prior pulls a thin history towards the catalogue's mix.
    thin = lean(np.array([1.0, 0.0, 0.0]), 1.0, base, prior=4.0)
    assert 0 < thin[0] < 1 and thin[1] == 0.0 and thin[2] == 0.0


def test_a_profile_of_another_version_is_matched_by_name() -> None:
    """During a version swap the profile's rows are the old version's: the same affinities result."""
    products = [Item(i, brand=b, category=c) for i, _, b, c, _ in PRODUCTS]
    served = item_table(products)
    previous = item_table([*reversed(products), Item("gone", brand="Gone", category="Garden > Tools")])
    weights = {"acme-jug": 8.0, "acme-scale": 4.0, "brio-towel": 1.0, "gone": 2.0}
    same = affinity_of(served, {served.row_of[i]: w for i, w in weights.items() if i in served.row_of}, served)
    moved = affinity_of(previous, {previous.row_of[i]: w for i, w in weights.items()}, served)
    assert same is not None and moved is not None
    # "gone" adds weight (a real event of the user) but no category or brand of the served version.
    assert not np.allclose(same.category, moved.category)
    fair = affinity_of(previous, {previous.row_of[i]: w for i, w in weights.items() if i != "gone"}, served)
    assert fair is not None
    np.testing.assert_allclose(fair.category, same.category)
    np.testing.assert_allclose(fair.brand, same.brand)
    acme = served.brand_code_of["acme"]
    assert same.brand[acme] == same.brand.max() > 0
