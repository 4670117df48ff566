"""BM25 over the products' text with ``bm25s``, built into each version at rebuild time.

Exact SKUs, model numbers and brand names are where dense vectors are weakest; this index finds
them by token. Scores are BM25 (unbounded, ≥ 0); rows with no matching token are not returned.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Word characters, keeping in-word dots, dashes and slashes so that "cs3", "dw4524" and
# "4-1/2-inch" survive as tokens as well as their parts.
_TOKEN = re.compile(r"[0-9a-z]+(?:[./-][0-9a-z]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens: each compound token (``4-1/2-inch``) plus its parts."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.casefold()):
        token = match.group()
        tokens.append(token)
        if any(sep in token for sep in "./-"):
            tokens.extend(part for part in re.split(r"[./-]", token) if part)
    return tokens


class LexicalIndex:
    """A BM25 index whose row i is row i of the version's items."""

    def __init__(self, retriever, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        import bm25s

        retriever = bm25s.BM25()
        # An empty document would make bm25s drop the row; a placeholder token keeps rows aligned.
        retriever.index([tokenize(text) or ["\u2205"] for text in texts], show_progress=False)
        return cls(retriever, len(texts))

    def save(self, directory: Path) -> None:
        self._retriever.save(str(directory))

    @classmethod
    def load(cls, directory: Path, size: int) -> LexicalIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(directory)), size)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no token matches)."""
        tokens = [t for t in tokenize(query) if t in self._retriever.vocab_dict]
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float32)

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows by BM25 (only rows with a positive score), best first."""
        scores = self.scores(query)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if len(positive) == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        k = min(k, len(positive))
        top = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        top = top[np.lexsort((top, -scores[top]))]
        return top.astype(np.int64), scores[top].astype(np.float32)
