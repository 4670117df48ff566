"""The playground's HTTP side: the page, its first results, its helpers and the offline docs.

Fast tests on a real app (real index files, the tests' hashing encoder); what the page does in
a browser is in ``test_browser.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from aisle.service.playground import STATIC_DIR
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, settings_for

KEY = "playground-key"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as client:
        yield client


def test_the_page_is_served_at_the_root_with_a_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert '<script type="module" src="/playground/static/js/main.js">' in response.text


def test_a_shared_search_link_has_its_results_in_the_html(client: TestClient) -> None:
    expected = client.post("/search", json={"query": "chef knife", "k": 12}).json()["results"]
    page = client.get("/", params={"q": "chef knife"}).text
    listed = re.findall(r'<a href="/\?item=([^"]+)">', page)
    assert listed == [result["id"] for result in expected]
    assert expected[0]["title"] in page


def test_first_results_escape_catalogue_text_and_queries(client: TestClient) -> None:
    page = client.get("/", params={"q": '<script>alert("x")</script>'}).text
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;" in page


def test_every_file_the_page_loads_is_served_from_the_package(client: TestClient) -> None:
    page = client.get("/").text
    local = re.findall(r'(?:src|href)="(/playground/static/[^"]+)"', page)
    modules = [path.relative_to(STATIC_DIR) for path in (STATIC_DIR / "js").rglob("*.js")]
    assert len(local) >= 3 and modules
    for url in local + [f"/playground/static/{module.as_posix()}" for module in modules]:
        response = client.get(url)
        assert response.status_code == 200, url
    assert not re.search(r"https?://", page), "the page must not reference another origin"
    for script in (STATIC_DIR / "js").rglob("*.js"):
        imports = re.findall(r'from "([^"]+)"', script.read_text())
        assert all(target.startswith(".") for target in imports), f"{script.name} imports from outside the package"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_only_shipped_assets(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, "the docs page loads no script?"
    for asset in assets:
        assert asset.startswith("/playground/static/vendor/"), f"{path} loads {asset}"
        assert client.get(asset).status_code == 200, asset
    assert "fonts.googleapis" not in page.text and "cdn.jsdelivr" not in page.text
    assert client.get("/openapi.json").status_code == 200


def test_vendored_assets_carry_their_licences() -> None:
    for folder in ("swagger-ui", "redoc"):
        assert (STATIC_DIR / "vendor" / folder / "LICENSE").is_file()


def test_playground_helpers_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/playground") or path in ("/", "/docs", "/redoc")]


def test_item_detail_shows_public_fields_only(client: TestClient) -> None:
    body = client.get("/playground/api/items/a-0").json()
    assert body["item"]["id"] == "a-0" and body["item"]["title"].startswith("Chef knife")
    assert "margin" not in body["item"] and "boost" not in body["item"]
    missing = client.get("/playground/api/items/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_catalogue_counts_cover_every_product(client: TestClient) -> None:
    body = client.get("/playground/api/catalogue").json()
    assert body["items"] == 30
    assert sum(entry["count"] for entry in body["brands"]) == 30
    assert sum(entry["count"] for entry in body["categories"]) == 30
    assert {"name": "Kitchen > Knives", "count": 3} in body["categories"]
    assert body["attributes"]["color"] == {"facetable": True, "sortable": False}


def test_bought_together_follows_shoppers_events(client: TestClient) -> None:
    assert client.get("/playground/api/items/a-6/bought-together").json()["results"] == []
    events = [
        {
            "event_id": f"e{n}",
            "user_id": f"u{n // 2}",
            "item_id": item,
            "type": "purchase",
            "timestamp": 1_700_000_000 + n,
        }
        for n, item in enumerate(["a-6", "a-7", "a-6", "a-7", "a-6", "a-8"])
    ]
    assert client.post("/events", json={"events": events}).status_code == 200
    results = client.get("/playground/api/items/a-6/bought-together").json()["results"]
    assert [result["id"] for result in results] == ["a-7", "a-8"]
    assert results[0]["weight"] == 1.0 and 0 < results[1]["weight"] < 1


def test_versions_need_the_key_when_one_is_set(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, api_key=KEY)) as client:
        assert client.get("/playground/api/versions").status_code == 401
        body = client.get("/playground/api/versions", headers={"X-API-Key": KEY}).json()
        assert [version["name"] for version in body["versions"]] == [body["serving"]]
        assert body["versions"][0]["items"] == 30 and body["versions"][0]["current"] is True


def _picture_app(tmp_path: Path) -> TestClient:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(pictures / "red.jpg")
    Image.new("RGB", (8, 8), (30, 30, 200)).save(pictures / "blue.png")
    (pictures / "secret.jpg").write_text("not a picture")
    (pictures / "notes.txt").write_text("a text file")
    rows = [
        {"id": "jpg", "title": "Red mug", "image": "pictures/red.jpg"},
        {"id": "png", "title": "Blue mug", "image": str(pictures / "blue.png")},
        {"id": "url", "title": "Green mug", "image": "https://shop.example/green.jpg"},
        {"id": "fake", "title": "Fake picture", "image": "pictures/secret.jpg"},
        {"id": "text", "title": "Text file", "image": "pictures/notes.txt"},
        {"id": "gone", "title": "Missing picture", "image": "pictures/gone.jpg"},
        {"id": "none", "title": "No picture"},
    ]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = settings_for(tmp_path)
    encoder = HashingEncoder()
    build_version(load_catalog(catalog), settings.index_dir, encoder, BuildOptions(show_progress=False))
    return TestClient(create_app(settings, encoder_factory=lambda _settings: encoder))


def test_pictures_are_served_by_item_id_and_only_when_they_are_pictures(tmp_path: Path) -> None:
    with _picture_app(tmp_path) as client:
        jpg = client.get("/playground/images/jpg")
        assert jpg.status_code == 200 and jpg.headers["content-type"] == "image/jpeg"
        assert jpg.content == (tmp_path / "pictures" / "red.jpg").read_bytes()
        assert jpg.headers["x-content-type-options"] == "nosniff"
        assert client.get("/playground/images/png").headers["content-type"] == "image/png"
        url = client.get("/playground/images/url", follow_redirects=False)
        assert url.status_code == 307 and url.headers["location"] == "https://shop.example/green.jpg"
        for item in ("fake", "text", "gone", "none", "unknown"):
            response = client.get(f"/playground/images/{item}")
            assert response.status_code == 404, item
            assert "error" in response.json()
        # The request names an item, never a file: a path in its place is just an unknown id.
        assert client.get("/playground/images/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_relative_pictures_are_found_next_to_the_versions_catalogue(tmp_path: Path) -> None:
    """A version that keeps the catalogue's own (relative) path still finds the file."""
    from aisle.service.playground.pictures import picture_path

    with _picture_app(tmp_path) as client:
        engine = client.app.state.holder.engine
        assert picture_path(engine, "pictures/red.jpg") == tmp_path / "pictures" / "red.jpg"
        assert picture_path(engine, str(tmp_path / "x.png")) == tmp_path / "x.png"


def test_static_files_stay_inside_their_folder_and_are_labelled_in_metrics(client: TestClient) -> None:
    script = client.get("/playground/static/js/main.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    for escape in ("../pages.py", "..%2Fpages.py", "%2e%2e/%2e%2e/app.py", "js/../../api.py", "nope.js"):
        response = client.get(f"/playground/static/{escape}")
        assert response.status_code == 404, escape
        assert response.json()["error"]["code"] == "not_found"
    metrics = client.get("/metrics").text
    assert 'route="/playground/static/{asset:path}",status="200"' in metrics


def test_the_first_search_is_embedded_for_the_page_to_reuse(client: TestClient) -> None:
    page = client.get("/", params={"q": "knife </script><!-- & more"}).text
    block = re.search(r'<script type="application/json" id="first-response"[^>]*>(.*?)</script>', page, re.S)
    assert block is not None
    assert "<" not in block.group(1) and "&" not in block.group(1)
    embedded = json.loads(block.group(1))
    asked = embedded["request"]
    assert {key: asked[key] for key in ("query", "k", "explain")} == {
        "query": "knife </script><!-- & more",
        "k": 12,
        "explain": True,
    }
    # Beside those, only what the page adds when the service supports it (pages, facets).
    assert set(asked) - {"query", "k", "explain"} <= {"offset", "facets"}
    assert [result["id"] for result in embedded["response"]["results"]] == re.findall(
        r'<a href="/\?item=([^"]+)">', page
    )
    # Another view, or a link with filters, is left to the page's script.
    assert "first-response" not in client.get("/", params={"q": "knife", "brand": "Opinel"}).text
