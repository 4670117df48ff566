"""Encoders: text (and optionally product images) → unit vectors, served on onnxruntime.

Typical use::

    from aisle.embed import EncoderConfig, create_encoder

    encoder = create_encoder(EncoderConfig())          # bundled all-MiniLM-L6-v2, int8 ONNX
    vectors = encoder.encode_documents(["usb cable"])  # float32, unit rows

``import embed`` stays light: torch, transformers and sentence-transformers are imported only by
the functions that need them (exporting a model, the ``sentence-transformers`` backend), and the
onnxruntime-based classes are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aisle.embed.base import Encoder, ImageEncoder, l2_normalize
from aisle.embed.config import BUNDLED_MODEL, EncoderConfig, ImageEncoderConfig

if TYPE_CHECKING:
    from pathlib import Path

    from aisle.embed.image_encoder import OnnxClipEncoder
    from aisle.embed.onnx_text import OnnxTextEncoder
    from aisle.embed.sbert import SentenceTransformerEncoder

__all__ = [
    "BUNDLED_MODEL",
    "Encoder",
    "EncoderConfig",
    "ImageEncoder",
    "ImageEncoderConfig",
    "OnnxClipEncoder",
    "OnnxTextEncoder",
    "SentenceTransformerEncoder",
    "create_encoder",
    "create_image_encoder",
    "l2_normalize",
    "prepare_image_model",
    "prepare_model",
]

_BACKENDS = ("onnx-int8", "onnx-fp32", "sentence-transformers")


def create_encoder(config: EncoderConfig, *, export: bool = True) -> Encoder:
    """Builds the text encoder for ``config.backend``.

    ``onnx-int8`` / ``onnx-fp32`` load the cached export (exporting it first if missing, which
    needs torch); ``sentence-transformers`` loads the torch model directly.

    Args:
        config: the encoder configuration.
        export: export a missing ONNX model first; when False a cache miss raises
            ``MissingExportError`` (a ``FileNotFoundError``) instead of needing torch.

    Raises:
        ValueError: for an unknown backend.
    """
    if config.backend not in _BACKENDS:
        raise ValueError(f"unknown encoder backend {config.backend!r}; choose one of {_BACKENDS}")
    if config.backend == "sentence-transformers":
        from aisle.embed.sbert import SentenceTransformerEncoder

        return SentenceTransformerEncoder(config)
    from aisle.embed.onnx_text import OnnxTextEncoder

    return OnnxTextEncoder(
        prepare_model(config, export=export),
        threads=config.threads,
        max_length=config.max_length,
        query_prefix=config.query_prefix,
        document_prefix=config.document_prefix,
    )


def prepare_model(config: EncoderConfig, *, export: bool = True) -> Path:
    """Ensures the ONNX export for ``config`` is cached and returns its directory.

    This is the only step that needs torch (``pip install 'aisle-search[export]'``); a cache hit needs
    only onnxruntime. See :func:`embed.export.prepare_model`.
    """
    from aisle.embed.export import prepare_model as _prepare

    return _prepare(config, export=export)


def create_image_encoder(config: ImageEncoderConfig) -> ImageEncoder | None:
    """Builds the CLIP-style image encoder, or returns ``None`` when no image model is set.

    See :func:`embed.image_encoder.create_image_encoder`.
    """
    from aisle.embed.image_encoder import create_image_encoder as _create

    return _create(config)


def prepare_image_model(config: ImageEncoderConfig) -> Path:
    """Ensures the ONNX export of the CLIP towers is cached; see :func:`embed.clip.prepare_clip_model`."""
    from aisle.embed.clip import prepare_clip_model

    return prepare_clip_model(config)


def __getattr__(name: str) -> Any:
    """Loads the onnxruntime/torch-backed classes on first access (PEP 562)."""
    if name == "OnnxTextEncoder":
        from aisle.embed.onnx_text import OnnxTextEncoder

        return OnnxTextEncoder
    if name == "OnnxClipEncoder":
        from aisle.embed.image_encoder import OnnxClipEncoder

        return OnnxClipEncoder
    if name == "SentenceTransformerEncoder":
        from aisle.embed.sbert import SentenceTransformerEncoder

        return SentenceTransformerEncoder
    raise AttributeError(f"module 'embed' has no attribute {name!r}")
