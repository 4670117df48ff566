"""Text encoder on onnxruntime + ``tokenizers``: the serving path, free of torch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from aisle.embed.artifacts import MANIFEST_NAME, TEXT_MODEL_FILE, TOKENIZER_FILE, ExportManifest, ManifestIdentity
from aisle.embed.base import Encoder, l2_normalize
from aisle.embed.runtime import load_tokenizer, make_session

#: Documents are tokenised, sorted by length and padded this many at a time, which bounds
#: memory for million-item catalogues while keeping padding low.
_SORT_WINDOW = 8192

#: Padded tokens per onnxruntime call when encoding documents. Small batches keep the
#: feed-forward activations (tokens x 1,536 floats for MiniLM) in the core's L2 cache; measured
#: on real titles, 16-32 titles per call encode faster than 64 or 128
#: (``benchmarks/results/DECISIONS.md``, "Document batches").
DEFAULT_TOKEN_BUDGET = 512


class OnnxTextEncoder(ManifestIdentity, Encoder):
    """Runs an exported sentence-transformers model with onnxruntime.

    The output equals sentence-transformers' (pooling over the attention mask, then L2
    normalisation) up to float rounding for the fp32 export and up to quantisation noise for
    the int8 export. Rows are always unit vectors, as the :class:`Encoder` contract requires.

    Args:
        model_dir: an export directory written by :func:`embed.prepare_model`.
        threads: onnxruntime intra-op threads.
        max_length: truncation length; ``None`` uses the model's own (sentence-transformers'
            ``max_seq_length``); larger values are capped at it.
        query_prefix: prepended to every query.
        document_prefix: prepended to every document.
    """

    modality = "text"

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 1,
        max_length: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / MANIFEST_NAME).is_file():
            raise FileNotFoundError(
                f"{self.model_dir} is not an exported model (no {MANIFEST_NAME}); "
                "create it with embed.prepare_model(config)"
            )
        self.manifest = ExportManifest.read(self.model_dir)
        if self.manifest.kind != "text":
            raise ValueError(f"{self.model_dir} holds a {self.manifest.kind!r} export, not a text model")
        if self.manifest.pooling not in ("mean", "cls", "max"):
            raise ValueError(f"unsupported pooling {self.manifest.pooling!r} in {self.model_dir}")
        limit = self.manifest.max_length
        self.max_length = limit if max_length is None else max(2, min(max_length, limit))
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        # The tokenizer never pads (padding happens in NumPy per batch), so it holds no
        # per-call state and one encoder can serve concurrent threads.
        self._tokenizer = load_tokenizer(self.model_dir / TOKENIZER_FILE, max_length=self.max_length)
        self._session = make_session(self.model_dir / TEXT_MODEL_FILE, threads)
        # Resolved once, not per call: a batch-1 query is short enough for this to show.
        self._input_names = tuple(node.name for node in self._session.get_inputs())
        self._output_names = [self._session.get_outputs()[0].name]
        self._lowercase = self.manifest.do_lower_case
        self._pad_id = self.manifest.pad_id
        self.token_budget = DEFAULT_TOKEN_BUDGET

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens (special tokens included, after truncation) of each text."""
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(self._prepare(texts, ""))]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encodes queries; one query is the latency-critical case and takes a fast path."""
        if isinstance(texts, str):
            raise TypeError("encode_queries expects a sequence of strings, not a single string")
        if len(texts) == 1:
            encoding = self._tokenizer.encode(self._prepare(texts, self.query_prefix)[0])
            ids = np.array([encoding.ids], dtype=np.int64)
            type_ids = np.array([encoding.type_ids], dtype=np.int64)
            return self._run(ids, np.ones_like(ids), type_ids)
        return self._encode(self._prepare(texts, self.query_prefix), batch_size=64, progress=None)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encodes documents in length-sorted batches (output keeps the input order).

        Args:
            texts: the documents.
            batch_size: at most this many texts per onnxruntime call; calls are further capped
                at :data:`DEFAULT_TOKEN_BUDGET` padded tokens (``token_budget``), which is faster
                on CPUs than large batches.
            show_progress: show a tqdm progress bar.
        """
        if isinstance(texts, str):
            raise TypeError("encode_documents expects a sequence of strings, not a single string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(texts), desc=f"encoding ({self.name})", unit="doc")
        try:
            return self._encode(self._prepare(texts, self.document_prefix), batch_size, progress)
        finally:
            if progress is not None:
                progress.close()

    def _prepare(self, texts: Sequence[str], prefix: str) -> list[str]:
        prepared = [prefix + text for text in texts] if prefix else list(texts)
        return [text.lower() for text in prepared] if self._lowercase else prepared

    def _encode(self, texts: list[str], batch_size: int, progress: object | None) -> np.ndarray:
        output = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _SORT_WINDOW):
            window = texts[start : start + _SORT_WINDOW]
            # Tokenise without padding, then pad per batch of similar lengths: batches in input
            # order are about half padding on real titles, sorted almost none.
            encodings = self._tokenizer.encode_batch(window)
            lengths = np.array([len(encoding.ids) for encoding in encodings])
            order = np.argsort(lengths, kind="stable")
            for batch in _batches(order, lengths, batch_size, self.token_budget):
                ids, mask, type_ids = _pad([encodings[i] for i in batch], self._pad_id)
                output[start + batch] = self._run(ids, mask, type_ids)
                if progress is not None:
                    progress.update(len(batch))  # type: ignore[attr-defined]
        return output

    def model_inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The onnxruntime feeds for ``texts`` as one batch (no prefix), padded to its longest row."""
        ids, mask, type_ids = _pad(self._tokenizer.encode_batch(self._prepare(texts, "")), self._pad_id)
        return self._feeds(ids, mask, type_ids)

    def _feeds(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray) -> dict[str, np.ndarray]:
        available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}
        return {name: available[name] for name in self._input_names}

    def _run(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        hidden = self._session.run(self._output_names, self._feeds(ids, mask, type_ids))[0]
        return l2_normalize(_pool(hidden, mask, self.manifest.pooling))


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """sentence-transformers' pooling over the non-padding tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[:, :, None].astype(np.float32)
    if pooling == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    # Same clamp as sentence-transformers, so an all-padding row cannot divide by zero.
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    return (hidden * weights).sum(axis=1) / counts


def _pad(encodings: list, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pads token ids to the longest row of the batch."""
    width = max(len(encoding.ids) for encoding in encodings)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    type_ids = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        length = len(encoding.ids)
        ids[row, :length] = encoding.ids
        mask[row, :length] = 1
        type_ids[row, :length] = encoding.type_ids
    return ids, mask, type_ids


def _batches(order: np.ndarray, lengths: np.ndarray, max_rows: int, token_budget: int) -> Iterator[np.ndarray]:
    """Cuts length-sorted rows into batches of at most ``max_rows`` rows and ``token_budget``
    padded tokens (a batch of one long text may exceed the budget)."""
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_rows and (end - start + 1) * lengths[order[end]] <= token_budget:
            end += 1
        yield order[start:end]
        start = end
