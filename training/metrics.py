"""Ranking metrics for next-item recommendation and search with one relevant item per case.

With a single target per user (the leave-one-out protocol of SASRec, UniSRec and VQ-Rec), HR@k
equals Recall@k and NDCG@k is ``1 / log2(rank + 2)`` for a 0-based rank below ``k``, else 0.
Ranks are 0-based throughout; a target missing from the ranked list has rank ``None`` (a miss).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def target_rank(ranked_ids: Sequence[str], target: str) -> int | None:
    """The 0-based position of ``target`` in ``ranked_ids``, or None when it is absent."""
    for position, item_id in enumerate(ranked_ids):
        if item_id == target:
            return position
    return None


def hit_rate_at(rank: int | None, k: int) -> float:
    """1.0 when the target is within the top ``k``, else 0.0."""
    return 1.0 if rank is not None and rank < k else 0.0


def ndcg_at(rank: int | None, k: int) -> float:
    """NDCG@k of one target: the ideal DCG is 1, so this is the discounted gain at its rank."""
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


def reciprocal_rank(rank: int | None, cutoff: int | None = None) -> float:
    """``1 / (rank + 1)``; 0 when absent or at/after ``cutoff`` (MRR@cutoff)."""
    if rank is None or (cutoff is not None and rank >= cutoff):
        return 0.0
    return 1.0 / (rank + 1)


@dataclass
class RankingMetrics:
    """Accumulates per-case ranks and reports HR@k, NDCG@k and MRR averaged over cases."""

    cutoffs: tuple[int, ...] = (10, 50)

    def __post_init__(self) -> None:
        self._ranks: list[int | None] = []

    def add(self, rank: int | None) -> None:
        """Records the 0-based rank of one case's target (None: not retrieved)."""
        self._ranks.append(rank)

    def extend(self, ranks: Iterable[int | None]) -> None:
        for rank in ranks:
            self.add(rank)

    @property
    def count(self) -> int:
        return len(self._ranks)

    def summary(self, digits: int = 4) -> dict[str, float | int]:
        """``{"HR@10": ..., "NDCG@10": ..., ..., "MRR": ..., "cases": n}``, rounded to ``digits``.

        MRR is over the retrieved list (a target outside it counts 0), i.e. MRR@(list length).
        """
        n = max(len(self._ranks), 1)
        result: dict[str, float | int] = {}
        for k in self.cutoffs:
            result[f"HR@{k}"] = round(sum(hit_rate_at(r, k) for r in self._ranks) / n, digits)
            result[f"NDCG@{k}"] = round(sum(ndcg_at(r, k) for r in self._ranks) / n, digits)
        result["MRR"] = round(sum(reciprocal_rank(r) for r in self._ranks) / n, digits)
        result["cases"] = len(self._ranks)
        return result


#: The four figures a recommendation tuning weighs equally (``headline_score``).
HEADLINE = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")


def headline_score(metrics: Mapping[str, float | int]) -> float:
    """The mean of HR@10, NDCG@10, HR@50 and NDCG@50: the top of a list and its depth count alike."""
    return sum(float(metrics[key]) for key in HEADLINE) / len(HEADLINE)


def summarize_ranks(ranks: Iterable[int | None], cutoffs: tuple[int, ...] = (10, 50)) -> dict[str, float | int]:
    """HR@k, NDCG@k and MRR of a collection of 0-based target ranks."""
    metrics = RankingMetrics(cutoffs)
    metrics.extend(ranks)
    return metrics.summary()
