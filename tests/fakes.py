"""A small deterministic encoder for fast service tests: hashed word and character-trigram counts.

It is a real bag-of-features embedding (texts sharing words score higher), not a stub; the ONNX
encoders have their own tests under tests/embed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from aisle.embed.base import Encoder, l2_normalize


class HashingEncoder(Encoder):
    def __init__(self, dim: int = 64, salt: str = "") -> None:
        self._dim = dim
        self._salt = salt

    @property
    def name(self) -> str:
        return "hashing-test-encoder"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing:{self._dim}:{self._salt}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b((self._salt + feature).encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
        return l2_normalize(out)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self._encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)
