"""The split forward pass (frozen lower layers cached, upper layers trained) is the model's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from aisle.index.profile import DecayConfig
from aisle.training.model_io import load_sentence_transformer
from aisle.training.partial_encoder import PartialEncoder, UnsupportedModelError
from aisle.training.timeline import Timeline
from aisle.training.trainer import CatalogTrainer

TEXTS = [
    "usb cable",
    "wireless mouse for laptop",
    "black leather shoes",
    "coffee maker",
    "a",
    "adobe software for windows and microsoft office",
]


@pytest.fixture
def tiny(tiny_model: Path) -> Path:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and immune to a busy machine
    return tiny_model


@pytest.mark.parametrize("trainable", [1, 2])
def test_split_pass_equals_the_model(tiny: Path, trainable: int) -> None:
    model = load_sentence_transformer(str(tiny))
    encoder = PartialEncoder(model, trainable)
    assert encoder.self_check(TEXTS) < 1e-5
    trainable_names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable_names and all("encoder.layer." in name for name in trainable_names)
    layers = {int(name.split("encoder.layer.")[1].split(".")[0]) for name in trainable_names}
    assert layers == set(range(2 - trainable, 2))  # the top ones; embeddings and the rest frozen


def test_cached_item_states_give_the_same_vectors(tiny: Path) -> None:
    model = load_sentence_transformer(str(tiny))
    encoder = PartialEncoder(model, 1)
    cached = CatalogTrainer(encoder, TEXTS, DecayConfig(), Timeline(), 0.05, cache_items=True)
    direct = CatalogTrainer(encoder, TEXTS, DecayConfig(), Timeline(), 0.05, cache_items=False)
    reference = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(cached.bank.numpy(), reference, atol=1e-5)
    np.testing.assert_allclose(direct.bank.numpy(), reference, atol=1e-5)


def test_unsupported_pipelines_are_refused(tiny: Path) -> None:
    model = load_sentence_transformer(str(tiny))
    with pytest.raises(UnsupportedModelError, match="Transformer"):
        PartialEncoder([model[1], model[0]], 1)
    with pytest.raises(ValueError, match="trainable_layers"):
        PartialEncoder(model, 3)
