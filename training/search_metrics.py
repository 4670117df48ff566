"""Search relevance metrics against graded relevance labels (qrels).

For one query with ranked results ``r_0, r_1, ...`` and gains ``g(item)`` (0 when unlabelled):

* ``recall@k`` = |relevant ∩ top k| / |relevant|, where relevant means gain > 0;
* ``MRR@k`` = 1 / (1 + position of the first relevant result) within the top k, else 0;
* ``NDCG@k`` = DCG@k / IDCG@k with ``DCG = Σ_i g(r_i) / log2(i + 2)`` (linear gains, as
  in TREC/BEIR's ``ndcg_cut``) and IDCG the DCG of the labels sorted by gain.

Queries without any relevant label are not scored (the callers leave them out and count them).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def recall_at(ranked: Sequence[Item], gains: Mapping[Item, float], k: int) -> float:
    relevant = {item for item, gain in gains.items() if gain > 0}
    if not relevant:
        raise ValueError("recall is undefined for a query without relevant items")
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank_at(ranked: Sequence[Item], relevant: Collection[Item], k: int) -> float:
    for position, item in enumerate(ranked[:k]):
        if item in relevant:
            return 1.0 / (position + 1)
    return 0.0


def ndcg_at(ranked: Sequence[Item], gains: Mapping[Item, float], k: int) -> float:
    dcg = sum(gains.get(item, 0.0) / math.log2(position + 2) for position, item in enumerate(ranked[:k]))
    ideal = sorted((gain for gain in gains.values() if gain > 0), reverse=True)[:k]
    idcg = sum(gain / math.log2(position + 2) for position, gain in enumerate(ideal))
    if idcg <= 0:
        raise ValueError("NDCG is undefined for a query without relevant items")
    return dcg / idcg


def mean_reciprocal_rank(rankings: Sequence[Sequence[Item]], relevant: Sequence[Collection[Item]], k: int) -> float:
    """Mean of ``reciprocal_rank_at`` over queries (0.0 for no query)."""
    if not rankings:
        return 0.0
    return sum(reciprocal_rank_at(r, rel, k) for r, rel in zip(rankings, relevant, strict=True)) / len(rankings)


def search_summary(
    rankings: Sequence[Sequence[Item]], qrels: Sequence[Mapping[Item, float]], k: int = 10
) -> dict[str, float | int]:
    """``{"recall@k", "MRR@k", "NDCG@k", "queries"}`` averaged over queries, rounded to 4 digits."""
    if len(rankings) != len(qrels):
        raise ValueError("one ranking per query is needed")
    n = len(rankings)
    if n == 0:
        return {f"recall@{k}": 0.0, f"MRR@{k}": 0.0, f"NDCG@{k}": 0.0, "queries": 0}
    recall = sum(recall_at(r, g, k) for r, g in zip(rankings, qrels)) / n
    mrr = sum(reciprocal_rank_at(r, {i for i, gain in g.items() if gain > 0}, k) for r, g in zip(rankings, qrels)) / n
    ndcg = sum(ndcg_at(r, g, k) for r, g in zip(rankings, qrels)) / n
    return {f"recall@{k}": round(recall, 4), f"MRR@{k}": round(mrr, 4), f"NDCG@{k}": round(ndcg, 4), "queries": n}
