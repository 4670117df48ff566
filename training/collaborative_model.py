"""A model directory with collaborative vectors: the base text model, the vectors and its serving settings.

``train_collaborative_model`` encodes the catalogue with the base model (the vectors the index
will serve), learns the collaborative vectors (``aisle.training.collaborative``), chooses the
recommendation blend for them through the real service on the held-out training cases
(``tune_serving``), and publishes one directory: a copy of the base model, ``collaborative/`` and
``aisle-serving.json``. It is staged in a hidden sibling directory, fsynced and renamed into
place, so readers never see half of it.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisle.embed.bundled import resolve_model_dir
from aisle.embed.collaborative import COLLABORATIVE_DIR, write_serving_settings
from aisle.embed.config import EncoderConfig
from aisle.training.collaborative import CollaborativeOptions, learn_collaborative
from aisle.training.model_io import publish_directory
from aisle.training.train_data import NextItemCase, TrainingData

log = logging.getLogger(__name__)

#: (weight, temperature) of the collaborative score tried by ``tune_serving`` (weight 0: the blend
#: without it). A flatter score lets items below the model's first few count beside the others.
WEIGHT_GRID = ((0.0, 1.0), *((weight, temperature) for weight in (1.0, 2.0, 4.0) for temperature in (1.0, 2.0, 4.0)))
#: Days between the history events posted while tuning: customers buy weeks apart.
TUNING_CADENCE_DAYS = 30.0


@dataclass(frozen=True)
class ServingTuning:
    """How ``tune_serving`` chooses the blend.

    Attributes:
        grid: ``(collaborative_weight, collaborative_temperature)`` pairs tried.
        cadence_days: days between the posted history events.
        limit: at most this many held-out cases (None: all).
    """

    grid: tuple[tuple[float, float], ...] = WEIGHT_GRID
    cadence_days: float = TUNING_CADENCE_DAYS
    limit: int | None = None


def train_collaborative_model(
    data: TrainingData,
    output: Path,
    base_model: str,
    encoder: EncoderConfig,
    options: CollaborativeOptions,
    tuning: ServingTuning | None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trains and publishes ``output`` (see the module docstring); returns the training report.

    Raises:
        ValueError: no next-item cases, bad options, or an output that exists without ``overwrite``.
    """
    from dataclasses import replace

    from aisle.embed import create_encoder

    if not data.sequences:
        raise ValueError("--learn collaborative needs next-item histories (--sequences, or --catalog with --events)")
    options.validate()
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; choose another --output or pass --overwrite")
    started = time.perf_counter()
    base_dir = resolve_model_dir(base_model)
    text_encoder = create_encoder(replace(encoder, model=str(base_dir)))
    text_vectors = text_encoder.encode_documents(data.item_texts)
    seconds: dict[str, float] = {"encode": round(time.perf_counter() - started, 2)}
    result = learn_collaborative(data.item_ids, text_vectors, data.sequences, options, progress=True)
    seconds.update(result.seconds)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.tmp-{secrets.token_hex(4)}"
    try:
        shutil.copytree(base_dir, staging, ignore=shutil.ignore_patterns(".*", "onnx", "openvino"))
        chosen: dict[str, Any] = {"settings": {}, "trials": []}
        if tuning is not None and result.held_out_vectors is not None:
            tick = time.perf_counter()
            result.held_out_vectors.write(staging)
            chosen = tune_serving(staging, data, result.held_out_cases, tuning)
            seconds["tune"] = round(time.perf_counter() - tick, 2)
            shutil.rmtree(staging / COLLABORATIVE_DIR)
        result.vectors.write(staging)
        report: dict[str, Any] = {
            "learn": "collaborative",
            "base_model": str(base_model),
            "collaborative": result.to_dict(),
            "serving": chosen,
            "seconds": seconds,
        }
        (staging / COLLABORATIVE_DIR / "training.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        write_serving_settings(
            staging,
            chosen["settings"],
            {"by": "aisle train --learn collaborative", "on": "held-out cases of the training data"},
        )
        publish_directory(staging, output, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return report


def tune_serving(
    model_dir: Path, data: TrainingData, cases: Sequence[NextItemCase], tuning: ServingTuning
) -> dict[str, Any]:
    """``collaborative_weight`` and ``_temperature`` maximising the mean of HR@10, NDCG@10, HR@50 and NDCG@50 of ``cases``,
    served by ``aisle serve`` on an index of ``data``'s items built with ``model_dir``.

    The histories are posted once, ``tuning.cadence_days`` apart, and every weight is served by
    a restarted service on the same stored events (``aisle.training.tune.service_trials``).
    """
    from aisle.embed import create_encoder
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import Catalog, Product
    from aisle.training.datasets import SequenceCase
    from aisle.training.eval_recsys import HttpRecommender
    from aisle.training.metrics import headline_score, summarize_ranks, target_rank
    from aisle.training.timeline import Timeline
    from aisle.training.tune import service_trials

    cases = list(cases)[: tuning.limit] if tuning.limit else list(cases)
    ids = data.item_ids
    sequence_cases = [SequenceCase(c.user, tuple(ids[r] for r in c.history), ids[c.target]) for c in cases]
    timeline = Timeline(step_s=tuning.cadence_days * 86_400.0)
    run_id = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="aisle-tune-collaborative-") as scratch:
        root = Path(scratch)
        catalog = Catalog([Product(id=item, title=text) for item, text in zip(ids, data.item_texts)])
        encoder = create_encoder(EncoderConfig(model=str(model_dir)))
        build_version(catalog, root / "index", encoder, BuildOptions(show_progress=False))

        def post(client: Any) -> None:
            HttpRecommender(client, run_id, timeline).post_histories(sequence_cases, time.time())

        def measure(client: Any) -> float:
            recommender = HttpRecommender(client, run_id, timeline)
            ranks = [target_rank(recommender.rank(case, 50), case.target) for case in sequence_cases]
            metrics = summarize_ranks(ranks)
            log.info("served held-out metrics: %s", metrics)
            return headline_score(metrics)

        trials = service_trials(
            root / "index",
            [{"collaborative_weight": w, "collaborative_temperature": t} for w, t in tuning.grid],
            measure,
            base={},
            data_dir=root / "data",
            prepare=post,
            model=str(model_dir),
        )
    best = max(trials, key=lambda trial: trial["score"])
    return {
        "settings": {key: best[key] for key in ("collaborative_weight", "collaborative_temperature")},
        "trials": trials,
        "cases": len(cases),
        "cadence_days": tuning.cadence_days,
        "metric": "mean of HR@10, NDCG@10, HR@50, NDCG@50 through aisle serve",
    }
