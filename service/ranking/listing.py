"""Storefront listings: the matches of a search or browse, their facets, their order and the page.

**A match.** For a text query, a row allowed by the filters (and by the hard rules: stock,
exclusions) matches when

* its BM25 score is at least ``lexical_floor`` times the best BM25 score of the query within the
  filters (a row holding only the query's weakest word does not match a query of several), or
* it is one of the ``candidates`` nearest rows of the dense (semantic) search within the filters
  and its cosine is at least ``min_similarity`` and within ``similarity_margin`` of the best one
  (dense-only hits far below the best are not padded in), or
* it is pinned to the query (a pin is a merchandising decision).

For an empty query (a browse or category page) every allowed row matches. ``total`` counts the
matches, ``facets`` count their values, and the pages list them: one definition for all three.
When nothing matches the response says so (``matched: false``, ``total: 0``, no results).

**The list.** Without ``sort`` the matches are ranked: the candidates (the dense matches, the
``candidates`` best lexical matches and the pins; for a browse, the ``candidates`` most popular
matches and, for a known visitor, the nearest to their profile) go through the reranker (rules,
personalization, diversity, exploration) planned for ``LIST_DEPTH`` positions, then the other
matches follow by relevance. With ``sort: "field:asc|desc"`` every match is ordered by the
field (rows without a value last), relevance breaking ties, then row. Within an index version
the list depends only on the request's query, filters, sort, rules and visitor, so the pages
(``offset``, ``k``) of one list are its slices; the reranker's exploration is seeded by that
list's key, not by the request id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisle.index.loaded import LoadedIndex
from aisle.index.selection import RowSelection
from aisle.index.tokens import query_tokens
from aisle.service.ranking.hybrid import (
    FusionParams,
    _image_neighbours,
    _sources,
    blend_personal,
    reciprocal_ranks,
)
from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import RuleSet
from aisle.service.ranking.types import Candidates, Hit, UserContext

#: The deepest position a page may reach (``offset + k``).
LIST_DEPTH = 1000


@dataclass(frozen=True)
class MatchParams:
    """What counts as a match of a text query (see the module docstring)."""

    lexical_floor: float = 0.3
    min_similarity: float = 0.35
    similarity_margin: float = 0.15
    #: Added to the lexical part (before its weight), times the field's search weight, for each
    #: field whose value the query names in full (``FieldIndex.values_named_by``): "men's running
    #: shoes" favours gender Men.
    attribute_boost: float = 0.3


@dataclass(frozen=True)
class SortOrder:
    """``field:asc`` or ``field:desc``."""

    field: str
    descending: bool = False


@dataclass
class Listing:
    """A page of a listing, with what describes all of its matches."""

    hits: list[Hit]
    total: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        return self.total > 0


def list_seed(version: str, *parts: Any) -> str:
    """The key of a list within a version, seeding its exploration (stable across processes)."""
    return hashlib.blake2b(repr((version, parts)).encode("utf-8"), digest_size=12).hexdigest()


class TextMatches:
    """The matches of a text query and everything retrieval knows about them."""

    def __init__(
        self,
        index: LoadedIndex,
        query: str,
        vector: np.ndarray | None,
        *,
        n: int,
        selection: RowSelection | None,
        excluded: np.ndarray,
        extras: np.ndarray,
        params: MatchParams,
        lexical: bool = True,
        image_vector: np.ndarray | None = None,
    ) -> None:
        self.index, self.query, self.vector = index, query, vector
        self.dense_rows = np.empty(0, np.int64)
        self.dense_ranked = np.empty(0, np.int64)  # best first
        if vector is not None:
            found, _ = index.text.ann.search(vector, n + len(excluded), selection)
            found = _without(found, excluded)[:n]
            if len(found):
                cosine = np.asarray(index.text.vectors[found], dtype=np.float32) @ vector
                floor = max(params.min_similarity, float(cosine.max()) - params.similarity_margin)
                self.dense_ranked = found[cosine >= floor]
                self.dense_rows = np.sort(self.dense_ranked)
        self.lexical_rows = np.empty(0, np.int64)  # best first
        self.best_bm25 = 0.0
        self.lexical_matches = np.empty(0, np.int64)  # ascending
        if lexical:
            top_rows, top_scores = index.lexical.top(query, n, selection, excluded)
            if len(top_rows):
                self.best_bm25 = float(top_scores[0])
                floor = params.lexical_floor * self.best_bm25
                self.lexical_rows = top_rows[top_scores >= floor]
                if len(self.lexical_rows) < len(top_rows) or len(top_rows) < n:
                    self.lexical_matches = np.sort(self.lexical_rows)
                else:  # more matches than candidates: enumerate them all
                    rows, _ = index.lexical.above(query, floor, selection)
                    self.lexical_matches = _without(rows, excluded)
        # The image space (a version built with an image model): its nearest pictures within the
        # margin of the best one are matches too, and every candidate gets the image part.
        self.image_vector = image_vector if index.image is not None else None
        self.image_rows = np.empty(0, np.int64)
        self.best_image = 0.0
        if self.image_vector is not None:
            found = _image_neighbours(index.image, self.image_vector, n, selection, excluded)  # type: ignore[arg-type]
            if len(found):
                cosine = np.asarray(index.image.vectors[found], dtype=np.float32) @ self.image_vector  # type: ignore[union-attr]
                self.best_image = max(float(cosine.max()), 0.0)
                self.image_rows = np.sort(found[cosine >= self.best_image - params.similarity_margin])
        self.extras = extras
        self.attribute_boost = params.attribute_boost
        self.named_values: dict[str, np.ndarray] = {}
        if lexical and params.attribute_boost > 0:
            tokens = index.lexical.tokens(query)
            if tokens:
                version = index.lexical.tokenizer_version
                self.named_values = index.items.fields.values_named_by(tokens, lambda text: query_tokens(text, version))
        self.candidate_rows = _sorted_union(self.dense_rows, self.lexical_rows, self.image_rows, extras)
        self._rows: np.ndarray | None = None

    @property
    def rows(self) -> np.ndarray:
        """Every match, ascending (built on first use: a plain search only needs ``total``)."""
        if self._rows is None:
            self._rows = _sorted_union(self.candidate_rows, self.lexical_matches)
        return self._rows

    @property
    def total(self) -> int:
        """How many rows match, without building ``rows``."""
        if self._rows is not None:
            return len(self._rows)
        lexical = self.lexical_matches  # ascending
        if len(lexical) == 0:
            return len(self.candidate_rows)
        at = np.minimum(np.searchsorted(lexical, self.candidate_rows), len(lexical) - 1)
        return len(lexical) + int(np.count_nonzero(lexical[at] != self.candidate_rows))

    def candidates(self, fusion: FusionParams, ctx: UserContext) -> Candidates:
        """The dense matches, the best lexical matches and the pins, scored as hybrid search does."""
        rows = self.candidate_rows
        if fusion.method == "rrf" and self.vector is not None and self.best_bm25 > 0:
            vectors = np.asarray(self.index.text.vectors[rows], dtype=np.float32)
            parts = {
                "semantic": fusion.dense_weight * reciprocal_ranks(self.dense_ranked, rows, fusion.rrf_k),
                "lexical": fusion.lexical_weight * reciprocal_ranks(self.lexical_rows, rows, fusion.rrf_k),
            }
            candidates = blend_personal(rows, vectors, parts, ctx)
        else:
            candidates = self.score(rows, fusion, ctx)
        candidates.sources = _sources(rows, self.dense_rows, self.lexical_rows, self.image_rows)
        return candidates

    def score(self, rows: np.ndarray, fusion: FusionParams, ctx: UserContext) -> Candidates:
        """``rows`` (ascending) scored by the weighted fusion and blended with the visitor."""
        vectors = np.asarray(self.index.text.vectors[rows], dtype=np.float32)
        cosine = vectors @ self.vector if self.vector is not None else np.zeros(len(rows), np.float32)
        bm25 = self.index.lexical.scores_of(self.query, rows).astype(np.float64)
        lexical = bm25 / self.best_bm25 if self.best_bm25 > 0 else np.zeros(len(rows))
        if self.named_values and self.best_bm25 > 0:
            columns = self.index.items.fields.columns
            schema = self.index.items.schema
            for name, codes in self.named_values.items():
                boost = self.attribute_boost * schema.get(name).weight  # type: ignore[union-attr]
                lexical = lexical + boost * np.isin(columns[name].codes[rows], codes)
        dense_weight = fusion.dense_weight if self.vector is not None else 0.0
        lexical_weight = fusion.lexical_weight if self.best_bm25 > 0 else 0.0
        if self.vector is None or self.best_bm25 <= 0:  # one signal: it is the whole relevance
            dense_weight, lexical_weight = float(self.vector is not None), float(self.best_bm25 > 0)
        parts = {"semantic": dense_weight * cosine.astype(np.float64), "lexical": lexical_weight * lexical}
        image_vectors = None
        if self.image_vector is not None and self.best_image > 0:
            image_vectors = np.asarray(self.index.image.vectors[rows], dtype=np.float32)  # type: ignore[union-attr]
            image_cosine = np.maximum((image_vectors @ self.image_vector).astype(np.float64), 0)
            parts["image"] = fusion.image_weight * np.minimum(image_cosine / self.best_image, 1.0)
        return blend_personal(rows, vectors, parts, ctx, image_vectors=image_vectors, fusion=fusion)


class BrowseMatches:
    """Every allowed row, ranked for a browse page by popularity and the visitor's profile."""

    def __init__(
        self,
        index: LoadedIndex,
        *,
        n: int,
        selection: RowSelection | None,
        excluded: np.ndarray,
        extras: np.ndarray,
        popularity: np.ndarray | None,
        ctx: UserContext,
    ) -> None:
        self.index = index
        rows = selection.rows if selection is not None else np.arange(len(index), dtype=np.int64)
        self.rows = _without(rows, excluded)
        self.total = len(self.rows)
        self.popularity = popularity
        # The most popular matches (ties: catalogue order) and, for a known visitor, the nearest.
        self.leaders = _top_by(self.rows, self._popularity_of(self.rows), n)
        near = np.empty(0, np.int64)
        if ctx.profile is not None and len(self.rows):
            found, _ = index.text.ann.search(np.asarray(ctx.profile, np.float32), n + len(excluded), selection)
            near = _without(found, excluded)[:n]
        self.candidate_rows = _sorted_union(self.leaders, near, extras)

    def _popularity_of(self, rows: np.ndarray) -> np.ndarray:
        if self.popularity is None:
            return np.zeros(len(rows))
        return self.popularity[rows]

    def candidates(self, fusion: FusionParams, ctx: UserContext) -> Candidates:
        return self.score(self.candidate_rows, fusion, ctx)

    def score(self, rows: np.ndarray, fusion: FusionParams, ctx: UserContext) -> Candidates:
        vectors = np.asarray(self.index.text.vectors[rows], dtype=np.float32)
        parts = {
            "semantic": np.zeros(len(rows)),
            "lexical": np.zeros(len(rows)),
            "popularity": self._popularity_of(rows),
        }
        return blend_personal(rows, vectors, parts, ctx)


Matches = TextMatches | BrowseMatches


def facet_counts(index: LoadedIndex, rows: np.ndarray, facets: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each facet's values counted over ``rows`` (one ``np.bincount`` per facet)."""
    return {name: index.items.fields.columns[name].counts(rows) for name in facets}


def ranked_page(
    matches: Matches,
    *,
    offset: int,
    k: int,
    fusion: FusionParams,
    ctx: UserContext,
    rules: RuleSet,
    seed: str,
    explain: bool,
    query: str | None,
    category: str | None,
) -> list[Hit]:
    """Positions ``offset`` to ``offset + k`` of the ranked list (see the module docstring)."""
    items = matches.index.items
    end = offset + k
    first = rerank(
        matches.candidates(fusion, ctx),
        items,
        ctx,
        rules,
        end,
        request_id=seed,
        explain=explain,
        query=query,
        category=category,
        depth=LIST_DEPTH,
    )
    if len(first) >= end:
        return first[offset:end]
    # The reranker placed every candidate it could: the other matches follow by relevance.
    rest = matches.rows[~np.isin(matches.rows, matches.candidate_rows)]
    rest = _leading(matches, rest)
    scored = matches.score(rest, fusion, ctx)
    order = np.lexsort((scored.rows, -scored.relevance))[: end - len(first)]
    tail = [
        Hit(int(row), float(score), {"relevance": round(float(score), 6), "rules": []} if explain else None)
        for row, score in zip(scored.rows[order], scored.relevance[order])
    ]
    return (first + tail)[offset:end]


def _leading(matches: Matches, rows: np.ndarray) -> np.ndarray:
    """The rows (ascending) the rest of a list is ranked from: all of ``rows`` when few, else the
    ``2 · LIST_DEPTH`` best by the cheap signal (BM25, popularity); the same for every page."""
    budget = 2 * LIST_DEPTH
    if len(rows) <= budget:
        return rows
    if isinstance(matches, TextMatches):
        signal = matches.index.lexical.scores_of(matches.query, rows).astype(np.float64)
    else:
        signal = matches._popularity_of(rows)
    return np.sort(_top_by(rows, signal, budget))


def sorted_page(
    matches: Matches,
    order: SortOrder,
    *,
    offset: int,
    k: int,
    fusion: FusionParams,
    ctx: UserContext,
    explain: bool,
) -> list[Hit]:
    """Positions ``offset`` to ``offset + k`` of the matches ordered by a field, then relevance."""
    rows = matches.rows
    end = min(offset + k, len(rows))
    if offset >= end:
        return []
    keys = matches.index.items.fields.columns[order.field].sort_keys()[rows]
    keys = -keys if order.descending else keys
    keys = np.where(np.isnan(keys), np.inf, keys)  # rows without a value last, either way
    # Only rows whose key reaches the end of the page can be on it: relevance is computed for them.
    boundary = np.partition(keys, end - 1)[end - 1]
    region = rows[keys <= boundary]
    region_keys = keys[keys <= boundary]
    scored = matches.score(region, fusion, ctx)  # region is ascending, as rows are
    ranked = np.lexsort((region, -scored.relevance, region_keys))[offset:end]
    return [
        Hit(
            int(region[i]),
            float(scored.relevance[i]),
            {"relevance": round(float(scored.relevance[i]), 6), "sort": order.field} if explain else None,
        )
        for i in ranked
    ]


def _top_by(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` rows of highest value, ties by row (``rows`` ascending), best first."""
    if len(rows) > n:
        kth = np.partition(values, len(values) - n)[len(values) - n]
        keep = np.flatnonzero(values >= kth)
        rows, values = rows[keep], values[keep]
    order = np.lexsort((rows, -values))[:n]
    return rows[order]


def _without(rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    return rows[~np.isin(rows, excluded)] if len(excluded) else rows


def _sorted_union(*parts: np.ndarray) -> np.ndarray:
    rows = np.sort(np.concatenate(parts).astype(np.int64, copy=False))
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if len(rows) else rows
