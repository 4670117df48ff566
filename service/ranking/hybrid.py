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

Image space (a version built with an image model): the query is also embedded by the image
model's text tower, its image-space top N joins the union, and every candidate gets
``image_weight · max(0, cos) / best cos`` (the image cosine divided by the best of the query among
the candidates, as BM25 is; 0 for a product without a picture), reported as the ``image`` part;
with ``rrf``, ``image_weight/(rrf_k + image rank)``. Image weight 0 turns it off. Similar items
take the item's picture as a second query: its image neighbours join the text ones and a
candidate with a picture scores ``(1 − w)·cos_text`` (``semantic``) ``+ w·cos_image`` (``image``)
with ``w = similar_image_weight``; without a picture (on either side) it scores ``cos_text``.

Personal blend: with a profile, ``relevance = (1 − s)·query_relevance + s·cosine(profile, item)``
with ``s = index.profile.personal_share(ctx.mass)`` (or ``ctx.personal_share`` when the
personalization sets it); the parts (``semantic``, ``lexical``, ``image``,
``personal``) always add up to ``relevance``. With an image profile too (``ctx.image_profile``),
a candidate with a picture uses ``(1 − a)·cos(profile, item) + a·cos(image profile, picture)``,
``a = profile_image_weight``. Similar items use the item's own vector as the
query (``semantic`` = cosine to the item) and lean towards the user the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aisle.index.loaded import LoadedIndex, VectorSpace
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
    image_weight: float = 0.2
    similar_image_weight: float = 0.5
    profile_image_weight: float = 0.3


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
    prefix: bool = False,
    image_vector: np.ndarray | None = None,
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
        prefix: the query's last word may be unfinished (the search box as one types): BM25
            matches the words it begins too.
        image_vector: the query embedded in the version's image space (None: no image retrieval).
    """
    excluded = np.fromiter(exclude_rows, dtype=np.int64)
    mask = selection.mask if selection is not None else None
    image = index.image if image_vector is not None and fusion.image_weight > 0 and retrieval != "lexical" else None
    dense_rows = np.empty(0, np.int64)
    if retrieval != "lexical":
        if query_vector is None:
            raise ValueError(f"{retrieval} retrieval needs the query vector")
        dense_rows, _ = index.text.ann.search(query_vector, n + len(excluded), selection)
        dense_rows = _without(dense_rows, excluded)[:n]
    lexical_rows = np.empty(0, np.int64)
    if retrieval != "dense":
        lexical_rows, _ = index.lexical.top(query, n, selection, excluded, prefix=prefix)
    image_rows = np.empty(0, np.int64)
    if image is not None:
        image_rows = _image_neighbours(image, image_vector, n, selection, excluded)  # type: ignore[arg-type]
    extras = _allowed_extras(extra_rows, mask, excluded)
    rows = _sorted_union(dense_rows, lexical_rows, image_rows, extras)
    vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
    cosine = vectors @ np.asarray(query_vector, dtype=np.float32) if query_vector is not None else np.zeros(len(rows))
    bm25 = (
        index.lexical.scores_of(query, rows, prefix=prefix).astype(np.float64)
        if retrieval != "dense"
        else np.zeros(len(rows))
    )
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
    parts = {"semantic": semantic, "lexical": lexical}
    image_vectors = None
    if image is not None:
        image_vectors = np.asarray(image.vectors[rows], dtype=np.float32)
        if fusion.method == "rrf":
            parts["image"] = fusion.image_weight * reciprocal_ranks(image_rows, rows, fusion.rrf_k)
        else:
            image_cosine = np.maximum(
                (image_vectors @ np.asarray(image_vector, dtype=np.float32)).astype(np.float64), 0
            )
            best = float(image_cosine.max()) if len(rows) else 0.0
            parts["image"] = fusion.image_weight * image_cosine / best if best > 0 else np.zeros(len(rows))
    sources = _sources(rows, dense_rows, lexical_rows, image_rows)
    return blend_personal(rows, vectors, parts, ctx, sources, image_vectors=image_vectors, fusion=fusion)


def _image_neighbours(
    space: VectorSpace, vector: np.ndarray, n: int, selection: RowSelection | None, excluded: np.ndarray
) -> np.ndarray:
    """The top ``n`` rows of the image space among products that have a picture."""
    assert space.present is not None  # an image space always records which rows have a picture
    allowed = space.present if selection is None else space.present & selection.mask
    found, _ = space.ann.search(np.asarray(vector, dtype=np.float32), n + len(excluded), allowed)
    return _without(found, excluded)[:n]


def item_candidates(
    index: LoadedIndex,
    row: int,
    *,
    n: int,
    selection: RowSelection | None = None,
    exclude_rows: Iterable[int] = (),
    ctx: UserContext | None = None,
    extra_rows: Iterable[int] = (),
    fusion: FusionParams = FusionParams(),
    together: tuple[np.ndarray, np.ndarray] | None = None,
    together_weight: float = 0.0,
) -> Candidates:
    """The candidates of "similar to item ``row``" (never the item itself), from text and picture.

    ``together``: items bought with it and their scores (best 1.0), nominated as candidates and
    added to the relevance with ``together_weight`` (source ``bought_together`` where that part
    outweighs the similarity).
    """
    excluded = np.unique(np.append(np.fromiter(exclude_rows, dtype=np.int64), row))
    item_vector = np.asarray(index.text.vectors[row], dtype=np.float32)
    found, _ = index.text.ann.search(item_vector, n + len(excluded), selection)
    found = _without(found, excluded)[:n]
    image = index.image
    weight = fusion.similar_image_weight
    if image is None or image.present is None or not image.present[row] or weight <= 0:
        image = None
    image_rows = np.empty(0, np.int64)
    if image is not None:
        picture = np.asarray(image.vectors[row], dtype=np.float32)
        image_rows = _image_neighbours(image, picture, n, selection, excluded)
    mask = selection.mask if selection is not None else None
    together_rows = np.empty(0, np.int64)
    if together is not None and together_weight > 0 and len(together[0]):
        together_rows = _allowed_extras(together[0], mask, excluded)
    extras = _allowed_extras(extra_rows, mask, excluded)
    rows = _sorted_union(found, image_rows, extras, together_rows)
    vectors = np.asarray(index.text.vectors[rows], dtype=np.float32)
    semantic = (vectors @ item_vector).astype(np.float64)
    parts = {"semantic": semantic, "lexical": np.zeros(len(rows))}
    image_vectors = None
    if image is not None:
        image_vectors = np.asarray(image.vectors[rows], dtype=np.float32)
        with_picture = image.present[rows]  # type: ignore[index]
        image_cosine = (image_vectors @ picture).astype(np.float64)
        parts["semantic"] = np.where(with_picture, (1.0 - weight) * semantic, semantic)
        parts["image"] = np.where(with_picture, weight * image_cosine, 0.0)
    sources = _sources(rows, found, np.empty(0, np.int64), image_rows)
    candidates = blend_personal(rows, vectors, parts, ctx, sources, image_vectors=image_vectors, fusion=fusion)
    if len(together_rows) and together is not None:
        score = dict(zip(together[0].tolist(), together[1].tolist()))
        bonus = together_weight * np.array([score.get(int(r), 0.0) for r in rows])
        candidates.parts["bought_together"] = bonus
        candidates.relevance = candidates.relevance + bonus
        if candidates.sources is not None:
            candidates.sources = np.where(bonus > semantic, "bought_together", candidates.sources).astype(object)
    return candidates


def blend_personal(
    rows: np.ndarray,
    vectors: np.ndarray,
    parts: dict[str, np.ndarray],
    ctx: UserContext | None,
    sources: np.ndarray | None = None,
    *,
    image_vectors: np.ndarray | None = None,
    fusion: FusionParams = FusionParams(),
) -> Candidates:
    """Candidates whose relevance is the query parts, blended with the profile when there is one.

    ``image_vectors`` (the candidates' pictures, zero rows without one) let an image profile
    take part (see the module docstring).
    """
    share = 0.0
    if ctx is not None and ctx.profile is not None:
        share = ctx.personal_share if ctx.personal_share is not None else personal_share(ctx.mass)
    personal = np.zeros(len(rows))
    if share > 0 and ctx is not None and ctx.profile is not None:
        parts = {name: (1.0 - share) * values for name, values in parts.items()}
        affinity = (vectors @ np.asarray(ctx.profile, dtype=np.float32)).astype(np.float64)
        if image_vectors is not None and ctx.image_profile is not None and fusion.profile_image_weight > 0:
            picture = (image_vectors @ np.asarray(ctx.image_profile, dtype=np.float32)).astype(np.float64)
            with_picture = np.einsum("ij,ij->i", image_vectors, image_vectors) > 0
            weight = fusion.profile_image_weight
            affinity = np.where(with_picture, (1.0 - weight) * affinity + weight * picture, affinity)
        personal = share * affinity
    if ctx is not None and ctx.together is not None and ctx.together_weight > 0 and len(ctx.together[0]):
        # What people buy with or after the user's strongest items: the collaborative half of
        # the profile, which the vector average alone cannot express.
        together_rows, together_scores = ctx.together
        order = np.argsort(together_rows, kind="stable")
        sorted_rows = together_rows[order]
        at = np.minimum(np.searchsorted(sorted_rows, rows), len(sorted_rows) - 1)
        found = sorted_rows[at] == rows
        bonus = np.zeros(len(rows))
        bonus[found] = ctx.together_weight * together_scores[order[at[found]]]
        personal = personal + bonus
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
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if len(rows) else rows


def reciprocal_ranks(ranked: np.ndarray, rows: np.ndarray, k: float) -> np.ndarray:
    out = np.zeros(len(rows))
    if len(ranked) == 0:
        return out
    order = np.argsort(ranked)
    at = np.minimum(np.searchsorted(ranked[order], rows), len(ranked) - 1)
    found = ranked[order][at] == rows
    out[found] = 1.0 / (k + order[at[found]] + 1)
    return out


#: Names of the retrievers that found a candidate, indexed by ``1·dense + 2·lexical + 4·image``.
SOURCE_NAMES = np.array(
    [
        "pin",
        "dense",
        "lexical",
        "dense+lexical",
        "image",
        "dense+image",
        "lexical+image",
        "dense+lexical+image",
    ],
    dtype=object,
)


def _sources(
    rows: np.ndarray, dense_rows: np.ndarray, lexical_rows: np.ndarray, image_rows: np.ndarray | None = None
) -> np.ndarray:
    """Which retriever found each of ``rows`` (sorted, unique; every list is a subset of it)."""
    codes = np.zeros(len(rows), dtype=np.int8)
    codes[np.searchsorted(rows, dense_rows)] += 1
    codes[np.searchsorted(rows, lexical_rows)] += 2
    if image_rows is not None and len(image_rows):
        codes[np.searchsorted(rows, image_rows)] += 4
    return SOURCE_NAMES[codes]
