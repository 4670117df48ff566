"""The training loss is the served computation: profile from ``index.profile``, cosine to fresh items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from index.profile import DAY_S, DecayConfig, TypeDecay, profile_from_events  # noqa: E402
from training.model_io import load_sentence_transformer  # noqa: E402
from training.partial_encoder import PartialEncoder  # noqa: E402
from training.timeline import Timeline  # noqa: E402
from training.train_data import NextItemCase  # noqa: E402
from training.trainer import CatalogTrainer  # noqa: E402

TEXTS = ["usb cable", "wireless mouse", "laptop charger", "black leather shoes", "red dress",
         "coffee maker", "steel watch", "blue jeans", "sports bag", "cotton shirt"]
CASES = [NextItemCase("a", (0, 1), 2), NextItemCase("b", (3, 4, 7), 8), NextItemCase("c", (5,), 6)]
DECAY = DecayConfig(purchase=TypeDecay(8.0, 1.5 * DAY_S))
TEMPERATURE = 0.1


@pytest.fixture
def trainer(tiny_model: Path) -> CatalogTrainer:
    torch.set_num_threads(1)
    model = load_sentence_transformer(str(tiny_model))
    # Every history item fresh and no sampled negatives: the candidates are exactly the
    # batch's history items and next items.
    return CatalogTrainer(PartialEncoder(model, 1), TEXTS, DECAY, Timeline(), TEMPERATURE,
                          fresh_history=10, hard_negatives=0, random_negatives=0)


def test_loss_is_the_served_profile_against_the_candidates(trainer: CatalogTrainer) -> None:
    loss, fresh, index = trainer.sequence_loss(CASES)
    vectors = trainer.encoder.model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    candidates = sorted({r for c in CASES for r in (*c.history, c.target)})
    assert index.tolist() == candidates
    np.testing.assert_allclose(fresh.detach().numpy(), vectors[candidates], atol=1e-5)
    expected = 0.0
    for case in CASES:
        events, now = Timeline().events(case.history)
        profile = profile_from_events(events, vectors, DECAY, now).vector
        logits = vectors[candidates] @ profile / TEMPERATURE
        expected += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[candidates.index(case.target)]
    assert loss.item() == pytest.approx(expected / len(CASES), abs=1e-4)


def test_scored_candidates_never_come_from_the_bank(trainer: CatalogTrainer) -> None:
    before = trainer.sequence_loss(CASES)[0].item()
    # A stale or corrupted bank may change which negatives are mined, never the scores.
    trainer.bank = torch.nn.functional.normalize(torch.randn_like(trainer.bank), dim=1)
    assert trainer.sequence_loss(CASES)[0].item() == pytest.approx(before, abs=1e-5)


def test_a_step_moves_only_through_the_fresh_vectors(trainer: CatalogTrainer) -> None:
    loss, _, _ = trainer.sequence_loss(CASES)
    loss.backward()
    grads = [p.grad for p in trainer.encoder.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert not trainer.bank.requires_grad
