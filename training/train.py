"""``aisle train``: fine-tune the text encoder on the shop's own data, then export it for serving.

The loop (CPU only, fixed seeds): load the sentence-transformers model, freeze all but its top
layers, cache the frozen layers' output for every catalogue item, then alternate next-item and
query steps (``aisle.training.trainer``) until the time budget, the step limit or early stopping ends
it. Every ``eval_every`` steps the whole catalogue is re-encoded and the held-out validation split
is scored; the best weights are kept and restored at the end. The model is saved as a
sentence-transformers directory (written to a temporary directory, fsynced, then renamed into
place) and exported to ONNX int8 through ``aisle.embed.prepare_model``, so that ``aisle build --model
DIR`` serves it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.profile import DecayConfig
from aisle.training.metrics import summarize_ranks
from aisle.training.model_io import load_sentence_transformer, save_model_atomically
from aisle.training.timeline import Timeline
from aisle.training.train_data import NextItemCase, Split, TrainingData, split_for_validation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """How to train.

    Attributes:
        base_model: ``bundled:all-MiniLM-L6-v2`` or a local sentence-transformers directory.
        output: where the trained model directory is written (must not exist unless
            ``overwrite``).
        trainable_layers: top transformer layers that are trained; the others are frozen.
        max_seq_length: token limit of the trained (and served) model.
        batch_size: cases per step; every one of them is scored against the whole catalogue.
        learning_rate: AdamW learning rate (after a linear warm-up of ``warmup_steps``).
        weight_decay: AdamW weight decay.
        temperature: softmax temperature of the cosine scores.
        fresh_history: most recent history items that make the training profile, encoded with
            gradients at each step (older ones weigh little after decay and are left out).
        hard_negatives: search: per query, the products scoring highest for it that are added as
            candidates (mined with the bank of item vectors).
        random_negatives: candidates drawn uniformly from the catalogue per step (both objectives).
        refresh_every: steps between full recomputations of the bank of item vectors that
            next-item steps score against (validations recompute it too).
        dropout: train with the model's dropout (off by default: fresh vectors then equal the
            served ones, which keeps the bank of item vectors consistent).
        time_budget_s: wall-clock seconds for everything before saving (caching, steps,
            validation); training stops at the first validation past it.
        max_steps: optional hard limit on optimisation steps.
        eval_every: steps between validations.
        patience: validations without improvement before stopping early.
        validation_fraction: share of users (and of queries) held out for early stopping.
        seed: seeds the split, the batch order and torch.
        threads: torch threads (None: torch's default).
        overwrite: replace an existing output directory.
    """

    base_model: str
    output: Path
    trainable_layers: int = 2
    max_seq_length: int = 64
    batch_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    temperature: float = 0.05
    fresh_history: int = 4
    hard_negatives: int = 1
    random_negatives: int = 64
    refresh_every: int = 25
    dropout: bool = False
    warmup_steps: int = 10
    time_budget_s: float = 1500.0
    max_steps: int | None = None
    eval_every: int = 50
    patience: int = 4
    validation_fraction: float = 0.1
    seed: int = 13
    threads: int | None = None
    overwrite: bool = False
    show_progress: bool = True

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first bad option."""
        checks = {
            "trainable_layers": self.trainable_layers >= 1,
            "max_seq_length": self.max_seq_length >= 8,
            "batch_size": self.batch_size >= 2,
            "learning_rate": self.learning_rate > 0,
            "temperature": self.temperature > 0,
            "time_budget_s": self.time_budget_s > 0,
            "eval_every": self.eval_every >= 1,
            "patience": self.patience >= 1,
            "fresh_history": self.fresh_history >= 1,
            "refresh_every": self.refresh_every >= 1,
            "hard_negatives": self.hard_negatives >= 0,
            "random_negatives": self.random_negatives >= 0,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"bad training option {name}={getattr(self, name)!r}")


@dataclass
class TrainResult:
    """What a training run did, written next to the model as ``aisle-training.json``.

    ``profile`` records the decay and timeline the profiles were computed with: serve the model
    with the same half-lives and weights.
    """

    output: Path
    steps: int
    stopped_because: str
    best_step: int
    best_score: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    #: The customers' latest cases held out of training (not in the report): tune the blend on them.
    held_out_sequences: list[NextItemCase] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["output"] = str(self.output)
        del payload["held_out_sequences"]
        return payload


def train_model(
    data: TrainingData,
    options: TrainOptions,
    *,
    decay: DecayConfig | None = None,
    timeline: Timeline | None = None,
) -> TrainResult:
    """Fine-tunes ``options.base_model`` on ``data`` and saves it to ``options.output``.

    Raises:
        ValueError: bad options, nothing to learn from, or an output that exists.
        UnsupportedModelError: the model cannot be trained layer-wise.
    """
    from aisle.training.partial_encoder import PartialEncoder
    from aisle.training.trainer import CatalogTrainer

    options.validate()
    if data.is_empty():
        raise ValueError("nothing to learn from: give next-item histories and/or labelled queries")
    if options.output.exists() and not options.overwrite:
        raise ValueError(f"{options.output} exists; choose another --output or pass --overwrite")
    decay = decay or DecayConfig()
    timeline = timeline or Timeline()
    started = time.perf_counter()
    _seed_everything(options.seed, options.threads)
    split = split_for_validation(data, options.validation_fraction, options.seed)
    model = load_sentence_transformer(options.base_model, options.max_seq_length)
    encoder = PartialEncoder(model, options.trainable_layers)
    encoder.self_check(data.item_texts[:8])
    progress = _progress(options, len(data.item_texts), "caching frozen layers")
    trainer = CatalogTrainer(
        encoder,
        data.item_texts,
        decay,
        timeline,
        options.temperature,
        fresh_history=options.fresh_history,
        hard_negatives=options.hard_negatives,
        random_negatives=options.random_negatives,
        seed=options.seed,
        progress=progress,
    )
    if progress is not None:
        progress.close()
    seconds = {"prepare": time.perf_counter() - started}

    loop = _Loop(trainer, split, options, started)
    loop.run()
    encoder.load_state(loop.best_state)
    seconds["train"] = time.perf_counter() - started - seconds["prepare"]
    result = TrainResult(
        output=options.output,
        steps=loop.step,
        stopped_because=loop.stopped_because,
        best_step=loop.best_step,
        best_score=loop.best_score,
        history=loop.history,
        split=split.summary(),
        seconds={k: round(v, 2) for k, v in seconds.items()},
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        profile={"decay": asdict(decay), "timeline": asdict(timeline)},
        held_out_sequences=list(split.valid_sequences),
    )
    tick = time.perf_counter()
    save_model_atomically(model, options.output, result.to_dict(), overwrite=options.overwrite)
    result.seconds["save"] = round(time.perf_counter() - tick, 2)
    return result


class _Loop:
    """Steps, validations, early stopping and the time budget."""

    def __init__(self, trainer: Any, split: Split, options: TrainOptions, started: float) -> None:
        import torch

        self.trainer = trainer
        self.split = split
        self.options = options
        self.started = started
        self.rng = random.Random(options.seed)
        self.optimizer = torch.optim.AdamW(
            trainer.encoder.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / max(1, options.warmup_steps))
        )
        self.positives: dict[str, frozenset[int]] = {}
        for pair in split.train_queries:
            self.positives[pair.query_id] = self.positives.get(pair.query_id, frozenset()) | {pair.target}
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_score: float | None = -math.inf
        self.best_step = 0
        self.best_state = trainer.encoder.state()
        self.stopped_because = "max_steps"

    def run(self) -> None:
        options = self.options
        self.validate()
        bar = _progress(options, int(options.time_budget_s), "training (s of budget)")
        stale = 0
        batches = self._batches()
        last_tick = time.perf_counter()
        while True:
            if options.max_steps is not None and self.step >= options.max_steps:
                self.stopped_because = "max_steps"
                break
            kind, batch = next(batches)
            loss = self._take_step(kind, batch)
            self.step += 1
            now = time.perf_counter()
            if bar is not None:
                bar.update(min(now - last_tick, max(0.0, bar.total - bar.n)))
                bar.set_postfix(step=self.step, loss=f"{loss:.3f}", best=self.best_score)
            last_tick = now
            out_of_time = now - self.started >= options.time_budget_s
            if self.step % options.eval_every == 0 or out_of_time:
                improved = self.validate()
                stale = 0 if improved else stale + 1
                if stale >= options.patience:
                    self.stopped_because = "early_stopping"
                    break
            elif self.step % options.refresh_every == 0:
                self.trainer.refresh_bank()
            if out_of_time:
                self.stopped_because = "time_budget"
                break
        if bar is not None:
            bar.close()

    def _batches(self):
        """Endless (kind, batch) pairs: shuffled epochs, both objectives in proportion."""
        options = self.options
        sequences = list(self.split.train_sequences)
        queries = list(self.split.train_queries)
        while True:
            self.rng.shuffle(sequences)
            self.rng.shuffle(queries)
            plan = [
                ("sequences", sequences[i : i + options.batch_size])
                for i in range(0, len(sequences), options.batch_size)
            ]
            plan += [
                ("queries", queries[i : i + options.batch_size]) for i in range(0, len(queries), options.batch_size)
            ]
            plan = [(kind, batch) for kind, batch in plan if len(batch) >= 2]
            if not plan:
                raise ValueError("too little training data: fewer than two cases of each kind to learn from")
            self.rng.shuffle(plan)
            yield from plan

    def _take_step(self, kind: str, batch: list) -> float:
        # Without dropout a freshly encoded vector is exactly what the model serves, so the
        # vectors written back into the bank stay comparable with the ones computed in full.
        self.trainer.encoder.train(self.options.dropout)
        if kind == "sequences":
            loss, fresh, index = self.trainer.sequence_loss(batch)
        else:
            loss, fresh, index = self.trainer.query_loss(batch, self.positives)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.trainer.write_back(fresh, index)
        return float(loss.detach())

    def validate(self) -> bool:
        """Re-encodes the catalogue and scores the validation split; True when it improved.

        The score is the mean reciprocal rank of the true item over the full catalogue (and of
        the first relevant product for queries): it follows NDCG@10 closely but stays smooth
        on small validation sets. Without validation data the latest weights are kept.
        """
        self.trainer.refresh_bank()
        entry: dict[str, Any] = {"step": self.step, "seconds": round(time.perf_counter() - self.started, 1)}
        scores = []
        if self.split.valid_sequences:
            summary = summarize_ranks(self.trainer.sequence_ranks(self.split.valid_sequences))
            entry["next_item"] = summary
            scores.append(float(summary["MRR"]))
        if self.split.valid_queries:
            texts = [text for text, _ in self.split.valid_queries.values()]
            relevant = [targets for _, targets in self.split.valid_queries.values()]
            ranks = self.trainer.query_ranks(texts, relevant)
            entry["search"] = {
                "MRR@10": round(float(np.mean([1 / (r + 1) if r < 10 else 0.0 for r in ranks])), 4),
                "MRR": round(float(np.mean([1 / (r + 1) for r in ranks])), 4),
                "queries": len(texts),
            }
            scores.append(entry["search"]["MRR"])
        self.history.append(entry)
        if not scores:
            self.best_score, self.best_step = None, self.step
            self.best_state = self.trainer.encoder.state()
            return True
        score = float(np.mean(scores))
        entry["score"] = round(score, 5)
        log.info("validation at step %d: %s", self.step, entry)
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step = score, self.step
            self.best_state = self.trainer.encoder.state()
            return True
        return False


#: The serving trials of a fine-tuned encoder: the shipped blend first, then a larger share for
#: its profile (a sharper encoder earns it sooner) and more or less of the title match, which a
#: sharper encoder may make redundant.
ENCODER_TRIALS: tuple[dict[str, float], ...] = (
    {},
    {"personal_half_mass": 1.0},
    {"recommend_profile_cap": 1.0},
    {"personal_half_mass": 1.0, "recommend_profile_cap": 1.0},
    {"recommend_lexical_weight": 0.0},
    {"recommend_lexical_weight": 0.6},
)


def tune_encoder_serving(data: TrainingData, result: TrainResult, limit: int | None = None) -> dict[str, Any] | None:
    """Chooses the recommendation blend of the model ``result`` trained on the customers held out
    of its training, and ships it in the model's ``aisle-serving.json``.

    None (nothing written) when the data had no next-item histories to hold out.
    """
    from aisle.embed.collaborative import write_serving_settings
    from aisle.training.serving_tune import ServingTuning, tune_serving

    if not result.held_out_sequences:
        return None
    chosen = tune_serving(result.output, data, result.held_out_sequences, ServingTuning(ENCODER_TRIALS, limit=limit))
    write_serving_settings(
        result.output,
        chosen["settings"],
        {"by": "aisle train --learn encoder", "on": "customers held out of the training data"},
    )
    return chosen


def _seed_everything(seed: int, threads: int | None) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def _progress(options: TrainOptions, total: int, description: str) -> Any:
    if not options.show_progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=description, unit="s" if "budget" in description else "item", dynamic_ncols=True, leave=False
    )
