"""``/search`` and ``/items/{id}/similar`` over HTTP: hybrid retrieval, rules, explanations, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.ranking.rules import RulesError
from aisle.service.schemas import SearchResponse
from tests.service.harness import make_app

# Catalogue "a" of the harness: a-3 (cast iron skillet), a-10, a-17 and a-24 are out of stock.
OUT_OF_STOCK = {"a-3", "a-10", "a-17", "a-24"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path_factory.mktemp("search"))) as client:
        yield client


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def test_response_shape_and_in_stock_default(client: TestClient) -> None:
    response = client.post("/search", json={"query": "stainless steel", "k": 30})
    body = response.json()
    assert set(body) == {"request_id", "index_version", "took_ms", "total", "matched", "results"}
    assert not OUT_OF_STOCK & set(ids(response)) and len(ids(response)) == body["total"] > 0
    # The only skillet is out of stock: nothing in stock matches, and the response says so.
    hidden = client.post("/search", json={"query": "cast iron skillet", "k": 30}).json()
    assert hidden["matched"] is False and hidden["total"] == 0 and hidden["results"] == []
    first = body["results"][0]
    assert {"id", "score", "title", "brand", "category", "price", "in_stock"} <= set(first)
    assert "explain" not in first
    # Bodies are serialized without the response model: they must still be what it documents.
    assert SearchResponse.model_validate_json(response.content).model_dump(exclude_none=True) == body
    lenient = client.post("/search", json={"query": "cast iron skillet", "rules": {"in_stock_only": False}})
    assert ids(lenient)[0] == "a-3"


def test_explain_parts_compose_to_the_score(client: TestClient) -> None:
    for response in (
        client.post("/search", json={"query": "coffee grinder", "explain": True}),
        client.get("/search", params={"q": "coffee grinder", "explain": "true"}),
    ):
        assert SearchResponse.model_validate_json(response.content).model_dump(exclude_none=True) == response.json()
        for result in response.json()["results"]:
            parts = result["explain"]
            composed = (
                parts["semantic"]
                + parts["lexical"]
                + parts["personal"]
                + parts["boosts"]
                - parts["penalties"]
                - parts["diversity"]
            )
            assert composed == pytest.approx(parts["final"], abs=1e-5) == pytest.approx(result["score"], abs=1e-5)
            assert parts["retrieved_by"] in ("dense", "lexical", "dense+lexical", "pin")


def test_lexical_retrieval_finds_exact_words(client: TestClient) -> None:
    assert ids(client.post("/search", json={"query": "Baratza", "retrieval": "lexical", "k": 3})) == ["a-7"]
    assert ids(client.post("/search", json={"query": "Baratza", "k": 3}))[0] == "a-7"
    # Dense-only hits far below the best one are not matches: they are not padded in.
    dense = client.post("/search", json={"query": "Baratza", "retrieval": "dense", "k": 3}).json()
    assert 1 <= len(dense["results"]) <= 3 and dense["total"] >= len(dense["results"])


def test_request_rules_pin_cap_and_exclude(client: TestClient) -> None:
    body = {
        "query": "knife",
        "k": 5,
        "explain": True,
        "exclude_ids": ["a-1"],
        "rules": {
            "pins": [{"item_id": "a-29", "position": 2}],
            "caps": [{"field": "category", "max": 1, "within": 5}],
            "diversity": {"lambda": 1.0},
        },
    }
    response = client.post("/search", json=body)
    results = response.json()["results"]
    assert ids(response)[1] == "a-29" and results[1]["explain"]["rules"][0] == "pin"
    assert "a-1" not in ids(response)
    categories = [result["category"] for result in results]
    assert len(categories) == len(set(categories))


def test_boost_rule_moves_results(client: TestClient) -> None:
    plain = ids(client.post("/search", json={"query": "coffee", "k": 5}))
    assert plain[0] != "a-8"
    boosted = client.post(
        "/search",
        json={
            "query": "coffee",
            "k": 5,
            "explain": True,
            "rules": {"boosts": {"brands": {"Bodum": 5.0}}},
        },
    )
    assert ids(boosted)[0] == "a-8"  # Bodum's French press
    assert "boost:brand" in boosted.json()["results"][0]["explain"]["rules"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"query": "knife", "filters": {"in_stock": False}}, "in_stock_only"),
        ({"query": "knife", "rules": {"diversity": {"lambda": 0}}}, "lambda"),
        ({"query": "knife", "rules": {"caps": [{"field": "brand", "max": 0}]}}, "max"),
        ({"query": "knife", "rules": {"colour": "red"}}, "colour"),
        ({"query": "knife", "rules": {"exploration": {"share": 2}}}, "share"),
        ({"query": "knife", "retrieval": "sparse"}, "retrieval"),
    ],
)
def test_bad_rules_are_422_with_the_envelope(client: TestClient, body: dict, fragment: str) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "invalid_request"


def test_similar_items(client: TestClient) -> None:
    response = client.get("/items/a-0/similar", params={"k": 5, "explain": "true"})
    assert "a-0" not in ids(response) and len(ids(response)) == 5
    assert not OUT_OF_STOCK & set(ids(response))
    results = response.json()["results"]
    assert all(result["explain"]["lexical"] == 0 for result in results)
    assert any(result["explain"]["diversity"] > 0 for result in results[1:])  # similar: λ < 1
    missing = client.get("/items/nope/similar")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_rules_file_pins_and_surfaces(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "pins: [{item_id: a-22, position: 1, query: 'desk lamp'}]\n"
        "surfaces: {similar: {pins: [{item_id: a-25, position: 1}]}}\n",
        encoding="utf-8",
    )
    with TestClient(make_app(tmp_path, rules_file=rules)) as client:
        assert ids(client.post("/search", json={"query": "Desk  LAMP"}))[0] == "a-22"
        assert ids(client.post("/search", json={"query": "lamp"}))[0] != "a-22"
        assert ids(client.get("/items/a-0/similar"))[0] == "a-25"


def test_invalid_rules_file_stops_the_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("caps: [{field: colour, max: 1}]\n", encoding="utf-8")
    with pytest.raises(RulesError, match="caps.0.field"):
        make_app(tmp_path, rules_file=rules)


def test_personalized_search_blends_the_profile_and_hides_purchases(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        events = [
            {"event_id": f"e{n}", "user_id": "u1", "item_id": item, "type": "purchase"}
            for n, item in enumerate(["a-0", "a-1", "a-2"])
        ]
        assert client.post("/events", json={"events": events}).status_code == 200
        anonymous = client.post("/search", json={"query": "stainless steel", "k": 5, "explain": True})
        assert "a-0" in ids(anonymous)
        assert all(result["explain"]["personal"] == 0 for result in anonymous.json()["results"])
        body = {"query": "stainless steel", "k": 5, "explain": True, "user_id": "u1"}
        headers = {"X-Request-ID": "fixed-request"}
        personal = client.post("/search", json=body, headers=headers)
        assert "a-0" not in ids(personal)  # bought within the window
        assert all(result["explain"]["personal"] > 0 for result in personal.json()["results"])
        assert ids(client.post("/search", json=body, headers=headers)) == ids(personal)
        similar = client.get("/items/a-4/similar", params={"user_id": "u1", "explain": "true"})
        assert not {"a-0", "a-1", "a-2"} & set(ids(similar))


def test_ef_search_setting_overrides_the_built_beam(tmp_path: Path) -> None:
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import load_catalog
    from aisle.service.app import create_app
    from tests.fakes import HashingEncoder
    from tests.service.harness import settings_for, write_catalog

    encoder = HashingEncoder()
    settings = settings_for(tmp_path, ef_search=77)
    settings.index_dir.mkdir(parents=True)
    catalog = load_catalog(write_catalog(tmp_path / "catalog.jsonl"))
    build_version(
        catalog, settings.index_dir, encoder, BuildOptions(show_progress=False, index_type="hnsw", ef_search=16)
    )
    app = create_app(settings, encoder_factory=lambda _settings: encoder)
    with TestClient(app) as client:
        ann = app.state.holder.engine.index.text.ann
        assert ann.params.ef_search == 77 and ann.faiss_index.hnsw.efSearch == 77
        assert client.post("/search", json={"query": "coffee grinder", "k": 3}).json()["results"]
