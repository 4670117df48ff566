"""The contract every encoder honours: texts (or images) in, L2-normalised float32 rows out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


class Encoder(ABC):
    """Maps inputs of one modality into one vector space.

    Every method returns a C-contiguous ``float32`` matrix of shape ``(len(inputs), dim)`` whose
    rows have unit L2 norm, so that a dot product is a cosine similarity.
    """

    #: The vector space this encoder writes into ("text" or "image"). Vectors of different
    #: spaces are never compared with each other.
    modality: str = "text"

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable model name, e.g. ``all-MiniLM-L6-v2``."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of dimensions of the output vectors."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the exact weights and backend (``"<backend>:<sha256 of model content>"``).

        Recorded in an index manifest, so that a service refuses an index built with another
        model.
        """

    @abstractmethod
    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encodes catalogue texts (document side, with the model's document prefix)."""

    @abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encodes search queries (query side, with the model's query prefix)."""


class ForwardingEncoder(Encoder):
    """An encoder that passes everything to ``inner``: subclass it to change one behaviour
    (cache queries, count documents, substitute vectors) while keeping the model's identity."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.modality = inner.modality

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self.inner.encode_documents(texts, batch_size=batch_size, show_progress=show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Returns ``matrix`` as float32 with unit-norm rows (zero rows stay zero)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return matrix / norms


class ImageEncoder(Encoder):
    """Maps product images and text queries into one image space (CLIP-style).

    ``encode_queries`` embeds search text into the image space, so that a query can be scored
    against image vectors; ``encode_images`` embeds the pictures themselves.
    """

    modality: str = "image"

    @abstractmethod
    def encode_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        """Encodes image files.

        A file that is missing or cannot be decoded never aborts a catalogue build: it is logged
        with a warning, its row is all zeros and its mask entry is ``False``.

        Returns:
            ``(vectors, ok_mask)``: a ``float32`` matrix of shape ``(len(paths), dim)`` with unit
            rows where ``ok_mask`` is ``True`` and zero rows elsewhere, and a boolean vector.
        """

    @abstractmethod
    def encode_pictures(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encodes pictures already decoded (a catalogue build decodes each file once for the
        model, the colours and the perceptual hashes); unit rows, one per picture."""
