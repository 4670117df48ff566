"""BM25 index: SKU-friendly tokens, exact scores from the sparse postings, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.index import lexical
from aisle.index.lexical import META_FILE, LexicalIndex, top_k
from aisle.index.selection import RowSelection
from aisle.index.tokens import query_tokens, tokenize

TEXTS = [
    "DeWalt DW4524 angle grinder 4-1/2-inch",
    "Makita GA4530 angle grinder, 4.5 inch",
    "Grinding wheels for angle grinders (10 pack)",
    "Küchenmesser aus Edelstahl",
    "",
    "Adobe Photoshop CS3 upgrade",
    "Adobe Photoshop Elements 5.0",
    "The Print Shop 22 Deluxe",
]


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(TEXTS)


def test_sku_spellings_share_tokens() -> None:
    for spelling in ("DW4524", "dw-4524", "DW 4524", "dw/4524"):
        assert {"dw", "4524"} <= set(tokenize(spelling)), spelling
    assert "dw4524" in tokenize("DW4524") and "dw-4524" in tokenize("dw-4524")
    assert tokenize("4-1/2-inch")[:1] == ["4-1/2-inch"]


def test_folding_of_accents_case_and_plurals() -> None:
    assert tokenize("Küche CABLES batteries glass") == ["kuche", "cable", "battery", "glass"]
    assert query_tokens("the angle grinder for the shop") == ["angle", "grinder", "shop"]
    assert query_tokens("the") == ["the"]  # nothing else left: keep the stopword
    assert query_tokens("grinder grinders") == ["grinder"]


@pytest.mark.parametrize("query", ["DW-4524", "dw4524 grinder"])
def test_exact_model_numbers_rank_first(index: LexicalIndex, query: str) -> None:
    rows, scores = index.search(query, 3)
    assert rows[0] == 0 and scores[0] > scores[1:].max(initial=0)


def test_match_equals_bm25s_dense_scores(index: LexicalIndex) -> None:
    # All three aggregation paths (one token, few postings, many postings) against bm25s itself.
    for query in ("grinder", "angle grinder wheel", "adobe photoshop cs3 upgrade", "kuchenmesser", "zzz"):
        expected = np.zeros(len(TEXTS), dtype=np.float32)
        tokens = index.tokens(query)
        if tokens:
            expected = np.asarray(index._retriever.get_scores(tokens), dtype=np.float32)
        rows, scores = index.match(query)
        assert list(rows) == list(np.flatnonzero(expected > 0)), query
        np.testing.assert_allclose(scores, expected[rows], rtol=1e-5)
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5)


def test_sparse_and_dense_paths_agree() -> None:
    # Zipf-like word frequencies: queries of common words take the dense path, of rare words
    # the sorted-postings path.
    rng = np.random.default_rng(0)
    texts, vocabulary = _zipf_texts(rng, 400)
    index = LexicalIndex.build(texts)
    for number in range(60):
        words = vocabulary if number % 2 else vocabulary[100:]
        query = " ".join(rng.choice(words, size=rng.integers(1, 6)))
        rows, scores = index.match(query)
        expected = np.asarray(index._retriever.get_scores(index.tokens(query)), dtype=np.float32)
        assert list(rows) == list(np.flatnonzero(expected > 0))
        np.testing.assert_allclose(scores, expected[rows], rtol=1e-5)


def _zipf_texts(rng: np.random.Generator, count: int) -> tuple[list[str], np.ndarray]:
    vocabulary = np.array([f"x{chr(97 + n // 26)}{chr(97 + n % 26)}q" for n in range(300)])  # letters only
    frequency = 1.0 / np.arange(1, 301)
    frequency /= frequency.sum()
    return [" ".join(rng.choice(vocabulary, size=rng.integers(1, 12), p=frequency)) for _ in range(count)], vocabulary


def test_top_equals_the_top_k_of_every_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # Common and rare words mixed, with masks and exclusions: the shortcut over common tokens
    # must give exactly top_k(match), and both of its outcomes (stopped early, or read every
    # posting) occur.
    texts, vocabulary = _zipf_texts(np.random.default_rng(0), 2000)
    index = LexicalIndex.build(texts)
    read: list[int] = []
    accumulate = index._accumulate
    monkeypatch.setattr(
        index, "_accumulate", lambda spans, *floor: read.append(len(spans)) or accumulate(spans, *floor)
    )
    rng = np.random.default_rng(1)
    shortcut_kept = 0
    for number in range(200):
        query = " ".join(rng.choice(vocabulary[: 20 + number], size=rng.integers(1, 6)))
        allowed = rng.random(len(texts)) < 0.7 if number % 3 == 0 else None
        excluded = rng.choice(len(texts), 50, replace=False) if number % 4 == 0 else None
        k = int(rng.choice([1, 5, 20, 100]))
        read.clear()
        rows, scores = index.top(query, k, allowed, excluded)
        shortcut_kept += bool(read) and all(spans < len(index.tokens(query)) for spans in read)  # never read them all
        all_rows, all_scores = index.match(query, allowed)
        if excluded is not None:
            keep = ~np.isin(all_rows, excluded)
            all_rows, all_scores = all_rows[keep], all_scores[keep]
        expected_rows, expected_scores = top_k(all_rows, all_scores, k)
        assert rows.tolist() == expected_rows.tolist(), query
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
        np.testing.assert_allclose(index.scores_of(query, np.sort(rows)), index.scores(query)[np.sort(rows)], rtol=1e-5)
    assert 10 <= shortcut_kept <= 190


def test_top_under_a_filter_checks_the_best_rows_first_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # A common word in rows of varied length (so varied BM25 weights). A filter keeping most
    # rows is checked on the best rows only; one hiding exactly the best rows defeats that
    # and must fall back to filtering every row. Both must equal the top k of the filtered match.
    rng = np.random.default_rng(3)
    texts = [
        "chair " + " ".join(rng.choice(["oak", "red", "tall", "soft"], size=rng.integers(0, 30))) for _ in range(3000)
    ]
    index = LexicalIndex.build(texts)
    fetched: list[int] = []
    monkeypatch.setattr(lexical, "top_k", lambda rows, scores, k: fetched.append(k) or top_k(rows, scores, k))
    all_rows, all_scores = index.match("chair")
    best_first = top_k(all_rows, all_scores, len(all_rows))[0]
    keeps_most = np.ones(len(texts), dtype=bool)
    keeps_most[rng.choice(len(texts), 300, replace=False)] = False
    hides_the_best = np.ones(len(texts), dtype=bool)
    hides_the_best[best_first[:400]] = False
    for allowed, late in ((keeps_most, True), (hides_the_best, False)):
        for selection in (allowed, RowSelection(allowed)):
            fetched.clear()
            rows, scores = index.top("chair", 20, selection)
            expected_rows, expected_scores = top_k(*index.match("chair", allowed), 20)
            assert rows.tolist() == expected_rows.tolist()
            np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
            assert fetched[0] > 20  # the best rows were taken first...
            assert (len(fetched) == 1) == late  # ...and were enough, or the fallback ran


def test_scores_of_any_rows(index: LexicalIndex) -> None:
    every_row = np.arange(len(TEXTS))
    for query in ("angle grinder wheel", "adobe photoshop cs3 upgrade", "zzz"):
        np.testing.assert_allclose(index.scores_of(query, every_row), index.scores(query), rtol=1e-5)
    assert index.scores_of("grinder", np.empty(0, np.int64)).size == 0


def test_allowed_mask_and_top_k(index: LexicalIndex) -> None:
    allowed = np.ones(len(TEXTS), dtype=bool)
    allowed[0] = False
    rows, scores = index.search("angle grinder", 2, allowed)
    assert 0 not in rows and len(rows) == 2 and scores[0] >= scores[1]
    assert index.search("angle grinder", 0)[0].size == 0
    assert index.search("nothing matches this", 5)[0].size == 0


def test_top_k_breaks_ties_at_the_kth_score_by_row() -> None:
    rows = np.array([9, 3, 7, 1, 5, 2], dtype=np.int64)
    scores = np.array([2.0, 1.0, 1.0, 0.5, 1.0, 1.0], dtype=np.float32)
    top_rows, top_scores = top_k(rows, scores, 3)
    assert top_rows.tolist() == [9, 2, 3] and top_scores.tolist() == [2.0, 1.0, 1.0]
    assert top_k(rows, scores, 10)[0].tolist() == [9, 2, 3, 5, 7, 1]


def test_save_and_load_round_trip(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical", len(TEXTS))
    assert loaded.tokenizer_version == index.tokenizer_version
    for query in ("DW-4524", "photoshop", "print shop deluxe"):
        np.testing.assert_array_equal(loaded.search(query, 5)[0], index.search(query, 5)[0])
    with pytest.raises(ValueError, match="rows"):
        LexicalIndex.load(tmp_path / "lexical", len(TEXTS) + 1)


def test_versions_without_metadata_use_the_first_tokenizer(tmp_path: Path) -> None:
    # A version built before the tokenizer was recorded was tokenized by version 1.
    index = LexicalIndex.build(TEXTS)
    index.save(tmp_path / "lexical")
    (tmp_path / "lexical" / META_FILE).unlink()
    assert LexicalIndex.load(tmp_path / "lexical", len(TEXTS)).tokenizer_version == 1


def test_above_with_one_essential_token_leaves_the_saved_postings_alone(tmp_path) -> None:
    from aisle.index.lexical import LexicalIndex

    texts = [f"common filler {i}" for i in range(60)] + ["rare common", "rare thing"]
    LexicalIndex.build(texts).save(tmp_path / "lexical")
    index = LexicalIndex.load(tmp_path / "lexical", len(texts))  # memory-mapped, read-only postings
    full = index.scores("rare common")
    best = float(full.max())
    # "common" alone cannot reach half the best score: "rare" is the one essential token.
    rows, scores = index.above("rare common", 0.5 * best)
    expected = np.flatnonzero(full >= 0.5 * best)
    assert rows.tolist() == expected.tolist() and np.allclose(scores, full[expected])
    assert np.array_equal(index.scores("rare common"), full)  # nothing was added into the postings
