"""BM25 over the products' text with ``bm25s``, built into each version at rebuild time.

Exact SKUs, model numbers and brand names are where dense vectors are weakest; this index finds
them by token. ``bm25s`` computes every (token, document) BM25 weight at build time and stores
them as a sparse column-per-token matrix, so a query only has to add up the postings of its
tokens: the cost is O(matching postings), not O(catalogue): a top-200 query over 100k products
takes a fraction of a millisecond (``benchmarks/bench_rerank.py``, ``lexical_100k``).

Tokens come from ``aisle.index.tokens`` (``tokenize`` for products, ``query_tokens`` for queries).

Scores are BM25 (Lucene variant, k1 = 1.5, b = 0.75; unbounded, > 0); rows with no matching token
are never returned.

Top k (``top``) is exact without always reading every posting of a common token. A token in more
than ``COMMON_TOKEN_SHARE`` of the rows ("white", "3", "set" in a furniture shop) adds little to a
score and most of the reading (``benchmarks/results/DECISIONS.md``, "Lexical index"). ``top`` scores the rows of the rare tokens in full (the common
tokens' weights found by binary search), joining the shortest common tokens to them while they
are fewer than k rows; their k-th score is a threshold that k rows reach. Then MaxScore (Turtle
and Flood): the common tokens whose largest weights add up to less than the threshold cannot lift
a row that has none of the other tokens into the top k, so only the other tokens' rows are
candidates, and each candidate is dropped as soon as the tokens left cannot lift it to the
threshold. When even those candidates are too many, every posting is read and only the rows
reaching the threshold are kept. Going deeper into the common tokens' heaviest postings instead
(Fagin's threshold algorithm) was slower: product variants tie on weight, so the bound falls slowly.

A filter (``allowed``) is applied late when it keeps most rows: the best rows are ranked first and
only they are checked against it (``_top_allowed``).

The tokenizer version is stored beside the index (``META_FILE``; see ``aisle.index.tokens``).

Typo tolerance and prefixes (``analyze``): a query word that is not in the catalogue's
vocabulary is replaced by the vocabulary word it most likely misspells (``aisle.index.vocabulary``:
edits allowed by the word's length), so a query with a typo finds what the corrected query finds,
while a word that is in the vocabulary is searched as typed: clean queries are not changed. A
rare catalogue word with a far more frequent neighbour is searched as typed too, and the
neighbour offered as "did you mean". In prefix mode (the search box as the shopper types) the
last word also matches the most frequent vocabulary words it begins.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aisle.index.selection import RowSelection
from aisle.index.storage import atomic_write_json
from aisle.index.tokens import (
    KNOWN_VERSIONS,
    TOKENIZER_VERSION,
    alpha_runs,
    fold_plural,
    query_tokens,
    tokenize,
)
from aisle.index.vocabulary import Correction, Vocabulary, allowed_edits, surface_forms

Allowed = np.ndarray | RowSelection | None

META_FILE = "aisle_lexical.json"
#: Placeholder token of a product with no text: bm25s would otherwise drop the row.
EMPTY_DOCUMENT_TOKEN = "\u2205"
#: A token in more than this share of the rows is "common" for ``top`` (see the module docstring).
COMMON_TOKEN_SHARE = 1 / 64
#: Weight lookups (``scores_of``, ``top``) spread a token's weights over a dense vector, rather
#: than binary-searching each row in the token's postings, for more than one row in this many.
DENSE_LOOKUP_RATIO = 32
#: ``top`` under a filter checks its best ``k / allowed share`` rows times this margin first...
LATE_FILTER_MARGIN = 1.25
#: ...when the matching rows are at least this many times more (else it filters them all first).
LATE_FILTER_MIN_RATIO = 4
#: A catalogue word typed into a query is offered a "did you mean" only when it is in at most
#: this many products...
RARE_WORD_FREQUENCY = 3
#: ...and a word within the allowed edits is in at least this many times as many.
DID_YOU_MEAN_RATIO = 20
#: In prefix mode the last word matches at most this many vocabulary words (the most frequent).
PREFIX_EXPANSIONS = 12
#: Query analyses kept per index (the search bar repeats its popular queries).
ANALYSIS_CACHE_SIZE = 4096

TermKind = Literal["exact", "typo", "prefix"]


@dataclass(frozen=True)
class QueryTerm:
    """One query word and the vocabulary tokens it searches for."""

    typed: str
    tokens: tuple[str, ...]
    kind: TermKind


@dataclass(frozen=True)
class QueryAnalysis:
    """What a query searches for (see the module docstring).

    Attributes:
        terms: the query's words that match something, with the tokens each one searches.
        corrected: the query with its misspelled words replaced (None when nothing was).
        did_you_mean: a spelling of the query that finds far more (None when there is none).
        confident: every correction was clearly the likeliest (no near tie in frequency), so
            the corrected text may stand in for the query elsewhere (e.g. in the dense encoder).
    """

    terms: tuple[QueryTerm, ...] = ()
    corrected: str | None = None
    did_you_mean: str | None = None
    confident: bool = True

    @property
    def tokens(self) -> list[str]:
        """Every token searched, once each, in query order."""
        return list(dict.fromkeys(token for term in self.terms for token in term.tokens))


def _import_bm25s() -> Any:
    """``bm25s``, with its logger back under the application's log level.

    bm25s sets its own logger to DEBUG on import, which prints every indexing step.
    """
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def _require_sorted_postings(rows: np.ndarray, starts: np.ndarray) -> None:
    """``match`` hands out a one-token query's postings as they are stored and callers
    binary-search the result, so rows must ascend within a token.

    bm25s writes a canonical CSC matrix (rows ascending per column); one vectorised pass at load
    checks it (row numbers are below 2**31, so their differences fit the stored int32).
    """
    if len(rows) < 2:
        return
    rising = np.diff(rows) > 0
    token_starts = np.asarray(starts[1:-1], dtype=np.int64)
    boundary = token_starts[(token_starts > 0) & (token_starts < len(rows))] - 1
    rising[boundary] = True  # a new token may start at any row
    if not rising.all():
        raise ValueError("lexical index postings are not sorted by row; rebuild the index")


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.float32)


class LexicalIndex:
    """A BM25 index whose row r is row r of the version's items."""

    def __init__(
        self,
        retriever: Any,
        size: int,
        tokenizer_version: int = TOKENIZER_VERSION,
        vocabulary: Vocabulary | None = None,
        typo_tolerance: bool = True,
    ) -> None:
        if tokenizer_version not in KNOWN_VERSIONS:
            raise ValueError(
                f"lexical index built by tokenizer version {tokenizer_version}, which this Aisle "
                f"does not know (it knows {list(KNOWN_VERSIONS)}); rebuild the index"
            )
        self._retriever = retriever
        self.size = size
        self.tokenizer_version = tokenizer_version
        self._vocab: dict[str, int] = retriever.vocab_dict
        postings = retriever.scores
        # Column t of the CSC matrix: the rows containing token t and their BM25 weights.
        # Plain ndarray views of bm25s's memory maps: slicing an np.memmap builds a new memmap
        # object each time, which cost more than the arithmetic at a million products.
        self._weights: np.ndarray = np.asarray(postings["data"])
        self._rows: np.ndarray = np.asarray(postings["indices"])
        self._starts: np.ndarray = np.asarray(postings["indptr"])
        if int(postings["num_docs"]) != size:
            raise ValueError(f"lexical index has {postings['num_docs']} rows, the version {size}")
        _require_sorted_postings(self._rows, self._starts)
        self._common_postings = max(int(size * COMMON_TOKEN_SHARE), 1)
        self._max_weights = _max_per_token(self._weights, self._starts)
        self.vocabulary = vocabulary if vocabulary is not None else Vocabulary.build(_frequencies(retriever))
        self.typo_tolerance = typo_tolerance
        self._analyze_cached = functools.lru_cache(maxsize=ANALYSIS_CACHE_SIZE)(self._analyze)

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        """Indexes ``texts`` (row r = ``texts[r]``), with the vocabulary of their words."""
        bm25s = _import_bm25s()

        retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        retriever.index([tokenize(text) or [EMPTY_DOCUMENT_TOKEN] for text in texts], show_progress=False)
        frequencies = _frequencies(retriever)
        return cls(retriever, len(texts), vocabulary=Vocabulary.build(frequencies, surface_forms(texts, frequencies)))

    def save(self, directory: Path) -> None:
        """Writes the bm25s files, the vocabulary and the tokenizer version into ``directory``."""
        self._retriever.save(str(directory), show_progress=False)
        self.vocabulary.save(Path(directory))
        atomic_write_json(Path(directory) / META_FILE, {"tokenizer_version": self.tokenizer_version})

    @classmethod
    def load(cls, directory: Path, size: int) -> LexicalIndex:
        """Loads an index written by ``save`` (memory-mapped, shared between worker processes).

        Raises:
            ValueError: the index does not have ``size`` rows or an unknown tokenizer built it.
        """
        bm25s = _import_bm25s()

        meta_path = Path(directory) / META_FILE
        version = json.loads(meta_path.read_text())["tokenizer_version"] if meta_path.is_file() else 1
        retriever = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
        # Versions built before the vocabulary was saved get it from the postings (without the
        # plural spellings, which need the products' text).
        vocabulary = Vocabulary.load(Path(directory)) if Vocabulary.exists(Path(directory)) else None
        return cls(retriever, size, int(version), vocabulary)

    def tokens(self, query: str, prefix: bool = False) -> list[str]:
        """The tokens the query searches for: its words in the index, corrected or completed."""
        return self.analyze(query, prefix).tokens

    def document_frequency(self, token: str) -> int:
        """How many rows contain ``token`` (0 when none): lets a live delta score with this index's IDF."""
        token_id = self._vocab.get(token)
        return 0 if token_id is None else int(self._starts[token_id + 1] - self._starts[token_id])

    def analyze(self, query: str, prefix: bool = False) -> QueryAnalysis:
        """The words ``query`` searches for, corrected and (``prefix``) completed; see the module
        docstring. Cached: a search asks for it several times, and popular queries repeat."""
        return self._analyze_cached(query, prefix and self.tokenizer_version >= 2, self.typo_tolerance)

    def _analyze(self, query: str, prefix: bool, typo_tolerance: bool) -> QueryAnalysis:
        typed = query_tokens(query, self.tokenizer_version)
        vocabulary = self.vocabulary
        completing = _last_token(query) if prefix else None
        completions = self.vocabulary.completions(completing, PREFIX_EXPANSIONS) if completing else []
        if completing in self._vocab and completing not in completions:
            completions = [completing, *completions[:-1]]
        if not completions:  # no word begins so: the last word may be a whole word, misspelled
            completing = None
        corrections: dict[str, Correction] = {}
        suggestions: dict[str, Correction] = {}
        ties = False
        if typo_tolerance and self.tokenizer_version >= 2:
            for _, _, written in alpha_runs(query):
                token = fold_plural(written)
                if token == completing or token in corrections or token in suggestions or not allowed_edits(written):
                    continue
                frequency = vocabulary.frequency(token)
                if frequency > RARE_WORD_FREQUENCY:
                    continue
                found = vocabulary.neighbours(written, allowed_edits(written))
                if not found or found[0].word == token:
                    continue
                if frequency == 0:
                    corrections[token] = found[0]
                    rivals = [other for other in found[1:] if other.edits == found[0].edits]
                    ties |= bool(rivals) and rivals[0].frequency * 2 > found[0].frequency
                elif found[0].frequency >= DID_YOU_MEAN_RATIO * frequency:
                    suggestions[token] = found[0]
        terms = []
        for token in typed:
            if token == completing:
                terms.append(QueryTerm(token, tuple(completions), "prefix"))
            elif token in self._vocab:
                terms.append(QueryTerm(token, (token,), "exact"))
            elif token in corrections:
                terms.append(QueryTerm(token, (corrections[token].word,), "typo"))
        return QueryAnalysis(
            terms=tuple(terms),
            corrected=self._respell(query, corrections) if corrections else None,
            did_you_mean=self._respell(query, corrections | suggestions) if suggestions else None,
            confident=not ties,
        )

    def _respell(self, query: str, corrections: dict[str, Correction]) -> str:
        """``query`` with each corrected word replaced by the correction's usual spelling."""
        parts, end = [], 0
        for start, stop, written in alpha_runs(query):
            correction = corrections.get(fold_plural(written))
            if correction is not None:
                parts += [query[end:start], self.vocabulary.surface(correction.word)]
                end = stop
        return "".join(parts) + query[end:]

    def match(
        self, query: str, allowed: np.ndarray | None = None, prefix: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every row matching at least one query token, with its BM25 score.

        Args:
            query: the query text.
            allowed: optional boolean mask over rows; other rows are left out.
            prefix: the last word may be the beginning of a word (the search box as one types).

        Returns:
            ``(rows, scores)``: int64 rows in ascending order and their float32 scores (> 0).
        """
        spans = self._spans(query, prefix)
        if not spans:
            return _empty()
        return _keep(*self._accumulate(spans), allowed, None)

    def top(
        self,
        query: str,
        k: int,
        allowed: Allowed = None,
        excluded: np.ndarray | None = None,
        prefix: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows by BM25, as ``top_k`` of ``match`` would give them, usually faster.

        Args:
            query: the query text.
            k: rows wanted.
            allowed: optional boolean mask over rows, or a ``RowSelection`` (which knows its
                count); other rows are left out.
            excluded: optional rows never to return.
            prefix: the last word may be the beginning of a word.

        Returns:
            ``(rows, scores)``: best first, ties by row, only rows with a positive score.
        """
        spans = self._spans(query, prefix)
        if not spans or k <= 0:
            return _empty()
        # The rare tokens' rows, scored in full, give a threshold that k allowed rows reach;
        # while they are fewer than k, the shortest common token joins them.
        rare = [span for span in spans if span[1] - span[0] <= self._common_postings]
        common = sorted((span for span in spans if span not in rare), key=lambda span: span[1] - span[0])
        while common:
            if rare:
                rows, scores = _keep(*self._accumulate(rare), allowed, excluded)
                if len(rows) >= k:
                    break
            rare.append(common.pop(0))
        if not common:  # no shortcut: read every posting
            return _top_allowed(*self._accumulate(spans), k, allowed, excluded)
        scores += self._weights_at(common, rows)
        best_rows, best_scores = top_k(rows, scores, k)
        # MaxScore: the common tokens whose largest weights add up to less than the threshold
        # cannot lift a row that has none of the other tokens into the top k, so only the other
        # tokens' rows are candidates.
        threshold = float(best_scores[-1])
        bounds = np.array([self._max_weights[self._token_of(span)] for span in common], dtype=np.float64)
        order = np.argsort(bounds, kind="stable")
        optional_count = int(np.searchsorted(np.cumsum(bounds[order]), threshold, side="left"))
        if optional_count == len(common):
            return best_rows, best_scores
        essential = [common[i] for i in order[optional_count:]]
        if _postings(rare + essential) * 8 < self.size:
            optional = [(common[i], float(bounds[i])) for i in order[:optional_count][::-1]]
            return _top_allowed(*self._max_score(rare + essential, optional, threshold), k, allowed, excluded)
        # Too many candidates to look weights up one by one: read every posting, keeping the
        # rows that reach the threshold (less a margin for float sums).
        return _top_allowed(*self._accumulate(spans, threshold * (1 - 1e-5)), k, allowed, excluded)

    def above(self, query: str, min_score: float, allowed: Allowed = None) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed row scoring at least ``min_score`` (> 0), rows ascending, with scores.

        The rows a storefront counts as lexical matches (``aisle.service.ranking.listing``): the
        tokens whose largest weights add up to less than ``min_score`` cannot make a row match
        alone, so only the other tokens' rows are read in full (MaxScore, as in ``top``).
        """
        spans = self._spans(query)
        if not spans:
            return _empty()
        if min_score <= 0:
            return self.match(query, allowed.mask if isinstance(allowed, RowSelection) else allowed)
        bounds = np.array([self._max_weights[self._token_of(span)] for span in spans], dtype=np.float64)
        order = np.argsort(bounds, kind="stable")
        optional_count = int(np.searchsorted(np.cumsum(bounds[order]), min_score, side="left"))
        if optional_count == len(spans):
            return _empty()
        essential = [spans[i] for i in order[optional_count:]]
        optional = [(spans[i], float(bounds[i])) for i in order[:optional_count][::-1]]
        rows, scores = self._max_score(essential, optional, min_score)
        keep = scores >= min_score
        return _keep(rows[keep], scores[keep], allowed, None)

    def _max_score(
        self, essential: list[tuple[int, int]], optional: list[tuple[tuple[int, int], float]], threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every row of ``essential`` that may score ``threshold``, with its full score.

        ``optional`` holds the other tokens with their largest weights, heaviest first; each one's
        weights are looked up for the remaining candidates only, dropping after each token the
        rows that the tokens left cannot lift to the threshold (MaxScore's candidate pruning).
        """
        margin = 1e-5 * threshold  # float sums added up in another order
        still_possible = sum(bound for _, bound in optional)
        rows, scores = self._accumulate(essential, threshold - still_possible - margin)
        scores = scores.copy()  # one span's scores are a view of the (memory-mapped) postings
        for span, bound in optional:
            scores += self._weights_at([span], rows)
            still_possible -= bound
            alive = scores >= threshold - still_possible - margin
            rows, scores = rows[alive], scores[alive]
        return rows, scores

    def scores_of(self, query: str, rows: np.ndarray, prefix: bool = False) -> np.ndarray:
        """The BM25 score of each of ``rows`` (ascending) for ``query``, 0 where no token matches."""
        return self._weights_at(self._spans(query, prefix), np.asarray(rows, dtype=np.int64))

    def containing(self, token: str, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (ascending) contain the indexed ``token`` (all False for another)."""
        token_id = self._vocab.get(token)
        if token_id is None:
            return np.zeros(len(rows), dtype=bool)
        span = (int(self._starts[token_id]), int(self._starts[token_id + 1]))
        return self._weights_at([span], np.asarray(rows, dtype=np.int64)) > 0

    def _spans(self, query: str, prefix: bool = False) -> list[tuple[int, int]]:
        """The posting ranges of the tokens the query searches for."""
        return self._spans_cached(query, prefix and self.tokenizer_version >= 2, self.typo_tolerance)

    @functools.cached_property
    def _spans_cached(self) -> Any:
        # Cached per query: hybrid search asks for the top rows and then for the scores of the
        # dense candidates, and popular queries repeat.
        @functools.lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
        def spans(query: str, prefix: bool, typo_tolerance: bool) -> list[tuple[int, int]]:
            tokens = self._analyze_cached(query, prefix, typo_tolerance).tokens
            return [(int(self._starts[t]), int(self._starts[t + 1])) for t in (self._vocab[token] for token in tokens)]

        return spans

    def _token_of(self, span: tuple[int, int]) -> int:
        # The last token starting there: tokens without postings share their start with the next.
        return int(np.searchsorted(self._starts, span[0], side="right")) - 1

    def _weights_at(self, spans: list[tuple[int, int]], rows: np.ndarray) -> np.ndarray:
        """Sum over ``spans`` of each row's weight: a binary search per row in the token's rows, or,
        for many rows, a read from the token's weights spread over a dense vector."""
        total = np.zeros(len(rows), dtype=np.float32)
        if len(rows) == 0:
            return total
        wanted = rows.astype(self._rows.dtype)  # same dtype, or NumPy copies the postings to compare
        for start, end in spans:
            if len(rows) * DENSE_LOOKUP_RATIO > self.size:
                # Many rows: a binary search each (cache misses) costs more than spreading the
                # token's weights over a dense vector and reading the rows from it.
                dense = np.zeros(self.size, dtype=np.float32)
                dense[self._rows[start:end]] = self._weights[start:end]
                total += dense[rows]
                continue
            token_rows = self._rows[start:end]
            at = np.minimum(np.searchsorted(token_rows, wanted), end - start - 1)
            found = token_rows[at] == wanted
            total[found] += self._weights[start + at[found]]
        return total

    def _accumulate(self, spans: list[tuple[int, int]], floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Every row of ``spans`` with the sum of its weights (rows ascending). With several spans,
        rows scoring below a positive ``floor`` are left out: ``top`` knows they cannot be in its top k."""
        postings = _postings(spans)
        if len(spans) == 1:  # postings ascend by row already
            start, end = spans[0]
            rows = np.asarray(self._rows[start:end], dtype=np.int64)
            scores = np.asarray(self._weights[start:end], dtype=np.float32)
        elif postings * 8 >= self.size:
            # Many postings: accumulate into a dense vector (a token's rows are distinct, so
            # fancy-index addition is exact per token).
            dense = np.zeros(self.size, dtype=np.float32)
            for start, end in spans:
                # ufunc.at adds in one pass; ``dense[rows] += w`` gathers, adds and scatters
                # (2.2x slower for 620k postings over a million rows).
                np.add.at(dense, self._rows[start:end], self._weights[start:end])
            rows = np.flatnonzero(dense >= floor) if floor > 0 else np.flatnonzero(dense > 0)
            scores = dense[rows]
        else:
            # Few postings: sort them by row and add up each row's run, never touching the rest.
            all_rows = np.concatenate([self._rows[start:end] for start, end in spans]).astype(np.int64)
            all_weights = np.concatenate([self._weights[start:end] for start, end in spans])
            order = np.argsort(all_rows, kind="stable")
            all_rows, all_weights = all_rows[order], all_weights[order].astype(np.float32)
            first = np.flatnonzero(np.concatenate(([True], all_rows[1:] != all_rows[:-1])))
            rows = all_rows[first]
            scores = np.add.reduceat(all_weights, first)
            if floor > 0:
                competitive = scores >= floor
                rows, scores = rows[competitive], scores[competitive]
        return rows, scores.astype(np.float32, copy=False)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows by BM25 (only rows with a positive score), best first, ties by row."""
        return self.top(query, k, allowed)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no token matches)."""
        dense = np.zeros(self.size, dtype=np.float32)
        rows, scores = self.match(query)
        dense[rows] = scores
        return dense


def _frequencies(retriever: Any) -> dict[str, int]:
    """Each indexed token's document frequency (its number of postings)."""
    counts = np.diff(np.asarray(retriever.scores["indptr"], dtype=np.int64))
    return {
        token: int(counts[t])
        for token, t in retriever.vocab_dict.items()
        if t < len(counts) and counts[t] > 0 and token and token != EMPTY_DOCUMENT_TOKEN
    }


def _last_token(query: str) -> str | None:
    """The token of the query's last word when the shopper may still be typing it (no space
    after it), else None."""
    if not query or not query[-1].isalnum():
        return None
    tokens = tokenize(query.rsplit(None, 1)[-1])
    return tokens[-1] if tokens else None


def _max_per_token(weights: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The largest weight of each token (0 for a token without postings)."""
    starts = np.asarray(starts, dtype=np.int64)
    largest = np.zeros(len(starts) - 1, dtype=np.float32)
    with_postings = np.flatnonzero(starts[1:] > starts[:-1])
    if len(with_postings):
        # Consecutive starts of tokens with postings delimit exactly those tokens' postings.
        largest[with_postings] = np.maximum.reduceat(weights, starts[with_postings])
    return largest


def _postings(spans: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in spans)


def _top_allowed(
    rows: np.ndarray, scores: np.ndarray, k: int, allowed: Allowed, excluded: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of the allowed, not excluded ones among ``rows``.

    With a filter that keeps most rows (the in-stock rule), checking every matching row of a
    common token against the mask cost more than the search itself. The best ``fetch`` rows are taken first and only they are checked; when at
    least ``k`` of them pass, they are the answer, because the first ``k`` allowed rows in the
    order (score desc, row asc) all lie among the first ``fetch`` rows of that order.
    """
    if _filters_nothing(allowed, excluded):
        return top_k(rows, scores, k)
    excluded_count = 0 if excluded is None else len(excluded)
    fetch = int(k * LATE_FILTER_MARGIN) + excluded_count + 16
    if allowed is not None and fetch * LATE_FILTER_MIN_RATIO <= len(rows):
        count = allowed.count if isinstance(allowed, RowSelection) else int(np.count_nonzero(allowed))
        fetch = int(k * LATE_FILTER_MARGIN * len(allowed) / max(count, 1)) + excluded_count + 16
    if fetch * LATE_FILTER_MIN_RATIO <= len(rows):
        best_rows, best_scores = top_k(rows, scores, fetch)
        keep = _keep_mask(best_rows, allowed, excluded)
        if np.count_nonzero(keep) >= k:
            return best_rows[keep][:k], best_scores[keep][:k]
    return top_k(*_keep(rows, scores, allowed, excluded), k)


def _filters_nothing(allowed: Allowed, excluded: np.ndarray | None) -> bool:
    return allowed is None and (excluded is None or not len(excluded))


def _keep_mask(rows: np.ndarray, allowed: Allowed, excluded: np.ndarray | None) -> np.ndarray:
    """True for each of ``rows`` that the mask allows and that is not excluded."""
    keep = np.ones(len(rows), dtype=bool)
    if allowed is not None:
        mask = allowed.mask if isinstance(allowed, RowSelection) else np.asarray(allowed, dtype=bool)
        keep &= mask[rows]
    if excluded is not None and len(excluded):
        keep &= ~np.isin(rows, excluded)
    return keep


def _keep(
    rows: np.ndarray, scores: np.ndarray, allowed: Allowed, excluded: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` (and their scores) allowed by the mask and not excluded; scores are a copy."""
    if _filters_nothing(allowed, excluded):
        return rows, scores.copy()
    keep = _keep_mask(rows, allowed, excluded)
    return rows[keep], scores[keep]


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(rows, scores)`` pairs, score descending then row ascending."""
    if k <= 0 or len(rows) == 0:
        return _empty()
    if k < len(rows):
        # Every score above the k-th, then the lowest rows among those tied with it (a bare
        # argpartition would pick arbitrary ones among the ties).
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)
        tied = tied[np.argsort(rows[tied], kind="stable")[: k - len(above)]]
        keep = np.concatenate([above, tied])
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))
    return rows[order].astype(np.int64), scores[order].astype(np.float32)
