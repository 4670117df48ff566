"""``aisle train`` with histories: collaborative item vectors learnt from the shop's event sequences, on CPU.

The model is the one the service scores with (``aisle.embed.collaborative``): an item's vector is
``text vector @ projection + own offset``, a history's query vector is the position-weighted sum of
its latest items' vectors times ``transform``, and an item's score ``query · item + bias``. It is
trained with torch (full softmax over the catalogue: a few thousand items cost little) on every
next-item case, the item texts seeding the vectors so that rarely bought items start where their
words put them and items the training never saw still get a vector at serving.

A seeded share of users' latest cases is held out; training stops when the mean of their HR@10,
NDCG@10, HR@50 and NDCG@50 (the figure the serving blend is chosen on) stops improving, and the
model is then retrained on every case for the best number of epochs. All randomness is seeded,
and torch runs with the given threads, so a run is reproducible.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aisle.embed.collaborative import CollaborativeVectors
from aisle.training.metrics import headline_score, summarize_ranks
from aisle.training.train_data import NextItemCase, split_for_validation

log = logging.getLogger(__name__)


#: Fewest next-item cases collaborative vectors are learnt from.
MIN_CASES = 2


@dataclass(frozen=True)
class CollaborativeOptions:
    """How to learn collaborative item vectors.

    Attributes:
        dim: size of the item vectors.
        max_history: latest history items the query vector weighs.
        batch_size: next-item cases per step.
        learning_rate: Adam learning rate.
        weight_decay: L2 penalty on the item offsets (keeps rarely seen items near their text).
        item_dropout: share of history items dropped at random in training (regularises).
        max_epochs: at most this many passes over the cases.
        patience: epochs without a better held-out ``headline_score`` before stopping.
        validation_fraction: share of users whose latest case is held out for early stopping.
        time_budget_s: wall-clock seconds for the held-out run (the final run repeats its epochs).
        seed: seeds the split, the initialisation and the batch order.
        threads: torch threads (None: torch's default).
    """

    dim: int = 128
    max_history: int = 20
    batch_size: int = 1024
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    item_dropout: float = 0.2
    max_epochs: int = 60
    patience: int = 3
    validation_fraction: float = 0.1
    time_budget_s: float = 900.0
    seed: int = 13
    threads: int | None = None

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first bad option."""
        checks = {
            "dim": self.dim >= 2,
            "max_history": self.max_history >= 1,
            "batch_size": self.batch_size >= 2,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "item_dropout": 0 <= self.item_dropout < 1,
            "max_epochs": self.max_epochs >= 1,
            "patience": self.patience >= 1,
            "validation_fraction": 0 <= self.validation_fraction < 1,
            "time_budget_s": self.time_budget_s > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"bad collaborative option {name}={getattr(self, name)!r}")


@dataclass
class CollaborativeResult:
    """The trained vectors (every case seen) and how the training went."""

    vectors: CollaborativeVectors
    #: Epochs of the final run: those after which the held-out run scored best.
    epochs: int
    held_out: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)
    #: The model of the held-out run (it never saw ``held_out_cases``' targets): tune on it.
    held_out_vectors: CollaborativeVectors | None = None
    held_out_cases: list[NextItemCase] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "held_out": self.held_out,
            "history": self.history,
            "seconds": self.seconds,
            "split": self.split,
            "items": len(self.vectors.item_ids),
            "dim": self.vectors.dim,
        }


def learn_collaborative(
    item_ids: Sequence[str],
    text_vectors: np.ndarray,
    cases: Sequence[NextItemCase],
    options: CollaborativeOptions,
    *,
    progress: bool = False,
) -> CollaborativeResult:
    """Learns collaborative vectors for every item from next-item ``cases`` (rows of ``item_ids``).

    Args:
        item_ids: the catalogue's ids, by row.
        text_vectors: float32 (rows, text dim) unit vectors of the items' texts (the served ones).
        cases: next-item cases over those rows, every prefix of every user's history.
        options: the training options.
        progress: log each epoch at INFO.

    Raises:
        ValueError: bad options, or fewer than two cases to learn from.
    """
    import torch

    options.validate()
    if len(cases) < MIN_CASES:
        raise ValueError(f"too few next-item cases to learn collaborative vectors from (fewer than {MIN_CASES})")
    if text_vectors.shape[0] != len(item_ids):
        raise ValueError(f"{text_vectors.shape[0]} text vectors for {len(item_ids)} items")
    if options.threads:
        torch.set_num_threads(options.threads)
    started = time.perf_counter()
    from aisle.training.train_data import TrainingData

    split = split_for_validation(
        TrainingData(list(item_ids), [""] * len(item_ids), sequences=list(cases)),
        options.validation_fraction,
        options.seed,
    )
    history: list[dict[str, Any]] = []
    held_out: dict[str, Any] = {}
    best_epoch, held_out_vectors = options.max_epochs, None
    if split.valid_sequences:
        held_model, best_epoch, held_out, history = _fit(
            item_ids, text_vectors, split.train_sequences, split.valid_sequences, options, None, progress
        )
        held_out_vectors = held_model.export(item_ids, text_vectors, _seen(len(item_ids), split.train_sequences), {})
    seconds = {"held_out_run": round(time.perf_counter() - started, 2)}
    tick = time.perf_counter()
    # The final model sees every case, held-out ones included, for the epochs that served best.
    model, _, _, _ = _fit(item_ids, text_vectors, list(cases), [], options, best_epoch, progress)
    seconds["final_run"] = round(time.perf_counter() - tick, 2)
    vectors = model.export(
        item_ids,
        text_vectors,
        _seen(len(item_ids), cases),
        {"options": asdict(options), "epochs": best_epoch, "held_out": held_out, "cases": len(cases)},
    )
    return CollaborativeResult(
        vectors=vectors,
        epochs=best_epoch,
        held_out=held_out,
        history=history,
        seconds=seconds,
        split={"train_cases": len(split.train_sequences), "held_out_cases": len(split.valid_sequences)},
        held_out_vectors=held_out_vectors,
        held_out_cases=list(split.valid_sequences),
    )


def _seen(items: int, cases: Sequence[NextItemCase]) -> np.ndarray:
    """Rows that appear in ``cases``, in a history or as a target."""
    seen = np.zeros(items, dtype=bool)
    for case in cases:
        seen[list(case.history)] = True
        seen[case.target] = True
    return seen


def _histories(cases: Sequence[NextItemCase], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(cases, length) int64 rows, latest first, −1 padded; and the targets."""
    rows = np.full((len(cases), length), -1, dtype=np.int64)
    for number, case in enumerate(cases):
        latest = list(reversed(case.history))[:length]
        rows[number, : len(latest)] = latest
    return rows, np.array([case.target for case in cases], dtype=np.int64)


def rank_cases(vectors: CollaborativeVectors, cases: Sequence[NextItemCase]) -> list[int | None]:
    """0-based rank of each case's target among all items, scored as the service scores them."""
    if not cases:
        return []
    rows, targets = _histories(cases, len(vectors.positions))
    ranks: list[int | None] = []
    for start in range(0, len(cases), 1024):
        chunk = rows[start : start + 1024]
        mask = chunk >= 0
        gathered = vectors.items[np.where(mask, chunk, 0)] * mask[..., None]
        weighted = np.einsum("l,bld->bd", vectors.positions, gathered)
        scores = (weighted @ vectors.transform) @ vectors.items.T + vectors.bias
        own = scores[np.arange(len(chunk)), targets[start : start + 1024]]
        ranks.extend(int(rank) for rank in (scores > own[:, None]).sum(axis=1))
    return ranks


def _fit(
    item_ids: Sequence[str],
    text_vectors: np.ndarray,
    train: Sequence[NextItemCase],
    valid: Sequence[NextItemCase],
    options: CollaborativeOptions,
    epochs: int | None,
    progress: bool,
) -> tuple[Any, int, dict[str, Any], list[dict[str, Any]]]:
    """Trains from a seeded start; with ``valid``, stops early and returns the best epoch's model."""
    import torch

    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    model = _Model(len(item_ids), text_vectors, options)
    optimizer = torch.optim.Adam(
        [
            {"params": [model.offsets], "weight_decay": options.weight_decay},
            {"params": [model.projection, model.positions, model.transform, model.bias], "weight_decay": 0.0},
        ],
        lr=options.learning_rate,
    )
    histories, targets = _histories(train, options.max_history)
    rng = np.random.default_rng(options.seed)
    started = time.perf_counter()
    best_score, best_epoch, best_state, stale = -math.inf, 0, model.state(), 0
    best_metrics: dict[str, Any] = {}
    log_rows: list[dict[str, Any]] = []
    total = epochs if epochs is not None else options.max_epochs
    for epoch in range(1, total + 1):
        order = rng.permutation(len(train))
        losses = []
        for start in range(0, len(order), options.batch_size):
            batch = order[start : start + options.batch_size]
            rows = torch.from_numpy(histories[batch])
            if options.item_dropout > 0:
                dropped = torch.from_numpy(rng.random(rows.shape) < options.item_dropout)
                keep_one = rows[:, 0] >= 0  # the latest item always stays: every case keeps a history
                dropped[:, 0] &= ~keep_one
                rows = torch.where(dropped, torch.full_like(rows, -1), rows)
            logits = model(rows)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets[batch]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": round(float(np.mean(losses)), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if valid:
            metrics = summarize_ranks(rank_cases(model.export(item_ids, text_vectors, None, {}), valid))
            entry["held_out"] = metrics
            score = headline_score(metrics)
            if score > best_score:
                best_score, best_epoch, best_state, best_metrics, stale = score, epoch, model.state(), metrics, 0
            else:
                stale += 1
        log_rows.append(entry)
        if progress:
            log.info("collaborative epoch %s", entry)
        if valid and (stale >= options.patience or time.perf_counter() - started >= options.time_budget_s):
            break
    if valid:
        model.load(best_state)
    else:
        best_epoch = total
    return model, max(best_epoch, 1), best_metrics, log_rows


class _Model:
    """The torch side of ``CollaborativeVectors`` (parameters, forward pass, export)."""

    def __init__(self, items: int, text_vectors: np.ndarray, options: CollaborativeOptions) -> None:
        import torch

        self.torch = torch
        text = np.asarray(text_vectors, dtype=np.float64)
        dim = options.dim
        # The text vectors' top principal directions start every item where its words put it (the
        # product's neighbours stay its neighbours); a learnt dim × dim map and per-item offsets
        # move it from there. Projecting once keeps each step's cost off the text dimension.
        _, _, directions = np.linalg.svd(text, full_matrices=False)
        self.basis = np.ascontiguousarray(directions[:dim].T, dtype=np.float32)
        self.base = torch.from_numpy(np.asarray(text @ self.basis, dtype=np.float32))
        self.projection = torch.nn.Parameter(torch.eye(self.base.shape[1], dim))
        self.offsets = torch.nn.Parameter(torch.zeros(items, dim))
        self.positions = torch.nn.Parameter(0.5 ** torch.arange(options.max_history, dtype=torch.float32))
        self.transform = torch.nn.Parameter(torch.eye(dim))
        self.bias = torch.nn.Parameter(torch.zeros(items))

    def parameters(self) -> list[Any]:
        return [self.projection, self.offsets, self.positions, self.transform, self.bias]

    def item_matrix(self) -> Any:
        return self.base @ self.projection + self.offsets

    def __call__(self, rows: Any) -> Any:
        items = self.item_matrix()
        mask = (rows >= 0).float()
        gathered = items[rows.clamp(min=0)] * mask.unsqueeze(-1)
        weighted = (gathered * self.positions[: rows.shape[1]].view(1, -1, 1)).sum(dim=1)
        return (weighted @ self.transform) @ items.T + self.bias

    def state(self) -> list[Any]:
        return [parameter.detach().clone() for parameter in self.parameters()]

    def load(self, state: list[Any]) -> None:
        with self.torch.no_grad():
            for parameter, saved in zip(self.parameters(), state, strict=True):
                parameter.copy_(saved)

    def export(
        self, item_ids: Sequence[str], text_vectors: np.ndarray, seen: np.ndarray | None, info: dict[str, Any]
    ) -> CollaborativeVectors:
        """The NumPy model the service scores with."""
        with self.torch.no_grad():
            items = self.item_matrix().numpy().astype(np.float32)
            bias = self.bias.numpy().astype(np.float32).copy()
            cold = float(np.mean(bias[~seen])) if seen is not None and (~seen).any() else float(np.quantile(bias, 0.1))
            return CollaborativeVectors(
                item_ids=tuple(item_ids),
                items=items,
                bias=bias,
                projection=(self.basis @ self.projection.numpy()).astype(np.float32),
                positions=self.positions.numpy().astype(np.float32).copy(),
                transform=self.transform.numpy().astype(np.float32).copy(),
                cold_bias=cold,
                info=info,
            )
