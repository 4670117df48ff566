"""``GET /suggest``, highlighting, spelling fields, the query log and the query cache over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.schemas import SearchResponse, SuggestResponse
from tests.service.harness import make_app, publish


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path_factory.mktemp("suggest"))) as client:
        yield client


def suggest(client: TestClient, q: str, **params: object) -> dict:
    response = client.get("/suggest", params={"q": q, **params})
    assert response.status_code == 200, response.text
    assert SuggestResponse.model_validate_json(response.content).model_dump(exclude_none=True) == response.json()
    return response.json()


def test_prefixes_find_products_and_complete_the_word(client: TestClient) -> None:
    body = suggest(client, "dumbb")
    assert [r["id"] for r in body["results"]] == ["a-12"]
    assert body["suggestions"] == [{"text": "dumbbells", "source": "catalogue"}]
    assert body["results"][0]["highlight"]["title"]["value"] == "Adjustable <em>dumbb</em>ells pair [a]"
    running = suggest(client, "runn", k=3)
    assert {r["id"] for r in running["results"]} == {"a-9"}  # a-10, the trail shoe, is out of stock


def test_completions_follow_the_words_already_typed(client: TestClient) -> None:
    assert [s["text"] for s in suggest(client, "coffee gr")["suggestions"]] == ["coffee grinder"]
    texts = [s["text"] for s in suggest(client, "stainless s")["suggestions"]]
    assert texts[0] == "stainless steel" and all(text.startswith("stainless s") for text in texts)


def test_typos_in_finished_words_are_corrected(client: TestClient) -> None:
    body = suggest(client, "cofee gr")
    assert body["corrected_query"] == "coffee gr"
    assert body["results"][0]["id"] == "a-7"
    assert body["suggestions"][0]["text"] == "coffee grinder"
    # The word being typed is completed, not corrected: the spelling is the results' analysis.
    assert suggest(client, "cofee grinde")["corrected_query"] == "coffee grinde"


def test_bad_requests_are_refused_with_the_error_envelope(client: TestClient) -> None:
    cases = [
        ({"q": ""}, "query.q: String should have at least 1 character"),
        ({"q": "a", "k": 0}, "query.k: Input should be greater than or equal to 1"),
        ({"q": "a", "k": 21}, "query.k: Input should be less than or equal to 20"),
        ({"q": "a", "k": "five"}, "query.k: Input should be a valid integer"),
        ({"q": "x" * 129}, "query.q: String should have at most 128 characters"),
        ({"q": "a", "user_id": ""}, "query.user_id: String should have at least 1 character"),
        ({}, "query.q: Field required"),
    ]
    for params, message in cases:
        response = client.get("/suggest", params=params)
        assert response.status_code == 422, params
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["message"].startswith(message), (params, error)
        assert error["request_id"] == response.headers["X-Request-ID"]


def test_the_parameters_the_route_reads_itself_are_documented(client: TestClient) -> None:
    parameters = client.get("/openapi.json").json()["paths"]["/suggest"]["get"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    assert set(by_name) == {"q", "k", "user_id", "session_id"}
    assert by_name["q"]["required"] and not by_name["k"]["required"]
    assert by_name["k"]["schema"]["maximum"] == 20 and by_name["q"]["schema"]["maxLength"] == 128


def test_a_prefix_matching_nothing_answers_empty(client: TestClient) -> None:
    body = suggest(client, "zzq")
    assert body["suggestions"] == [] and body["results"] == []


def test_suggestions_are_personalized_for_a_user(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        # "s" begins many words; the user who bought audio gear sees the audio products first.
        anonymous = [r["id"] for r in suggest(client, "s", k=10)["results"]]
        events = [
            {"event_id": f"e{n}", "user_id": "u1", "item_id": item, "type": "purchase"}
            for n, item in enumerate(["a-18", "a-19"])
        ]
        assert client.post("/events", json={"events": events}).status_code == 200
        personal = [r["id"] for r in suggest(client, "s", k=10, user_id="u1")["results"]]
        assert personal != anonymous
        assert "a-18" not in personal  # bought recently: hidden as in search


def test_searched_queries_become_suggestions_without_user_ids(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, query_log_min_count=2)) as client:
        assert [s["source"] for s in suggest(client, "coff")["suggestions"]] == ["catalogue"]  # now cached
        for user in ("u1", "u2"):
            client.post("/search", json={"query": "Coffee  Grinder", "user_id": user})
            client.post("/search", json={"query": "cofee maker"})
            client.post("/search", json={"query": "coffee for mail@example.com"})
        client.post("/search", json={"query": "coffee beans"})  # once: never shown to others
        client.app.state.query_log.flush()
        texts = [s["text"] for s in suggest(client, "coff")["suggestions"] if s["source"] == "queries"]
        assert texts == ["coffee grinder"]
        assert [s["source"] for s in suggest(client, "cofee")["suggestions"]][:1] == ["queries"]
    saved = (tmp_path / "data" / "query_log.json").read_text()
    assert "u1" not in saved and "example.com" not in saved
    assert json.loads(saved)["counts"]["coffee grinder"] == 2
    with TestClient(make_app(tmp_path, publish_first=False, query_log_min_count=2)) as client:
        assert suggest(client, "coffee g")["suggestions"][0] == {"text": "coffee grinder", "source": "queries"}


def test_search_says_what_it_corrected_and_highlights_on_request(client: TestClient) -> None:
    response = client.post("/search", json={"query": "stainles steel knif", "k": 3, "highlight": True})
    body = response.json()
    assert SearchResponse.model_validate_json(response.content).model_dump(exclude_none=True) == body
    assert body["corrected_query"] == "stainless steel knif"  # four letters: "knif" is left alone
    first = body["results"][0]
    assert first["id"] == "a-0"
    assert first["highlight"]["title"] == {
        "value": "Chef knife, <em>stainless</em> <em>steel</em>, 8 inch [a]",
        "words": ["stainles", "steel"],
    }
    plain = client.get("/search", params={"q": "espresso machine"}).json()
    assert "highlight" not in plain["results"][0] and "corrected_query" not in plain
    marked = client.get("/search", params={"q": "espresso machine", "highlight": "true"}).json()
    assert marked["results"][0]["highlight"]["title"]["words"] == ["espresso", "machine"]


def test_the_query_cache_is_per_version(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        engine = client.app.state.holder.engine
        for _ in range(3):
            client.post("/search", json={"query": "yoga mat"})
        assert engine.query_vectors.stats()["hits"] == 2
        assert "aisle_query_cache_hits 2.0" in client.get("/metrics").text
        publish(tmp_path / "index", engine.encoder, "b")
        assert client.post("/admin/reload").status_code == 200
        fresh = client.app.state.holder.engine
        assert fresh is not engine and fresh.query_vectors.stats()["hits"] == 0
        assert client.post("/search", json={"query": "yoga mat"}).json()["results"][0]["id"].startswith("b-")
        assert fresh.query_vectors.stats()["hits"] == 0  # encoded anew for the new version


def test_repeated_prefixes_are_answered_from_the_engine_cache_until_the_catalogue_changes(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        first = suggest(client, "dumbb")
        engine = client.app.state.holder.engine
        hits = engine.suggestions.stats()["hits"]
        again = suggest(client, "dumbb")
        assert engine.suggestions.stats()["hits"] == hits + 1
        assert {key: value for key, value in again.items() if key not in ("request_id", "took_ms")} == {
            key: value for key, value in first.items() if key not in ("request_id", "took_ms")
        }
        # A live change publishes a new engine: the same prefix sees the out-of-stock product go.
        assert client.patch("/items/a-12", json={"in_stock": False}).status_code == 200
        assert client.app.state.holder.engine is not engine
        assert suggest(client, "dumbb")["results"] == []
        # A personalized request is never answered from (nor stored in) the anonymous cache.
        entries = client.app.state.holder.engine.suggestions.stats()["entries"]
        suggest(client, "dumbb", user_id="u1")
        assert client.app.state.holder.engine.suggestions.stats()["entries"] == entries
