"""Bodies parsed by pydantic-core: every body route uses it, and what a body means is unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.json_body import FastJsonRoute
from aisle.service.routes import api_routes, original_route
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    encoder = HashingEncoder()
    publish(tmp_path / "index", encoder, "a")
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        yield client


def test_every_route_with_a_body_parses_it_with_the_fast_parser(client: TestClient) -> None:
    with_body = [route for route in api_routes(client.app) if original_route(route).body_field is not None]
    assert {"/search", "/events"} <= {route.path for route in with_body}
    slow = [
        f"{sorted(route.methods)} {route.path}"
        for route in with_body
        if not isinstance(original_route(route), FastJsonRoute)
    ]
    assert slow == []


def _post(client: TestClient, body: bytes):
    return client.post("/search", content=body, headers={"content-type": "application/json"})


def test_a_body_means_what_the_standard_parser_makes_of_it(client: TestClient) -> None:
    # Duplicate keys: the last wins, as with json.loads.
    first = _post(client, b'{"query": "ignored", "query": "lamp", "k": 3}')
    assert first.status_code == 200, first.text
    assert first.json()["results"] == _post(client, b'{"query": "lamp", "k": 3}').json()["results"]
    # A lone surrogate escape: pydantic-core refuses it, the standard parser reads it, and the
    # query is refused by validation, naming the field, as before.
    surrogate = _post(client, b'{"query": "lamp \\ud800", "k": 3}')
    assert surrogate.status_code == 422, surrogate.text
    assert surrogate.json()["error"]["message"].startswith("query: ")
    # Numbers far beyond float range are infinite either way, and refused by validation.
    huge = _post(client, b'{"query": "lamp", "k": 3, "rules": {"boosts": {"brands": {"a": 1e400}}}}')
    assert huge.status_code == 422, huge.text


def test_malformed_bodies_are_refused_as_before(client: TestClient) -> None:
    for body in (b"not json", b'{"query": "lamp"', b"\xff\xfe{}", b'{"query": "lamp",}'):
        response = _post(client, body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["message"].startswith("the request body is not valid JSON"), body


def test_the_standard_parser_decides_what_pydantic_core_refuses() -> None:
    from pydantic_core import from_json

    with pytest.raises(ValueError):
        from_json(b'"\\ud800"')
    assert json.loads(b'"\\ud800"') == "\ud800"
