"""One index version plus the query encoder: everything a request reads, swapped as one object.

``search`` = hybrid candidates (``aisle.service.ranking.hybrid``) → the reranker
(``aisle.service.ranking.rerank``); ``similar`` = the item's dense neighbours (text, and picture
on a version with an image space) and what is bought with it, leaning towards the user → the
same reranker; ``recommend`` = a candidate source's candidates (the profile service's) → the
same reranker. Every surface takes the same filters. With an image space and the image model
that built it, queries are also embedded into the image space. Hard rules that filter (in
stock, exclusions, recent purchases) are
already applied at retrieval, so that the N candidates are all showable; the reranker applies
them again as the guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from aisle.embed.base import Encoder, ImageEncoder
from aisle.index.filters import Filters, select_rows
from aisle.index.loaded import LoadedIndex
from aisle.service.highlight import Matcher
from aisle.service.query_cache import LruCache
from aisle.service.query_log import normalise
from aisle.service.ranking.hybrid import FusionParams, Retrieval, item_candidates, query_candidates
from aisle.service.ranking.listing import (
    BrowseMatches,
    Listing,
    MatchParams,
    SortOrder,
    TextMatches,
    facet_counts,
    list_seed,
    ranked_page,
    sorted_page,
)
from aisle.service.ranking.rerank import rerank
from aisle.service.ranking.rules import RuleBook, RuleSet
from aisle.service.ranking.types import ANONYMOUS, CandidateSource, Hit, UserContext

__all__ = ["Engine", "Hit", "Listing", "RulesConflict", "SortOrder"]

_DEFAULT_RULES = RuleBook()
#: Products scored for a suggest box before the rules pick the few shown.
SUGGEST_CANDIDATES = 50
#: Products matching the words before the last one that rank its completions.
COMPLETION_CONTEXT_ROWS = 200


class RulesConflict(ValueError):
    """A request contradicts its own rules (e.g. asks for out-of-stock items while in-stock-only)."""


class Engine:
    """Answers search and similar-item queries on one immutable index version."""

    def __init__(
        self,
        index: LoadedIndex,
        encoder: Encoder,
        candidates: int = 200,
        image_encoder: ImageEncoder | None = None,
        *,
        query_cache_size: int = 4096,
        encode_corrected: bool = True,
        typo_tolerance: bool = True,
    ) -> None:
        self.index = index
        index.lexical.typo_tolerance = typo_tolerance
        self.encoder = encoder
        self.candidates = candidates
        # Encodings of recent query texts; a new version gets a new engine, so a new cache.
        self.query_vectors: LruCache[np.ndarray] = LruCache(query_cache_size)
        #: What ``/suggest`` answers an anonymous prefix from the catalogue (``suggest_body``):
        #: a pure function of this engine's index, the prefix, k and the rules.
        self.suggestions: LruCache[Any] = LruCache(query_cache_size)
        #: Encode the spelling-corrected query when the correction is confident (typos hurt the
        #: dense retriever as much as BM25).
        self.encode_corrected = encode_corrected
        # Queries reach the image space only through the model that built it.
        image = index.image
        self.image_encoder = image_encoder if image is not None and image_encoder is not None else None
        if self.image_encoder is not None and image is not None and self.image_encoder.fingerprint != image.fingerprint:
            raise ValueError(
                f"the image space was built with {image.fingerprint}, the image model here is "
                f"{self.image_encoder.fingerprint}"
            )
        # With every item in stock the in-stock rule filters nothing: skip its row selection.
        self._all_in_stock = bool(index.items.in_stock.all())

    @property
    def version(self) -> str:
        return self.index.version

    def item_row(self, item_id: str) -> int | None:
        return self.index.items.row_of.get(item_id)

    def result(self, hit: Hit) -> dict[str, Any]:
        """A hit as the contract's result object."""
        result: dict[str, Any] = {"id": self.index.items.ids[hit.row], "score": round(float(hit.score), 6)}
        result.update(self.index.items.to_result(hit.row))
        result["id"] = self.index.items.ids[hit.row]
        if hit.explain is not None:
            result["explain"] = hit.explain
        return result

    def search(
        self,
        query: str,
        k: int,
        *,
        filters: Filters | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
        ctx: UserContext = ANONYMOUS,
        rules: RuleSet | None = None,
        fusion: FusionParams = FusionParams(),
        retrieval: Retrieval = "hybrid",
        request_id: str = "",
    ) -> list[Hit]:
        """The first ``k`` hits of ``listing`` for ``query``.

        ``request_id`` is kept for callers; the list is seeded by its own key (see ``listing``).

        Raises:
            RulesConflict: the filters contradict the rules.
        """
        return self.listing(
            query,
            k,
            filters=filters,
            exclude_ids=exclude_ids,
            explain=explain,
            ctx=ctx,
            rules=rules,
            fusion=fusion,
            retrieval=retrieval,
        ).hits

    def listing(
        self,
        query: str | None,
        k: int,
        *,
        offset: int = 0,
        filters: Filters | None = None,
        facets: Sequence[str] = (),
        sort: SortOrder | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
        ctx: UserContext = ANONYMOUS,
        rules: RuleSet | None = None,
        fusion: FusionParams = FusionParams(),
        matching: MatchParams = MatchParams(),
        retrieval: Retrieval = "hybrid",
        popularity: np.ndarray | None = None,
        visitor: tuple[str | None, ...] = (),
    ) -> Listing:
        """A page of the matches of ``query`` (a browse page when it is empty), their total and facets.

        See ``aisle.service.ranking.listing`` for what a match is and how the list is ordered.

        Args:
            query: the query text; empty or None lists every allowed item (browse).
            k: results on the page.
            offset: the page's first position in the list (0-based).
            filters: the request's filters.
            facets: facetable fields whose values to count over every match.
            sort: order by a sortable field instead of relevance.
            popularity: each row's popularity (0..1), ranking a browse page; None: none known.
            visitor: the visitor's ids, part of the list's key (its exploration seed).

        Raises:
            RulesConflict: the filters contradict the rules.
        """
        rules = self._with_exclusions(rules or _DEFAULT_RULES.for_surface("search"), exclude_ids)
        category = filters.category if filters is not None else None
        items = self.index.items
        selection = select_rows(items, self._effective_filters(filters, rules))
        excluded = np.fromiter(self._excluded_rows(rules, ctx), dtype=np.int64)
        removed = getattr(items, "removed", None)  # products a live change deleted
        if removed is not None and removed.any():
            excluded = np.union1d(excluded, np.flatnonzero(removed))
        text = (query or "").strip()
        extras = np.fromiter(self._pinned_rows(rules, text or None, category), dtype=np.int64)
        if selection is not None and len(extras):
            extras = extras[selection.mask[extras]]
        extras = extras[~np.isin(extras, excluded)]
        matches: TextMatches | BrowseMatches
        if text:
            vector = None if retrieval == "lexical" else self.query_vector(text)
            image_vector = None
            if self.image_encoder is not None and retrieval != "lexical" and fusion.image_weight > 0:
                image_vector = self.image_encoder.encode_queries([text])[0]
            matches = TextMatches(
                self.index,
                text,
                vector,
                n=self.candidates,
                selection=selection,
                excluded=excluded,
                extras=extras,
                params=matching,
                lexical=retrieval != "dense",
                image_vector=image_vector,
            )
        else:
            matches = BrowseMatches(
                self.index,
                n=self.candidates,
                selection=selection,
                excluded=excluded,
                extras=extras,
                popularity=popularity,
                ctx=ctx,
            )
        counts = facet_counts(self.index, matches.rows, facets) if facets else {}
        if sort is not None:
            hits = sorted_page(matches, sort, offset=offset, k=k, fusion=fusion, ctx=ctx, explain=explain)
        else:
            key = filters.cache_key() if filters is not None else None
            hits = ranked_page(
                matches,
                offset=offset,
                k=k,
                fusion=fusion,
                ctx=ctx,
                rules=rules,
                seed=list_seed(self.version, text, key, visitor),
                explain=explain,
                query=text or None,
                category=category,
            )
        return Listing(hits, matches.total, counts)

    def query_vector(self, query: str) -> np.ndarray:
        """The query's unit vector: of its corrected spelling when the correction is confident;
        cached per text."""
        text = query
        if self.encode_corrected:
            analysis = self.index.lexical.analyze(query)
            if analysis.corrected is not None and analysis.confident:
                text = analysis.corrected
        return self.query_vectors.get_or_compute(text, lambda: self.encoder.encode_queries([text])[0])

    def spelling(self, query: str, prefix: bool = False) -> dict[str, str]:
        """The response's spelling fields: ``corrected_query`` (the text searched instead of the
        query) and ``did_you_mean`` (a spelling that finds far more), each when there is one.
        ``prefix``: of the search box's analysis (the last word is being typed, not misspelled)."""
        analysis = self.index.lexical.analyze(query, prefix)
        fields = {}
        if analysis.corrected is not None:
            fields["corrected_query"] = analysis.corrected
        if analysis.did_you_mean is not None:
            fields["did_you_mean"] = analysis.did_you_mean
        return fields

    def matcher(self, query: str, prefix: bool = False) -> Matcher:
        """What highlighting marks in results for ``query`` (``aisle.service.highlight``)."""
        return Matcher.of(query, self.index.lexical.analyze(query, prefix))

    def suggest(
        self,
        prefix: str,
        k: int,
        *,
        ctx: UserContext = ANONYMOUS,
        rules: RuleSet | None = None,
        request_id: str = "",
    ) -> list[Hit]:
        """Products for what the shopper has typed so far: BM25 with the last word completed
        (no query encoding: it runs on every keystroke), leaning towards the user's profile, then
        the search rules."""
        rules = rules or _DEFAULT_RULES.for_surface("search")
        candidates = query_candidates(
            self.index,
            prefix,
            None,
            n=max(SUGGEST_CANDIDATES, k),
            selection=select_rows(self.index.items, self._effective_filters(None, rules)),
            exclude_rows=self._excluded_rows(rules, ctx),
            retrieval="lexical",
            ctx=ctx,
            prefix=True,
        )
        return rerank(candidates, self.index.items, ctx, rules, k, request_id=request_id, query=prefix)

    def completions(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` completions of the last word of ``prefix`` from the catalogue's
        vocabulary, each as the whole query text: the most frequent words when it is the only
        word, else those most often found in the products matching the words before it."""
        lexical = self.index.lexical
        analysis = lexical.analyze(prefix, prefix=True)
        last = next((term for term in analysis.terms if term.kind == "prefix"), None)
        if last is None or limit <= 0:
            return []
        words = list(last.tokens)
        base = analysis.corrected or prefix
        head = normalise(base[: len(base) - len(base.rsplit(None, 1)[-1])])
        before = {token for term in analysis.terms if term.kind != "prefix" for token in term.tokens}
        if before:
            words = [word for word in words if word not in before]
            rows, _ = lexical.top(head, COMPLETION_CONTEXT_ROWS)
            rows = np.sort(rows)
            found = {word: int(np.count_nonzero(lexical.containing(word, rows))) for word in words}
            words = sorted((word for word in words if found[word]), key=lambda word: -found[word])
        surface = lexical.vocabulary.surface
        return [f"{head} {surface(word)}".strip() for word in words[:limit]]

    def similar(
        self,
        item_id: str,
        k: int,
        *,
        filters: Filters | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
        ctx: UserContext = ANONYMOUS,
        rules: RuleSet | None = None,
        request_id: str = "",
        together: tuple[np.ndarray, np.ndarray] | None = None,
        together_weight: float = 0.0,
        fusion: FusionParams = FusionParams(),
    ) -> list[Hit]:
        """Products similar to ``item_id`` (never the item itself, nor a product showing its picture).

        ``together``: ``(rows, scores)`` of items bought with it (best 1.0), blended in with
        ``together_weight`` and added as candidates: the product page shows complements too.

        Raises:
            KeyError: ``item_id`` is not in this version.
            RulesConflict: the filters contradict the rules.
        """
        row = self.item_row(item_id)
        if row is None:
            raise KeyError(item_id)
        rules = self._with_exclusions(rules or _DEFAULT_RULES.for_surface("similar"), exclude_ids)
        # Category pins follow the product page's own category.
        category = self.index.items.category(row) or None
        selection = select_rows(self.index.items, self._effective_filters(filters, rules))
        candidates = item_candidates(
            self.index,
            row,
            n=self.candidates,
            selection=selection,
            exclude_rows=self._excluded_rows(rules, ctx),
            ctx=ctx,
            extra_rows=self._pinned_rows(rules, None, category),
            together=together,
            together_weight=together_weight,
            fusion=fusion,
        )
        return rerank(
            candidates,
            self.index.items,
            ctx,
            rules,
            k,
            request_id=request_id,
            explain=explain,
            category=category,
            same_picture_as=row,
        )

    def recommend(
        self,
        source: CandidateSource,
        k: int,
        *,
        filters: Filters | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
        ctx: UserContext = ANONYMOUS,
        rules: RuleSet | None = None,
        request_id: str = "",
    ) -> tuple[list[Hit], list[str]]:
        """Recommendations: ``source``'s candidates → the reranker; ``(hits, each hit's source)``.

        Raises:
            RulesConflict: the filters contradict the rules.
        """
        rules = self._with_exclusions(rules or _DEFAULT_RULES.for_surface("recommendations"), exclude_ids)
        selection = select_rows(self.index.items, self._effective_filters(filters, rules))
        excluded = np.array(self._excluded_rows(rules, ctx), dtype=np.int64)
        candidates = source.candidates(self.index, n=self.candidates, selection=selection, exclude_rows=excluded)
        hits = rerank(candidates, self.index.items, ctx, rules, k, request_id=request_id, explain=explain)
        sources: Any = candidates.sources if candidates.sources is not None else []
        source_of = dict(zip(candidates.rows.tolist(), (str(name) for name in sources)))
        return hits, [source_of.get(hit.row, "profile") for hit in hits]

    def _effective_filters(self, filters: Filters | None, rules: RuleSet) -> Filters | None:
        """The request's filters plus ``in_stock=True`` when the in-stock rule has work to do."""
        if not rules.in_stock_only:
            return filters
        if filters is not None and filters.in_stock is False:
            raise RulesConflict(
                "filters.in_stock=false asks for out-of-stock items, but the in_stock_only rule hides "
                "them; send rules.in_stock_only=false as well"
            )
        if self._all_in_stock:
            return filters
        return replace(filters or Filters(), in_stock=True)

    @staticmethod
    def _with_exclusions(rules: RuleSet, exclude_ids: list[str] | tuple[str, ...]) -> RuleSet:
        if not exclude_ids:
            return rules
        return rules.model_copy(update={"exclude_ids": (*rules.exclude_ids, *exclude_ids)})

    def _excluded_rows(self, rules: RuleSet, ctx: UserContext) -> list[int]:
        row_of = self.index.items.row_of
        ids = set(rules.exclude_ids) | (ctx.purchased_recently if rules.exclude_purchased else frozenset())
        return [row_of[item_id] for item_id in ids if item_id in row_of]

    def _pinned_rows(self, rules: RuleSet, query: str | None, category: str | None) -> list[int]:
        row_of = self.index.items.row_of
        return [row_of[pin.item_id] for pin in rules.pins_for(query, category) if pin.item_id in row_of]
