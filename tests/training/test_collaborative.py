"""Collaborative item vectors: learnt from sequences, written with checksums, read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from aisle.embed.cache import content_hash
from aisle.embed.collaborative import (
    CollaborativeError,
    CollaborativeVectors,
    read_serving_settings,
    write_serving_settings,
)
from aisle.training.collaborative import CollaborativeOptions, learn_collaborative, rank_cases
from aisle.training.train_data import NextItemCase, cases_from_histories

ITEMS = 24
#: Small and fast: the synthetic chains are learnt in a few seconds on one thread.
OPTIONS = CollaborativeOptions(
    dim=16,
    max_history=4,
    batch_size=64,
    learning_rate=0.02,
    item_dropout=0.0,
    max_epochs=40,
    patience=40,
    validation_fraction=0.1,
    seed=3,
    threads=1,
)


def chains(users: int = 80, length: int = 6, seed: int = 0) -> list[NextItemCase]:
    """Every user walks the ring of items one step at a time from a random start: the next item
    is always the one after the latest, which only the order of the events tells."""
    rng = np.random.default_rng(seed)
    histories = {}
    for user in range(users):
        start = int(rng.integers(ITEMS))
        histories[f"u{user}"] = [(start + step) % ITEMS for step in range(length)]
    return cases_from_histories(histories)


def text_vectors(seed: int = 1) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(ITEMS, 32)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def item_ids() -> list[str]:
    return [f"item-{row}" for row in range(ITEMS)]


@pytest.fixture(scope="module")
def trained():
    return learn_collaborative(item_ids(), text_vectors(), chains(), OPTIONS)


def test_the_known_next_item_ranks_first(trained) -> None:
    probes = [NextItemCase("probe", ((row - 1) % ITEMS, row), (row + 1) % ITEMS) for row in range(ITEMS)]
    assert rank_cases(trained.vectors, probes) == [0] * ITEMS
    # The same history reversed names another next item: the order is what was learnt.
    reversed_probes = [NextItemCase("probe", ((row + 1) % ITEMS, row), (row - 1) % ITEMS) for row in range(ITEMS)]
    assert sum(rank == 0 for rank in rank_cases(trained.vectors, reversed_probes)) < ITEMS // 4


def test_training_is_deterministic_and_reports_the_held_out_run(trained) -> None:
    again = learn_collaborative(item_ids(), text_vectors(), chains(), OPTIONS)
    for name in ("items", "bias", "projection", "positions", "transform"):
        assert np.array_equal(getattr(again.vectors, name), getattr(trained.vectors, name)), name
    assert trained.held_out["HR@10"] > 0.9
    assert trained.held_out_vectors is not None and len(trained.held_out_cases) == trained.split["held_out_cases"]


def test_written_vectors_read_back_and_a_changed_file_is_refused(trained, tmp_path: Path) -> None:
    trained.vectors.write(tmp_path)
    read = CollaborativeVectors.read(tmp_path)
    assert read.item_ids == tuple(item_ids())
    assert np.array_equal(read.items, trained.vectors.items)
    assert read.cold_bias == pytest.approx(trained.vectors.cold_bias)
    bias = tmp_path / "collaborative" / "bias.npy"
    np.save(bias, np.zeros(ITEMS, np.float32), allow_pickle=False)
    with pytest.raises(CollaborativeError, match="checksum"):
        CollaborativeVectors.read(tmp_path)


def test_inconsistent_vectors_are_refused() -> None:
    good = dict(
        item_ids=("a", "b"),
        items=np.zeros((2, 4), np.float32),
        bias=np.zeros(2, np.float32),
        projection=np.zeros((8, 4), np.float32),
        positions=np.ones(3, np.float32),
        transform=np.eye(4, dtype=np.float32),
    )
    CollaborativeVectors(**good)
    with pytest.raises(CollaborativeError, match="bias"):
        CollaborativeVectors(**{**good, "bias": np.zeros(3, np.float32)})
    with pytest.raises(CollaborativeError, match="NaN"):
        CollaborativeVectors(**{**good, "items": np.full((2, 4), np.nan, np.float32)})
    with pytest.raises(CollaborativeError, match="repeat"):
        CollaborativeVectors(**{**good, "item_ids": ("a", "a")})


def test_serving_settings_and_vectors_leave_the_encoder_fingerprint_alone(trained, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    before = content_hash(model)
    trained.vectors.write(model)
    write_serving_settings(model, {"collaborative_weight": 2.0}, {"by": "test"})
    assert content_hash(model) == before
    assert read_serving_settings(model) == {"collaborative_weight": 2.0}
    (model / "aisle-serving.json").write_text("[1, 2]")
    with pytest.raises(CollaborativeError, match="aisle-serving.json"):
        read_serving_settings(model)


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="item_dropout"):
        CollaborativeOptions(item_dropout=1.5).validate()
    with pytest.raises(ValueError, match="too few"):
        learn_collaborative(item_ids(), text_vectors(), chains()[:1], OPTIONS)


def test_aisle_train_learn_collaborative_writes_a_servable_model(shared_data, tmp_path: Path, capsys) -> None:
    from aisle.cli import main
    from aisle.embed.bundled import resolve_model_dir
    from aisle.embed.config import BUNDLED_MODEL

    output = tmp_path / "model"
    argv = ["train", "--learn", "collaborative", "--sequences", "fixture/scientific", "--output", str(output)]
    argv += ["--epochs", "2", "--dim", "8", "--threads", "1", "--no-tune-serving", "--no-progress"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["collaborative"]["epochs"] >= 1 and report["serving"]["settings"] == {}
    vectors = CollaborativeVectors.read(output)
    assert vectors.dim == 8 and len(vectors.item_ids) == 1277
    assert read_serving_settings(output) == {}
    # The text encoder is the base model's, byte for byte: its export and indexes serve this model.
    assert content_hash(output) == content_hash(resolve_model_dir(BUNDLED_MODEL))
    assert main(argv) == 2  # an existing output is refused without --overwrite
    assert "exists" in capsys.readouterr().err
