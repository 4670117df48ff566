"""Reference encoder on sentence-transformers (torch): for export parity checks and training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aisle.embed.artifacts import TORCH_INSTALL_HINT
from aisle.embed.base import Encoder, l2_normalize
from aisle.embed.bundled import model_display_name, resolve_model_dir
from aisle.embed.cache import content_hash
from aisle.embed.config import EncoderConfig


class SentenceTransformerEncoder(Encoder):
    """Wraps a local ``SentenceTransformer`` on the CPU behind the :class:`Encoder` contract.

    Slower than the ONNX encoders and needs ``aisle-search[export]``; serving should use ``onnx-int8``.

    Args:
        config: the model, thread count, truncation length and prefixes to use.

    Raises:
        ImportError: if torch or sentence-transformers are not installed.
    """

    modality = "text"

    def __init__(self, config: EncoderConfig) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ImportError(f"the sentence-transformers backend needs torch: {TORCH_INSTALL_HINT}") from error
        if config.threads < 1:
            raise ValueError(f"threads must be >= 1, got {config.threads}")
        # Process-wide in torch; the same setting onnxruntime gets, for fair comparisons.
        torch.set_num_threads(config.threads)
        self.config = config
        self._source = resolve_model_dir(config.model)
        self._model: Any = SentenceTransformer(str(self._source), device="cpu", local_files_only=True)
        max_length = config.max_length
        if max_length is not None:
            current = self._model.max_seq_length
            self._model.max_seq_length = max_length if current is None else min(max_length, current)
        self._name = model_display_name(config.model)
        self._fingerprint = f"sentence-transformers:{content_hash(self._source)}"
        probe = self._model.encode(["dimension probe"], convert_to_numpy=True)
        self._dim = int(probe.shape[1])

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (e.g. for fine-tuning)."""
        return self._model

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encodes documents with the configured document prefix."""
        return self._encode([self.config.document_prefix + text for text in texts], batch_size, show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encodes queries with the configured query prefix."""
        return self._encode([self.config.query_prefix + text for text in texts], 64, False)

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        return l2_normalize(vectors)
