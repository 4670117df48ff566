"""The storefront over HTTP: a category page and a search page, field visibility, GET filters, CORS."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.schemas import SearchResponse
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, settings_for

ROWS = [
    # id, name, gender, master, sub, type, colour, year, margin, score, image
    ("1", "Nike Men Running Shoes", "Men", "Footwear", "Shoes", "Sports Shoes", "Black", 2012, 0.4, 9, "img/1.jpg"),
    ("2", "Kalenji Women Running Shoe", "Women", "Footwear", "Shoes", "Sports Shoes", "Blue", 2015, 0.3, 8, "~/2.jpg"),
    ("3", "Puma Men Casual Shoes", "Men", "Footwear", "Shoes", "Casual Shoes", "White", 2014, 0.5, 7, ""),
    ("4", "Adidas Men Running Shoes", "Men", "Footwear", "Shoes", "Sports Shoes", "White", 2016, 0.2, 6, ""),
    ("5", "Nike Women Tshirt", "Women", "Apparel", "Topwear", "Tshirts", "Black", 2013, 0.6, 5, ""),
    ("6", "Puma Men Tshirt", "Men", "Apparel", "Topwear", "Tshirts", "Blue", 2012, 0.1, 4, ""),
    ("7", "Titan Men Watch", "Men", "Accessories", "Watches", "Watches", "Black", 2011, 0.7, 3, ""),
    ("8", "Fastrack Women Watch", "Women", "Accessories", "Watches", "Watches", "White", 2016, 0.2, 2, ""),
]
FIELDS = {
    "gender": ["searchable:2", "filterable", "facetable", "public"],
    "baseColour": ["searchable", "filterable", "facetable", "public"],
    "year": ["filterable", "sortable", "public"],
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "styles.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "productDisplayName", "gender", "masterCategory", "subCategory", "articleType", "baseColour"]
            + ["year", "margin", "score", "image"]
        )
        writer.writerows(ROWS)
    column_map = {"title": "productDisplayName", "category": "{masterCategory} > {subCategory} > {articleType}"}
    catalog = load_catalog(path, column_map)
    encoder = HashingEncoder()
    settings = settings_for(tmp_path, cors_origins=["https://shop.example.com"])
    build_version(catalog, settings.index_dir, encoder, BuildOptions(show_progress=False, fields=FIELDS))
    app = make_app(tmp_path, encoder, publish_first=False, cors_origins=["https://shop.example.com"])
    with TestClient(app) as test_client:
        yield test_client


def body(response) -> dict:
    assert response.status_code == 200, response.text
    payload = response.json()
    SearchResponse.model_validate(payload)
    return payload


def test_a_category_page_is_a_browse_with_facets_sort_and_pages(client: TestClient) -> None:
    page = body(
        client.post(
            "/search",
            json={"filters": {"category": "Footwear"}, "facets": ["gender", "baseColour"], "sort": "year:desc", "k": 2},
        )
    )
    assert page["total"] == 4 and page["matched"] is True
    assert page["facets"] == {"gender": {"Men": 3, "Women": 1}, "baseColour": {"White": 2, "Black": 1, "Blue": 1}}
    assert [r["id"] for r in page["results"]] == ["4", "2"]  # 2016, 2015
    second = body(
        client.post("/search", json={"filters": {"category": "Footwear"}, "sort": "year:desc", "k": 2, "offset": 2})
    )
    assert [r["id"] for r in second["results"]] == ["3", "1"]


def test_a_search_page_filters_on_any_attribute_and_counts_every_match(client: TestClient) -> None:
    page = body(
        client.post(
            "/search",
            json={"query": "men's running shoes", "filters": {"gender": "men"}, "facets": ["baseColour"], "k": 10},
        )
    )
    assert {r["gender"] for r in page["results"]} == {"Men"}
    assert page["results"][0]["id"] in {"1", "4"}
    assert sum(page["facets"]["baseColour"].values()) == page["total"] == len(page["results"])
    negated = body(client.post("/search", json={"query": "shoes", "filters": {"gender": {"not": "Men"}}}))
    assert [r["id"] for r in negated["results"]] == ["2"]
    ranged = body(client.post("/search", json={"filters": {"year": {"min": 2015}}, "sort": "year:asc"}))
    assert [r["year"] for r in ranged["results"]] == [2015, 2016, 2016]


def test_get_search_takes_the_same_filters_and_refuses_what_it_does_not_know(client: TestClient) -> None:
    page = body(
        client.get(
            "/search",
            params=[("q", "shoes"), ("filter.gender", "Men"), ("filter.year.min", "2013"), ("facets", "baseColour")],
        )
    )
    assert {r["id"] for r in page["results"]} == {"3", "4"} and page["facets"]["baseColour"] == {"White": 2}
    any_of = body(client.get("/search", params=[("filter.baseColour", "Blue"), ("filter.baseColour", "black")]))
    assert any_of["total"] == 5
    for params, fragment in (
        ({"q": "shoes", "colour": "Black"}, "unknown query parameter 'colour'"),
        ({"q": "shoes", "filter.material": "x"}, "filters.material: unknown field"),
        ({"q": "shoes", "filter.margin.max": "1"}, "filters.margin: 'margin' is not filterable"),
        ({"q": "shoes", "sort": "margin:asc"}, "sort: 'margin'"),
        ({"q": "shoes", "k": "ten"}, "k: expected an integer"),
        ({"q": "shoes", "offset": "995", "k": "10"}, "offset + k"),
    ):
        response = client.get("/search", params=params)
        assert response.status_code == 422, params
        assert fragment in response.json()["error"]["message"]


def test_only_public_fields_reach_callers(client: TestClient) -> None:
    results = body(client.post("/search", json={"query": "running shoes", "explain": True}))["results"]
    by_id = {r["id"]: r for r in results}
    first = by_id["1"]
    assert first["category"] == "Footwear > Shoes > Sports Shoes"
    assert first["image"] == "img/1.jpg"  # as the catalogue gave it, not a server path
    assert by_id["2"]["image"] == "~/2.jpg"
    for result in results:
        assert "margin" not in result and "masterCategory" not in result and "articleType" not in result
        assert isinstance(result["score"], float) and "rules" in result["explain"]  # not the column "score"


def test_a_query_that_matches_nothing_says_so(client: TestClient) -> None:
    page = body(client.post("/search", json={"query": "espresso grinder", "filters": {"category": "Accessories"}}))
    assert page == {**page, "total": 0, "matched": False, "results": []}


def test_cors_answers_the_configured_origin_only(client: TestClient) -> None:
    preflight = client.options(
        "/search",
        headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example.com"
    simple = client.get("/search", params={"q": "shoes"}, headers={"Origin": "https://shop.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    other = client.get("/search", params={"q": "shoes"}, headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as plain:
        response = plain.get("/search", params={"q": "knife"}, headers={"Origin": "https://shop.example.com"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
