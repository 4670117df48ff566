"""Loading a sentence-transformers model for training, and saving the result crash-safely."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from aisle.embed.bundled import resolve_model_dir
from aisle.index.storage import fsync_dir, fsync_file

#: Written into a trained model directory: how it was trained, for reproducibility.
TRAINING_REPORT = "aisle-training.json"


def model_directory(spec: str) -> Path:
    """The local directory of ``spec`` (the bundled model or a path).

    Raises:
        ValueError: the directory does not exist or is not a sentence-transformers model.
    """
    try:
        path = resolve_model_dir(spec)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    if not (path / "modules.json").is_file():
        raise ValueError(f"{spec}: not a sentence-transformers model directory (no modules.json)")
    return path


def load_sentence_transformer(spec: str, max_seq_length: int | None = None) -> Any:
    """Loads a model on the CPU, offline; ``max_seq_length`` caps its token length."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_directory(spec)), device="cpu")
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def save_model_atomically(model: Any, output: Path, report: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Saves ``model`` and ``report`` to ``output`` so that readers never see a partial directory.

    The model is written into a hidden sibling directory, every file is fsynced, and the
    directory is renamed to ``output``. With ``overwrite`` an existing ``output`` is first renamed
    aside and removed only after the new one is in place.

    Raises:
        ValueError: ``output`` exists and ``overwrite`` is False.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; choose another output or overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.tmp-{secrets.token_hex(4)}"
    try:
        model.save(str(staging))
        (staging / TRAINING_REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        publish_directory(staging, output, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def publish_directory(staging: Path, output: Path, *, overwrite: bool) -> None:
    """Moves the written ``staging`` directory to ``output`` crash-safely.

    Every file and directory is fsynced before the rename; an existing ``output`` is renamed
    aside first and removed only once the new one is in place.

    Raises:
        ValueError: ``output`` exists and ``overwrite`` is False.
    """
    for path in staging.rglob("*"):
        if path.is_file():
            fsync_file(path)
    for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        fsync_dir(directory)
    retired = None
    if output.exists():
        if not overwrite:
            raise ValueError(f"{output} exists; choose another --output or pass --overwrite")
        retired = output.parent / f".{output.name}.old-{secrets.token_hex(4)}"
        os.rename(output, retired)
    os.rename(staging, output)
    fsync_dir(output.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
