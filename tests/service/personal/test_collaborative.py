"""A model directory with collaborative vectors: served as tuned, with no setting changed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from aisle.embed.collaborative import CollaborativeVectors, write_serving_settings
from aisle.service.app import create_app
from aisle.service.settings import ServiceSettings
from tests.fakes import HashingEncoder
from tests.service.harness import publish, settings_for

ENCODER = HashingEncoder()
#: In the harness catalogue (in stock): a chef knife, then (what its customers buy next) screwdrivers.
KNIFE, SCREWDRIVERS, LAMP = "a-0", "a-16", "a-29"
ITEMS = 30


def collaborative_model(folder: Path, weight: float, trained: int = ITEMS) -> Path:
    """A model directory whose vectors say: after the knife come the screwdrivers.

    Only the first ``trained`` items were seen in training; the others are cold.
    """
    dim = 4
    items = np.zeros((trained, dim), np.float32)
    items[0] = [1, 0, 0, 0]
    items[16] = [6, 0, 0, 0]
    vectors = CollaborativeVectors(
        item_ids=tuple(f"a-{row}" for row in range(trained)),
        items=items,
        bias=np.zeros(trained, np.float32),
        projection=np.zeros((ENCODER.dim, dim), np.float32),
        positions=np.array([1.0, 0.5], np.float32),
        transform=np.eye(dim, dtype=np.float32),
    )
    folder.mkdir(parents=True)
    vectors.write(folder)
    write_serving_settings(folder, {"collaborative_weight": weight}, {"by": "test"})
    return folder


def recommended(tmp_path: Path, **settings) -> list[str]:
    publish(tmp_path / "index", ENCODER, "a")
    # Another customer's purchases make a popular list that does not favour the screwdrivers.
    events = [
        {
            "event_id": f"other-{n}",
            "user_id": "other",
            "item_id": f"a-{n}",
            "type": "purchase",
            "timestamp": time.time(),
        }
        for n in (3, 5, 8)
    ]
    events.append(
        {"event_id": "mine", "user_id": "me", "item_id": KNIFE, "type": "purchase", "timestamp": time.time() - 3600}
    )
    app = create_app(settings_for(tmp_path, **settings), encoder_factory=lambda _settings: ENCODER)
    with TestClient(app) as client:
        assert client.post("/events", json={"events": events}).status_code == 200
        response = client.get("/users/me/recommendations", params={"k": 5})
        assert response.status_code == 200, response.text
        return [result["id"] for result in response.json()["results"]]


def test_the_served_model_brings_what_is_bought_next_first(tmp_path: Path) -> None:
    model = collaborative_model(tmp_path / "model", weight=2.0)
    assert recommended(tmp_path / "with", model=str(model))[0] == SCREWDRIVERS
    assert recommended(tmp_path / "without")[0] != SCREWDRIVERS


def test_the_model_ships_its_settings_and_explicit_ones_win(tmp_path: Path) -> None:
    model = collaborative_model(tmp_path / "model", weight=2.5)
    assert settings_for(tmp_path, model=str(model)).collaborative_weight == 2.5
    assert settings_for(tmp_path, model=str(model), collaborative_weight=0.5).collaborative_weight == 0.5
    assert settings_for(tmp_path).collaborative_weight == 1.0
    # Weight 0 turns the vectors off.
    assert recommended(tmp_path / "off", model=str(model), collaborative_weight=0.0)[0] != SCREWDRIVERS


def test_a_setting_the_service_does_not_know_is_refused_naming_the_file(tmp_path: Path) -> None:
    model = collaborative_model(tmp_path / "model", weight=1.0)
    write_serving_settings(model, {"collaborative_wieght": 1.0}, {"by": "test"})
    with pytest.raises(ValidationError, match="aisle-serving.json: unknown setting"):
        ServiceSettings(model=str(model))


def test_items_the_training_never_saw_are_scored_from_their_text(tmp_path: Path) -> None:
    from aisle.index.loaded import LoadedIndex
    from aisle.service.personal.collaborative import CollaborativeScorer

    model = collaborative_model(tmp_path / "model", weight=1.0, trained=20)
    vectors = CollaborativeVectors.read(model)
    projection = np.zeros_like(vectors.projection)
    projection[:, 0] = 1.0  # a cold item's first coordinate is the sum of its text vector
    scorer = CollaborativeScorer(
        CollaborativeVectors(**{**vectors.__dict__, "projection": projection, "cold_bias": -1.0})
    )
    publish(tmp_path / "index", ENCODER, "a")
    index = LoadedIndex.load(tmp_path / "index" / "current")
    layout = scorer.rows_for(index)
    lamp = index.items.row_of[LAMP]
    text = np.asarray(index.text.vectors[lamp], np.float32)
    assert layout.items[lamp, 0] == pytest.approx(float(text.sum()), rel=1e-5)
    assert layout.bias[lamp] == -1.0 and layout.bias[index.items.row_of[KNIFE]] == 0.0
    scores = scorer.scores(index, {index.items.row_of[KNIFE]: 1.0}, {})
    assert scores.argmax() == index.items.row_of[SCREWDRIVERS] and scores.max() == 1.0


def test_a_higher_temperature_flattens_the_scores_below_the_best(tmp_path: Path) -> None:
    from aisle.index.loaded import LoadedIndex
    from aisle.service.personal.collaborative import CollaborativeScorer

    scorer = CollaborativeScorer(CollaborativeVectors.read(collaborative_model(tmp_path / "model", weight=1.0)))
    publish(tmp_path / "index", ENCODER, "a")
    index = LoadedIndex.load(tmp_path / "index" / "current")
    history = {index.items.row_of[KNIFE]: 1.0}
    sharp, flat = scorer.scores(index, history, {}), scorer.scores(index, history, {}, temperature=2.0)
    assert flat.max() == sharp.max() == 1.0
    assert np.allclose(flat, np.sqrt(sharp)) and (flat[sharp < 1] > sharp[sharp < 1]).all()
