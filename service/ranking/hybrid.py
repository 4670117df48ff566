"""Candidate generation: dense and BM25 retrieval fused, blended with the user's profile.

A search retrieves the dense top N (FAISS, within the filter) and the BM25 top N (within the
same filter), takes their union and scores *every* candidate on both signals exactly (a dense
cosine for lexical-only finds, the BM25 score for dense-only finds, 0 when no token matches), so
the fusion never has to guess a missing score:

* ``weighted`` (default): ``dense_weight · cosine + lexical_weight · bm25 / max bm25``, the
  BM25 score divided by the best one of the query within the filter;
* ``rrf``: reciprocal rank fusion, ``dense_weight/(rrf_k + dense rank) + lexical_weight/(rrf_k
  + lexical rank)`` (0 for a list the candidate is not in).

Defaults (``weighted``, 0.6 dense / 0.4 lexical, the same in ``aisle.service.settings``) are the
best MRR@10 on half of the Amazon-Google dev queries (even positions by query id) with the
bundled MiniLM; nearby weights score almost the same there, and RRF slightly lower.
Results on the other half and on all queries: ``benchmarks/results/search_ag.json``.

Personal blend: with a profile, ``relevance = (1 − s)·query_relevance + s·cosine(profile, item)``
with ``s = index.profile.personal_share(ctx.mass)`` (or ``ctx.personal_share`` when the
personalization sets it); the parts (``semantic``, ``lexical``,
``personal``) always add up to ``relevance``. Similar items use the item's own vector as the
query (``semantic`` = cosine to the item) and lean towards the user the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import personal_share
from aisle.index.selection import RowSelection
from aisle.service.ranking.types import Candidates, UserContext

Retrieval = Literal["hybrid", "dense", "lexical"]
RETRIEVALS: tuple[str, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class FusionParams:
    """How dense and lexical scores are fused (see the module docstring)."""

    method: Literal["weighted", "rrf"] = "weighted"
    dense_weight: float = 0.6
    lexical_weight: float = 0.4
    rrf_k: float = 60.0


def query_candidates(
    index: LoadedIndex,
    query: str,
    query_vector: np.ndarray | None,
    *,
    n: int,
    selection: RowSelection | None = None,
    exclude_rows: Iterable[int] = (),
    retrieval: Retrieval = "hybrid",
    fusion: FusionParams = FusionParams(),
    ctx: UserContext | None = None,
    extra_rows: Iterable[int] = (),
) -> Candidates:
    """The candidates of a search, scored and blended.

    Args:
        index: the version searched.
        query: the query text (for BM25).
        query_vector: its unit vector; may be None only for ``lexical`` retrieval.
        n: candidates per retriever.
        selection: rows allowed by the request's filters (None: all).
        exclude_rows: rows never to return.
        retrieval: ``hybrid``, ``dense`` only or ``lexical`` (BM25) only.
        fusion: the fusion of ``hybrid``.
        ctx: the user, for the personal blend.
        extra_rows: rows to add whatever retrieval found (pinned items), if allowed.
    """
    excluded = np.fromiter(exclude_rows, dtype=np.int64)
    mask = selection.mask if selection is not None else None
    dense_rows = np.empty(0, np.int64)
    if retrieval != "lexical":
        if query_vector is None:
            raise ValueError(f"{retrieval} retrieval needs the query vector")
        dense_rows, _ = index.text.ann.search(query_vector, n + len(excluded), selection)
        dense_rows = _without(dense_rows, excluded)[:n]
    lexical_rows = np.empty(0, np.int64)
    if retrieval != "dense":
        lexical_rows, _ = index.lexical.top(query, n, selection, excluded)
    extras = _allowed_extras(extra_rows, mask, excluded)
    rows = _sorted_union(dense_rows, lexical_rows, extras)
    vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
    cosine = vectors @ np.asarray(query_vector, dtype=np.float32) if query_vector is not None else np.zeros(len(rows))
    bm25 = index.lexical.scores_of(query, rows).astype(np.float64) if retrieval != "dense" else np.zeros(len(rows))
    # The best BM25 row within the filter is the first lexical row, so it is among ``rows``.
    best_bm25 = float(bm25.max()) if len(lexical_rows) else 1.0

    if retrieval == "dense":
        semantic, lexical = cosine.astype(np.float64), np.zeros(len(rows))
    elif retrieval == "lexical":
        semantic, lexical = np.zeros(len(rows)), bm25 / best_bm25
    elif fusion.method == "rrf":
        semantic = fusion.dense_weight * reciprocal_ranks(dense_rows, rows, fusion.rrf_k)
        lexical = fusion.lexical_weight * reciprocal_ranks(lexical_rows, rows, fusion.rrf_k)
    else:
        semantic = fusion.dense_weight * cosine.astype(np.float64)
        lexical = fusion.lexical_weight * bm25 / best_bm25
    sources = _sources(rows, dense_rows, lexical_rows)
    return blend_personal(rows, vectors, {"semantic": semantic, "lexical": lexical}, ctx, sources)


def item_candidates(
    index: LoadedIndex,
    row: int,
    *,
    n: int,
    selection: RowSelection | None = None,
    exclude_rows: Iterable[int] = (),
    ctx: UserContext | None = None,
    extra_rows: Iterable[int] = (),
) -> Candidates:
    """The candidates of "similar to item ``row``" (never the item itself)."""
    excluded = np.unique(np.append(np.fromiter(exclude_rows, dtype=np.int64), row))
    item_vector = np.asarray(index.text.vectors[row], dtype=np.float32)
    found, _ = index.text.ann.search(item_vector, n + len(excluded), selection)
    found = _without(found, excluded)[:n]
    extras = _allowed_extras(extra_rows, selection.mask if selection is not None else None, excluded)
    rows = _sorted_union(found, extras)
    vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
    semantic = (vectors @ item_vector).astype(np.float64)
    sources = _sources(rows, found, np.empty(0, np.int64))
    return blend_personal(rows, vectors, {"semantic": semantic, "lexical": np.zeros(len(rows))}, ctx, sources)


def blend_personal(
    rows: np.ndarray,
    vectors: np.ndarray,
    parts: dict[str, np.ndarray],
    ctx: UserContext | None,
    sources: np.ndarray | None = None,
) -> Candidates:
    """Candidates whose relevance is the query parts, blended with the profile when there is one."""
    share = 0.0
    if ctx is not None and ctx.profile is not None:
        share = ctx.personal_share if ctx.personal_share is not None else personal_share(ctx.mass)
    personal = np.zeros(len(rows))
    if share > 0 and ctx is not None and ctx.profile is not None:
        parts = {name: (1.0 - share) * values for name, values in parts.items()}
        personal = share * (vectors @ np.asarray(ctx.profile, dtype=np.float32)).astype(np.float64)
    parts = {**parts, "personal": personal}
    # Every part counts (a browse page adds ``popularity``; explanations show it as ``other``).
    relevance = sum(parts.values(), np.zeros(len(rows)))
    return Candidates(rows=rows, relevance=relevance, parts=parts, sources=sources, vectors=vectors)


def _without(rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    return rows[~np.isin(rows, excluded)] if len(excluded) else rows


def _allowed_extras(extra_rows: Iterable[int], mask: np.ndarray | None, excluded: np.ndarray) -> np.ndarray:
    extras = np.fromiter(extra_rows, dtype=np.int64)
    if mask is not None and len(extras):
        extras = extras[mask[extras]]
    return _without(extras, excluded)


def _sorted_union(*parts: np.ndarray) -> np.ndarray:
    """The distinct rows of ``parts``, ascending (``np.unique`` costs 4x more on a few hundred)."""
    rows = np.sort(np.concatenate(parts).astype(np.int64, copy=False))
    return rows[np.r_[True, rows[1:] != rows[:-1]]] if len(rows) else rows


def reciprocal_ranks(ranked: np.ndarray, rows: np.ndarray, k: float) -> np.ndarray:
    out = np.zeros(len(rows))
    if len(ranked) == 0:
        return out
    order = np.argsort(ranked)
    at = np.minimum(np.searchsorted(ranked[order], rows), len(ranked) - 1)
    found = ranked[order][at] == rows
    out[found] = 1.0 / (k + order[at[found]] + 1)
    return out


#: Names of the retrievers that found a candidate, indexed by ``1·dense + 2·lexical``.
SOURCE_NAMES = np.array(["pin", "dense", "lexical", "dense+lexical"], dtype=object)


def _sources(rows: np.ndarray, dense_rows: np.ndarray, lexical_rows: np.ndarray) -> np.ndarray:
    """Which retriever found each of ``rows`` (sorted, unique; both lists are subsets of it)."""
    codes = np.zeros(len(rows), dtype=np.int8)
    codes[np.searchsorted(rows, dense_rows)] += 1
    codes[np.searchsorted(rows, lexical_rows)] += 2
    return SOURCE_NAMES[codes]
