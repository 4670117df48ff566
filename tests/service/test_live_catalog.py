"""The live catalogue through the API: PUT/PATCH/DELETE/batch, visible on every read route at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.changes import CHANGES_FILE, ChangeLog, fold_log
from tests.fakes import HashingEncoder
from tests.service.harness import make_app


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def client(tmp_path: Path, encoder: HashingEncoder) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        yield client


def search_ids(client: TestClient, query: str, **body) -> list[str]:
    response = client.post("/search", json={"query": query, "k": 10, **body})
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def test_a_new_product_is_searchable_densely_and_lexically_at_once(client: TestClient) -> None:
    product = {"title": "Zyxwv titanium spork", "brand": "Kupilka", "category": "Outdoor > Camping", "price": 9.5}
    response = client.put("/items/new-1", json=product)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted" and response.json()["visible"] is True
    assert search_ids(client, "zyxwv")[0] == "new-1"  # a token no product of the version has
    assert "new-1" in search_ids(client, "titanium spork", retrieval="dense")
    assert client.get("/items/new-1").json()["item"]["title"] == "Zyxwv titanium spork"
    assert search_ids(client, "spork", filters={"category": "Outdoor"}) == ["new-1"]
    assert search_ids(client, "spork", filters={"price_max": 5}) == []


def test_a_price_patch_moves_the_product_in_and_out_of_filters(client: TestClient) -> None:
    assert "a-0" in search_ids(client, "chef knife", filters={"price_max": 50})
    response = client.patch("/items/a-0", json={"price": 500})
    assert response.status_code == 200, response.text
    assert "a-0" not in search_ids(client, "chef knife", filters={"price_max": 50})
    assert "a-0" in search_ids(client, "chef knife", filters={"price_min": 400})
    result = client.post("/search", json={"query": "chef knife", "k": 3}).json()["results"]
    assert {r["id"]: r["price"] for r in result}["a-0"] == 500


def test_out_of_stock_patch_hides_the_product_under_the_in_stock_rule(client: TestClient) -> None:
    assert "a-0" in search_ids(client, "chef knife")
    client.patch("/items/a-0", json={"in_stock": False})
    assert "a-0" not in search_ids(client, "chef knife")
    client.patch("/items/a-0", json={"in_stock": "in stock"})
    assert "a-0" in search_ids(client, "chef knife")


def test_attributes_patch_merges_and_null_removes(client: TestClient) -> None:
    client.patch("/items/a-1", json={"attributes": {"size": "XL", "color": None}})
    item = client.get("/items/a-1").json()["item"]
    assert "size" not in item and "color" not in item  # attributes not configured public stay private
    items = client.app.state.holder.engine.index.items
    assert items.product(items.row_of["a-1"]).attributes == {"size": "XL"}
    # A changed value of a field of the version's schema is what filters and facets see.
    client.patch("/items/a-2", json={"attributes": {"color": "red"}})
    found = client.post("/search", json={"filters": {"color": "Red"}, "facets": ["color"]}).json()
    assert [r["id"] for r in found["results"]] == ["a-2"] and found["facets"]["color"] == {"red": 1}


def test_a_retitled_product_is_found_by_its_new_words_only(client: TestClient) -> None:
    assert "a-7" in search_ids(client, "burr grinder")
    client.patch("/items/a-7", json={"title": "Qwertzuiop kettle, gooseneck"})
    assert search_ids(client, "qwertzuiop")[0] == "a-7"
    assert "a-7" not in search_ids(client, "burr", retrieval="lexical")


def test_a_deleted_product_leaves_every_surface(client: TestClient) -> None:
    for event_id, item in enumerate(["a-0", "a-1", "a-0", "a-1", "a-2"]):
        client.post(
            "/events",
            json={"events": [{"event_id": f"e{event_id}", "user_id": "u1", "item_id": item, "type": "purchase"}]},
        )
    assert client.delete("/items/a-1").status_code == 200
    assert "a-1" not in search_ids(client, "paring knife")
    assert client.get("/items/a-1").status_code == 404
    assert client.get("/items/a-1/similar").status_code == 404
    similar = client.get("/items/a-0/similar?k=20").json()["results"]
    assert "a-1" not in {r["id"] for r in similar}
    recs = client.get("/users/u1/recommendations?k=30").json()["results"]
    assert "a-1" not in {r["id"] for r in recs}
    cold = client.get("/users/nobody/recommendations?k=30").json()["results"]
    assert "a-1" not in {r["id"] for r in cold}
    # Deleting again: unknown now.
    assert client.delete("/items/a-1").status_code == 404
    # Added back, it is served again.
    assert client.put("/items/a-1", json={"title": "Paring knife with wooden handle"}).status_code == 200
    assert "a-1" in search_ids(client, "paring knife")


def test_bad_products_get_the_catalogue_errors(client: TestClient) -> None:
    response = client.put("/items/x", json={"title": "", "price": "abc"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "field 'title'" in message and "field 'price'" in message and "not a number" in message
    response = client.put("/items/x", json={"id": "y", "title": "T"})
    assert response.status_code == 422 and "differs" in response.json()["error"]["message"]
    response = client.patch("/items/a-0", json={"price": "cheap"})
    assert response.status_code == 422 and "field 'price'" in response.json()["error"]["message"]
    response = client.patch("/items/a-0", json={"sku": "1"})
    assert response.status_code == 422 and "cannot be patched" in response.json()["error"]["message"]
    assert client.patch("/items/nope", json={"price": 1}).status_code == 404
    assert client.put("/items/x", json=[1, 2]).status_code == 422


def test_change_ids_make_changes_idempotent(client: TestClient, tmp_path: Path) -> None:
    first = client.put("/items/n-1?change_id=c1", json={"title": "Widget one"})
    again = client.put("/items/n-1?change_id=c1", json={"title": "Widget one"})
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    conflict = client.put("/items/n-1?change_id=c1", json={"title": "Widget two"})
    assert conflict.status_code == 409
    header = client.patch("/items/n-1", json={"price": 3}, headers={"Idempotency-Key": "c2"})
    assert header.json()["status"] == "accepted"
    assert client.patch("/items/n-1", json={"price": 3}, headers={"Idempotency-Key": "c2"}).json()["duplicates"] == 1
    log = ChangeLog(tmp_path / "index" / CHANGES_FILE, writer=False)
    assert [c.change_id for c in log.read_after(0)] == ["c1", "c2"]
    log.close()


def test_batch_is_all_or_nothing_and_ordered(client: TestClient) -> None:
    bad = client.post(
        "/items/batch",
        json={
            "changes": [
                {"op": "upsert", "item": {"id": "b-1", "title": "Batch lamp"}},
                {"op": "patch", "id": "zz", "fields": {"price": 1}},
            ]
        },
    )
    assert bad.status_code == 404
    assert client.get("/items/b-1").status_code == 404
    invalid = client.post("/items/batch", json={"changes": [{"op": "patch", "id": "a-0", "fields": {"price": "x"}}]})
    assert invalid.status_code == 422 and "changes[1]" in invalid.json()["error"]["message"]
    good = client.post(
        "/items/batch",
        json={
            "changes": [
                {"op": "upsert", "item": {"id": "b-1", "title": "Batch lamp", "price": 10}, "change_id": "k1"},
                {"op": "patch", "id": "b-1", "fields": {"title": "Batch lantern xylophonic"}},
                {"op": "delete", "id": "a-2"},
            ]
        },
    )
    assert good.status_code == 200, good.text
    assert good.json()["accepted"] == 3
    assert search_ids(client, "xylophonic")[0] == "b-1"
    assert search_ids(client, "xylophonic", retrieval="lexical") == ["b-1"]
    assert client.get("/items/a-2").status_code == 404


def test_writes_need_the_api_key_when_one_is_set(tmp_path: Path, encoder: HashingEncoder) -> None:
    with TestClient(make_app(tmp_path, encoder=encoder, api_key="s3cret")) as client:
        assert client.put("/items/k", json={"title": "T"}).status_code == 401
        assert client.patch("/items/a-0", json={"price": 1}).status_code == 401
        assert client.delete("/items/a-0").status_code == 401
        assert client.post("/items/batch", json={"changes": [{"op": "delete", "id": "a-0"}]}).status_code == 401
        assert client.put("/items/k", json={"title": "T"}, headers={"X-API-Key": "s3cret"}).status_code == 200


def test_changes_survive_a_restart(tmp_path: Path, encoder: HashingEncoder) -> None:
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        client.put("/items/r-1", json={"title": "Gramophone needle"})
        client.patch("/items/a-0", json={"price": 1.5})
        client.delete("/items/a-3")
    app = make_app(tmp_path, encoder=encoder, publish_first=False)
    with TestClient(app) as client:
        assert search_ids(client, "gramophone")[0] == "r-1"
        assert client.get("/items/a-0").json()["item"]["price"] == 1.5
        assert client.get("/items/a-3").status_code == 404


def test_an_upsert_racing_a_rebuild_survives_the_swap(tmp_path: Path, encoder: HashingEncoder) -> None:
    """The rebuild reads the log, a change is accepted, the rebuild publishes: the change stays."""
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import Catalog, load_catalog
    from tests.service.harness import write_catalog

    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        client.put("/items/before", json={"title": "Harpsichord tuning fork"})
        index_root = tmp_path / "index"
        products = load_catalog(write_catalog(tmp_path / "catalog-b.jsonl", "a")).products
        folded = fold_log(index_root, products, encoder.fingerprint)  # the rebuild's snapshot of the log
        # Accepted while the rebuild runs: after its snapshot.
        client.put("/items/during", json={"title": "Theremin antenna"})
        client.patch("/items/before", json={"price": 77})
        client.delete("/items/a-5")
        build_version(
            Catalog(folded.products),
            index_root,
            encoder,
            BuildOptions(show_progress=False),
            live_sequence=folded.sequence,
            known_vectors=folded.vectors,
        )
        swapped = client.post("/admin/reload").json()
        assert swapped["swapped"] is True
        assert search_ids(client, "harpsichord")[0] == "before"
        assert search_ids(client, "theremin")[0] == "during"
        assert client.get("/items/before").json()["item"]["price"] == 77
        assert client.get("/items/a-5").status_code == 404
        # Rolled back to the version before the rebuild, every change is still served.
        from aisle.index.versions import VersionStore

        VersionStore(index_root).rollback(None)
        assert client.post("/admin/reload").json()["swapped"] is True
        assert search_ids(client, "theremin")[0] == "during"
        assert search_ids(client, "harpsichord")[0] == "before"
        assert client.get("/items/a-5").status_code == 404


def test_a_swap_during_a_stream_of_changes_keeps_every_acknowledged_change(
    tmp_path: Path, encoder: HashingEncoder
) -> None:
    import threading

    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import Catalog, load_catalog
    from tests.service.harness import write_catalog

    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        index_root = tmp_path / "index"
        stop = threading.Event()
        acknowledged: dict[str, float] = {}
        failures: list[str] = []
        progress = threading.Semaphore(0)

        def stream() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                response = client.patch(f"/items/a-{n % 30}", json={"price": float(n)}, params={"change_id": f"p{n}"})
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                acknowledged[f"a-{n % 30}"] = float(n)
                progress.release()

        products = load_catalog(write_catalog(tmp_path / "catalog-c.jsonl", "a")).products
        thread = threading.Thread(target=stream)
        thread.start()
        try:
            swaps = 0
            while swaps < 3 or len(acknowledged) < 30:
                swaps += 1
                assert swaps < 100, f"the stream stalled: {len(acknowledged)} changes acknowledged"
                folded = fold_log(index_root, products, encoder.fingerprint)
                build_version(
                    Catalog(folded.products),
                    index_root,
                    encoder,
                    BuildOptions(show_progress=False, keep_versions=10),
                    live_sequence=folded.sequence,
                    known_vectors=folded.vectors,
                )
                assert client.post("/admin/reload").json()["swapped"] is True
                # Let the stream move between swaps: on a busy machine the builds could otherwise
                # take every turn of the shared client.
                for _ in range(10):
                    progress.acquire(timeout=5)
        finally:
            stop.set()
            thread.join(30)
        assert failures == []
        assert len(acknowledged) == 30 and swaps >= 3
        for item_id, price in acknowledged.items():
            assert client.get(f"/items/{item_id}").json()["item"]["price"] == price


def test_popularity_and_profiles_follow_a_new_product(client: TestClient) -> None:
    assert client.put("/items/hot-1", json={"title": "Glow-in-the-dark frisbee", "price": 15}).status_code == 200
    events = [{"event_id": f"h{n}", "user_id": f"u{n}", "item_id": "hot-1", "type": "purchase"} for n in range(5)] + [
        {"event_id": "v1", "user_id": "fan", "item_id": "hot-1", "type": "view"}
    ]
    response = client.post("/events", json={"events": events})
    assert response.status_code == 200 and response.json()["accepted"] == 6, response.text
    cold = client.get("/users/newcomer/recommendations?k=5").json()["results"]
    assert cold[0]["id"] == "hot-1"  # the best seller of the shop now
    profile = client.get("/users/fan/profile").json()
    assert "hot-1" in json.dumps(profile)
    # Deleted, it leaves the popular list at once, though its events stay stored.
    client.delete("/items/hot-1")
    cold = client.get("/users/newcomer/recommendations?k=5").json()["results"]
    assert "hot-1" not in {r["id"] for r in cold}
