"""Recommendations match the words of a customer's items (``recommend_lexical_weight``).

The encoder here is blind to brand names, so the text vectors of a Zorblax clamp and its Quintor
twin are identical: only the title match can know that a customer who bought two Zorblax items
wants the third one first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from tests.fakes import HashingEncoder
from tests.service.harness import settings_for

BRANDS = ("zorblax", "quintor")
KINDS = ("clamp", "vise", "gauge", "caliper", "level")
DAY_S = 86_400.0


class BrandBlindEncoder(HashingEncoder):
    """The hashing encoder without the brand words: two brands' twins get the same vector."""

    def _features(self, text: str) -> list[str]:
        kept = " ".join(word for word in text.lower().split() if word not in BRANDS)
        return super()._features(kept)


def catalogue() -> list[dict[str, str]]:
    rows = [
        {"id": f"{brand[:3]}-{kind}", "title": f"{brand} steel {kind} for the workshop"}
        for brand in BRANDS
        for kind in KINDS
    ]
    # Filler products make the brand words rare, as brands are in a real catalogue.
    rows += [{"id": f"other-{n}", "title": f"garden hose fitting {n} brass"} for n in range(60)]
    return rows


def recommendations(tmp_path: Path, weight: float) -> list[dict]:
    folder = tmp_path / f"weight-{weight}"
    folder.mkdir()
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in catalogue()), encoding="utf-8")
    encoder = BrandBlindEncoder(dim=128)
    settings = settings_for(folder, recommend_lexical_weight=weight)
    build_version(load_catalog(catalog), settings.index_dir, encoder, BuildOptions(show_progress=False))
    now = time.time()
    bought = ["zor-clamp", "zor-vise"]
    events = [
        {"event_id": f"e{n}", "user_id": "maker", "item_id": item, "type": "purchase", "timestamp": now - n * DAY_S}
        for n, item in enumerate(bought)
    ]
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        assert client.post("/events", json={"events": events}).status_code == 200
        response = client.get("/users/maker/recommendations", params={"k": 8, "explain": "true"})
        assert response.status_code == 200, response.text
        return response.json()["results"]


def personal_part(results: list[dict], item_id: str) -> float:
    return next(result["explain"]["personal"] for result in results if result["id"] == item_id)


@pytest.mark.parametrize("kind", ["gauge", "caliper", "level"])
def test_the_brand_bought_comes_before_its_twin_of_another_brand(tmp_path: Path, kind: str) -> None:
    matched = recommendations(tmp_path, weight=0.3)
    ids = [result["id"] for result in matched]
    zorblax = [item for item in ids if item.startswith("zor-")]
    assert set(zorblax) == {"zor-gauge", "zor-caliper", "zor-level"}
    assert ids[:3] == zorblax, ids
    # The twins are equally close in vector space; the title match is the whole difference.
    assert personal_part(matched, f"zor-{kind}") > personal_part(matched, f"qui-{kind}")


def test_without_the_title_match_the_twins_are_tied(tmp_path: Path) -> None:
    plain = recommendations(tmp_path, weight=0.0)
    for kind in ("gauge", "caliper", "level"):
        assert personal_part(plain, f"zor-{kind}") == pytest.approx(personal_part(plain, f"qui-{kind}"), abs=1e-6)
