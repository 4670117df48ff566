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
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from aisle.embed.bundled import resolve_model_dir
from aisle.embed.collaborative import COLLABORATIVE_DIR, write_serving_settings
from aisle.embed.config import EncoderConfig
from aisle.training.collaborative import CollaborativeOptions, learn_collaborative
from aisle.training.model_io import publish_directory
from aisle.training.serving_tune import ServingTuning, tune_serving
from aisle.training.train_data import TrainingData

#: (weight, temperature) of the collaborative score tried by ``tune_serving`` (weight 0: the blend
#: without it). A flatter score lets items below the model's first few count beside the others.
WEIGHT_GRID = ((0.0, 1.0), *((weight, temperature) for weight in (1.0, 2.0, 4.0) for temperature in (1.0, 2.0, 4.0)))
#: The serving trials of a model with collaborative vectors.
COLLABORATIVE_TRIALS = tuple(
    {"collaborative_weight": weight, "collaborative_temperature": temperature} for weight, temperature in WEIGHT_GRID
)


def train_collaborative_model(
    data: TrainingData,
    output: Path,
    base_model: str,
    encoder: EncoderConfig,
    options: CollaborativeOptions,
    tuning: ServingTuning | None,
    *,
    overwrite: bool = False,
    learned_by: str = "aisle train --learn collaborative",
) -> dict[str, Any]:
    """Trains and publishes ``output`` (see the module docstring); returns the training report.

    ``base_model`` may be ``output`` itself (an encoder just fine-tuned there, with ``overwrite``):
    the copy is staged before the directory is replaced. ``learned_by`` names the command in the
    report and in ``aisle-serving.json``.

    Raises:
        ValueError: no next-item cases, bad options, or an output that exists without ``overwrite``.
    """
    from dataclasses import replace

    from aisle.embed import create_encoder

    if not data.sequences:
        raise ValueError(f"{learned_by} needs next-item histories (--sequences, or --catalog with --events)")
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
            {"by": learned_by, "on": "held-out cases of the training data"},
        )
        publish_directory(staging, output, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return report
