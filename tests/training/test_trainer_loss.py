"""The training loss is the served computation: profile from ``aisle.index.profile``, cosine to fresh items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from aisle.index.profile import DAY_S, DecayConfig, TypeDecay, profile_from_events
from aisle.training.model_io import load_sentence_transformer
from aisle.training.partial_encoder import PartialEncoder
from aisle.training.timeline import Timeline
from aisle.training.train_data import NextItemCase, QueryPair
from aisle.training.trainer import CatalogTrainer

TEXTS = [
    "usb cable",
    "wireless mouse",
    "laptop charger",
    "black leather shoes",
    "red dress",
    "coffee maker",
    "steel watch",
    "blue jeans",
    "sports bag",
    "cotton shirt",
]
CASES = [NextItemCase("a", (0, 1), 2), NextItemCase("b", (3, 4, 7), 8), NextItemCase("c", (5,), 6)]
DECAY = DecayConfig(purchase=TypeDecay(8.0, 1.5 * DAY_S))
TEMPERATURE = 0.1


@pytest.fixture
def trainer(tiny_model: Path) -> CatalogTrainer:
    torch.set_num_threads(1)
    model = load_sentence_transformer(str(tiny_model))
    # Every history item fresh, so the whole profile side carries gradients.
    return CatalogTrainer(
        PartialEncoder(model, 1),
        TEXTS,
        DECAY,
        Timeline(),
        TEMPERATURE,
        fresh_history=10,
        hard_negatives=0,
        random_negatives=0,
    )


def _served_loss(vectors: np.ndarray, candidates: list[int] | None = None, *, mask_own: bool = True) -> float:
    """Cross-entropy of the next item among ``candidates`` (default: the whole catalogue), minus
    the user's own history items unless ``mask_own`` is False, ranked by the served profile."""
    total = 0.0
    for case in CASES:
        rows = [
            r
            for r in (range(len(vectors)) if candidates is None else candidates)
            if r == case.target or not mask_own or r not in case.history
        ]
        events, _ = Timeline().events(case.history)
        profile = profile_from_events(events, vectors, DECAY).vector
        logits = vectors[rows] @ profile / TEMPERATURE
        target = rows.index(case.target)
        total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[target]
    return total / len(CASES)


def test_next_item_loss_with_every_item_a_candidate_is_the_served_ranking(trainer: CatalogTrainer) -> None:
    trainer.random_negatives = len(TEXTS)
    loss, fresh, index = trainer.sequence_loss(CASES)
    vectors = trainer.encoder.model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert index.tolist() == list(range(len(TEXTS)))
    np.testing.assert_allclose(fresh.detach().numpy(), vectors, atol=1e-5)
    assert loss.item() == pytest.approx(_served_loss(vectors), abs=1e-4)


def test_next_item_candidates_are_the_batch_items_and_both_sides_learn(trainer: CatalogTrainer) -> None:
    loss, fresh, index = trainer.sequence_loss(CASES)
    in_batch = sorted({r for c in CASES for r in c.history} | {c.target for c in CASES})
    assert index.tolist() == in_batch
    vectors = trainer.encoder.model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert loss.item() == pytest.approx(_served_loss(vectors, in_batch), abs=1e-4)
    # The user's own items are out of the softmax: counting them gives another loss.
    assert _served_loss(vectors, in_batch) != pytest.approx(_served_loss(vectors, in_batch, mask_own=False), abs=1e-3)
    bank = trainer.bank.clone()
    loss.backward()
    assert fresh.requires_grad and not trainer.bank.requires_grad
    assert any(float(p.grad.abs().sum()) > 0 for p in trainer.encoder.parameters() if p.grad is not None)
    trainer.write_back(fresh, index)
    changed = (trainer.bank != bank).any(dim=1).nonzero().flatten().tolist()
    assert set(changed) <= set(index.tolist())


def test_next_item_loss_never_reads_the_bank(trainer: CatalogTrainer) -> None:
    """Stale vectors facing fresh ones would let the model gain by moving all fresh vectors
    together, so the bank stays out of the next-item loss (hard negatives are mined for search only)."""
    trainer.hard_negatives = 2
    before = trainer.sequence_loss(CASES)
    trainer.bank = torch.nn.functional.normalize(torch.randn_like(trainer.bank), dim=1)
    after = trainer.sequence_loss(CASES)
    assert after[2].tolist() == before[2].tolist()
    assert after[0].item() == pytest.approx(before[0].item(), abs=1e-5)


def test_search_candidates_never_come_from_the_bank(trainer: CatalogTrainer) -> None:
    pairs = [QueryPair("q1", "usb cable", 0), QueryPair("q2", "leather shoes", 3), QueryPair("q2", "leather shoes", 4)]
    positives = {"q1": frozenset({0}), "q2": frozenset({3, 4})}
    trainer.hard_negatives = 2
    before = trainer.query_loss(pairs, positives)[0].item()
    # A stale or corrupted bank may change which negatives are mined; with every item mined
    # the candidates are the same and so is the loss.
    trainer.hard_negatives = len(TEXTS)
    full = trainer.query_loss(pairs, positives)[0].item()
    trainer.bank = torch.nn.functional.normalize(torch.randn_like(trainer.bank), dim=1)
    assert trainer.query_loss(pairs, positives)[0].item() == pytest.approx(full, abs=1e-5)
    assert before != full  # fewer candidates, a different (easier) loss
