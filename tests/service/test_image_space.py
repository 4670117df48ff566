"""Serving a version with pictures: fused text-to-image search, similar items from both spaces,
image profiles, explanations that name the modality, and one picture shown once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aisle.embed import ImageEncoderConfig, create_image_encoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.index.loaded import LoadedIndex
from aisle.service.app import create_app
from aisle.service.engine import Engine
from aisle.service.ranking.hybrid import FusionParams
from aisle.service.ranking.rules import RuleBook, RulesOverride
from aisle.service.ranking.types import UserContext
from tests.fakes import HashingEncoder
from tests.pictures import write_picture_catalogue
from tests.service.harness import settings_for


@pytest.fixture(scope="module")
def clip_setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.embed.conftest import require_export_stack

    require_export_stack()
    from tests.embed.tiny_models import build_tiny_clip

    model = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")
    cache = tmp_path_factory.mktemp("cache")
    encoder = create_image_encoder(ImageEncoderConfig(model=str(model), backend="onnx-fp32", cache_dir=cache))
    root = tmp_path_factory.mktemp("shop")
    report = build_version(
        load_catalog(write_picture_catalogue(root)),
        root / "index",
        HashingEncoder(),
        BuildOptions(show_progress=False),
        encoder,
    )
    return encoder, cache, root, LoadedIndex.load(report.path)


def ids(engine: Engine, hits: list) -> list[str]:  # type: ignore[type-arg]
    return [engine.index.items.ids[hit.row] for hit in hits]


def test_search_fuses_the_image_space_and_names_it(clip_setup) -> None:  # type: ignore[no-untyped-def]
    encoder, _, _, index = clip_setup
    engine = Engine(index, HashingEncoder(), image_encoder=encoder)
    hits = engine.search("red shirt", 9, explain=True)
    assert hits
    for hit in hits:
        parts = hit.explain
        assert "image" in parts
        total = parts["semantic"] + parts["lexical"] + parts["image"] + parts["personal"]
        assert total == pytest.approx(parts["relevance"], abs=1e-5)
    pictured = {"red-1", "navy-1", "shoe-1", "red-2", "bag-1"}
    image_parts = {engine.index.items.ids[hit.row]: hit.explain["image"] for hit in hits}
    assert max(image_parts.values()) == pytest.approx(FusionParams().image_weight)  # the best picture
    assert all(value == 0 for item, value in image_parts.items() if item not in pictured)
    assert any("image" in hit.explain["retrieved_by"] for hit in hits)
    # Weight 0 turns the image space off: no image part, the text-only ranking.
    off = engine.search("red shirt", 9, explain=True, fusion=FusionParams(image_weight=0))
    assert all("image" not in hit.explain for hit in off)
    text_only = Engine(index, HashingEncoder()).search("red shirt", 9)
    assert ids(engine, off) == ids(engine, text_only)


def test_one_picture_is_never_shown_twice(clip_setup) -> None:  # type: ignore[no-untyped-def]
    encoder, _, _, index = clip_setup
    engine = Engine(index, HashingEncoder(), image_encoder=encoder)
    found = ids(engine, engine.search("red shirt", 9))
    assert not {"red-1", "red-2"} <= set(found)
    # The product page of red-1 never offers red-2, whose picture is the same photo resized.
    similar = ids(engine, engine.similar("red-1", 8))
    assert "red-2" not in similar and "red-1" not in similar and similar
    # The rule can be switched off per request.
    both = RuleBook().for_surface("search", RulesOverride(distinct_pictures=False))
    assert {"red-1", "red-2"} <= set(ids(engine, engine.search("red shirt", 9, rules=both)))


def test_similar_items_blend_text_and_picture(clip_setup) -> None:  # type: ignore[no-untyped-def]
    encoder, _, _, index = clip_setup
    engine = Engine(index, HashingEncoder(), image_encoder=encoder)
    weight = FusionParams().similar_image_weight
    row = index.items.row_of["navy-1"]
    picture = np.asarray(index.image.vectors[row])
    for hit in engine.similar("navy-1", 8, explain=True):
        parts = hit.explain
        text_cosine = float(index.text.vectors[hit.row] @ index.text.vectors[row])
        if index.image.present[hit.row]:
            assert parts["image"] == pytest.approx(weight * float(index.image.vectors[hit.row] @ picture), abs=1e-5)
            assert parts["semantic"] == pytest.approx((1 - weight) * text_cosine, abs=1e-5)
        else:
            assert parts["image"] == 0 and parts["semantic"] == pytest.approx(text_cosine, abs=1e-5)
    # A product without a picture gets text neighbours only.
    assert all("image" not in hit.explain for hit in engine.similar("none-1", 5, explain=True))


def test_an_image_profile_moves_the_personal_part(clip_setup) -> None:  # type: ignore[no-untyped-def]
    encoder, _, _, index = clip_setup
    engine = Engine(index, HashingEncoder(), image_encoder=encoder)
    row = index.items.row_of["shoe-1"]
    text_only = UserContext(profile=np.asarray(index.text.vectors[row]), mass=50.0)
    with_pictures = dataclasses.replace(text_only, image_profile=np.asarray(index.image.vectors[row]))
    plain = {h.row: h.explain["personal"] for h in engine.search("shoes", 9, explain=True, ctx=text_only)}
    blended = {h.row: h.explain["personal"] for h in engine.search("shoes", 9, explain=True, ctx=with_pictures)}
    pictured = [r for r in plain if r in blended and index.image.present[r]]
    unpictured = [r for r in plain if r in blended and not index.image.present[r]]
    assert any(plain[r] != pytest.approx(blended[r]) for r in pictured)
    assert all(plain[r] == pytest.approx(blended[r]) for r in unpictured)


def test_the_service_finds_the_image_model_in_the_cache(clip_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, cache, root, index = clip_setup
    encoder = HashingEncoder()
    settings = settings_for(tmp_path, index_dir=root / "index", cache_dir=cache)
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        body = client.post("/search", json={"query": "red shirt", "k": 5, "explain": True}).json()
        assert body["results"] and all("image" in result["explain"] for result in body["results"])
        assert client.app.state.holder.engine.image_encoder is not None
        similar = client.get("/items/red-1/similar", params={"k": 5}).json()
        assert "red-2" not in [result["id"] for result in similar["results"]]
        # Profiles in both spaces; recommendations show one picture once.
        events = [
            {"event_id": f"e{n}", "user_id": "u1", "item_id": item, "type": "view"}
            for n, item in enumerate(["shoe-1", "navy-1", "red-1"])
        ]
        assert client.post("/events", json={"events": events}).status_code == 200
        assert client.get("/users/u1/profile").json()["spaces"] == ["image", "text"]
        recommended = client.get("/users/u1/recommendations", params={"k": 9}).json()["results"]
        assert recommended and not {"red-1", "red-2"} <= {result["id"] for result in recommended}
    # Without the model (another cache), the version still serves: text search, with a warning.
    elsewhere = settings_for(tmp_path / "other", index_dir=root / "index", cache_dir=tmp_path / "empty-cache")
    with TestClient(create_app(elsewhere, encoder_factory=lambda _settings: encoder)) as client:
        body = client.post("/search", json={"query": "red shirt", "k": 5, "explain": True}).json()
        assert body["results"] and all("image" not in result["explain"] for result in body["results"])
        assert client.app.state.holder.engine.image_encoder is None
