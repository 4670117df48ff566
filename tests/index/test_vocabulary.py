"""The catalogue vocabulary: edit distance, the deletion index against brute force, completions,
persistence; and typo tolerance and prefixes in the BM25 index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.index.lexical import LexicalIndex
from aisle.index.vocabulary import (
    DELETES_FILE,
    WORDS_FILE,
    Vocabulary,
    allowed_edits,
    edit_distance,
    surface_forms,
)

LETTERS = "abcde"


def reference_distance(a: str, b: str) -> int:
    """Optimal string alignment distance by the textbook full table."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
    return table[-1][-1]


@settings(max_examples=300, deadline=None)
@given(st.text(LETTERS, max_size=9), st.text(LETTERS, max_size=9), st.integers(0, 3))
def test_bounded_distance_agrees_with_the_full_table(a: str, b: str, limit: int) -> None:
    exact = reference_distance(a, b)
    assert edit_distance(a, b, limit) == (exact if exact <= limit else limit + 1)


def test_edits_allowed_by_length_as_typesense_and_algolia_do() -> None:
    assert [allowed_edits("x" * n) for n in (1, 4, 5, 8, 9, 14)] == [0, 0, 1, 1, 2, 2]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(LETTERS, min_size=3, max_size=7), min_size=1, max_size=40, unique=True),
    st.text(LETTERS, min_size=5, max_size=11),
)
def test_deletion_index_finds_every_word_within_the_allowed_edits(words: list[str], typed: str) -> None:
    # Words within the deletion index's prefix: the lookup must equal a scan of the vocabulary.
    vocabulary = Vocabulary.build({word: n + 1 for n, word in enumerate(words)})
    edits = allowed_edits(typed)
    expected = {word for word in words if word != typed and reference_distance(typed, word) <= edits}
    found = vocabulary.neighbours(typed, edits)
    assert {c.word for c in found} == expected
    assert [(c.edits, -c.frequency) for c in found] == sorted((c.edits, -c.frequency) for c in found)


def test_correction_prefers_the_nearest_then_the_most_frequent_word() -> None:
    vocabulary = Vocabulary.build({"jacket": 50, "packet": 3, "jackets": 1, "jack": 9, "adidas": 7})
    assert vocabulary.correct("jackte").word == "jacket"  # a swap is one edit
    assert vocabulary.correct("jaket").word == "jacket"
    assert vocabulary.correct("addidas").word == "adidas"
    assert vocabulary.correct("jakc") is None  # four letters: no edit allowed
    assert vocabulary.correct("4524x") is None  # not a word of letters


def test_completions_most_frequent_first_and_bounded() -> None:
    vocabulary = Vocabulary.build({"jean": 40, "jeans": 2, "jeep": 5, "jelly": 5, "jacket": 90})
    assert vocabulary.completions("je", 3) == ["jean", "jeep", "jelly"]
    assert vocabulary.completions("jean", 5) == ["jean", "jeans"]
    assert vocabulary.completions("x", 5) == [] and vocabulary.completions("", 5) == []


def test_surface_forms_are_the_usual_spelling_of_folded_tokens() -> None:
    texts = ["Slim jeans", "JEANS jacket", "jean jacket", "Running Shoes"]
    assert surface_forms(texts, ["jean", "jacket", "shoe", "running"]) == {"jean": "jeans", "shoe": "shoes"}


def test_saved_vocabulary_loads_equal_without_pickle(tmp_path: Path) -> None:
    vocabulary = Vocabulary.build({"running": 4, "shoe": 9, "4524": 1}, {"shoe": "shoes"})
    vocabulary.save(tmp_path)
    assert np.load(tmp_path / DELETES_FILE, allow_pickle=False).dtype == np.uint32
    loaded = Vocabulary.load(tmp_path)
    assert loaded.words == vocabulary.words and loaded.surface("shoe") == "shoes"
    assert loaded.correct("shoess").word == "shoe" and loaded.correct("runing").word == "running"


def test_mismatched_vocabulary_files_are_refused(tmp_path: Path) -> None:
    Vocabulary.build({"running": 4, "shoe": 9}).save(tmp_path)
    payload = json.loads((tmp_path / WORDS_FILE).read_text())
    payload["frequencies"] = payload["frequencies"][:1]
    (tmp_path / WORDS_FILE).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="do not match"):
        Vocabulary.load(tmp_path)


TEXTS = [
    "Adidas running shoes",
    "Adidas originals jacket",
    "Nike running shoes for men",
    "Levi's slim jeans 501",
    "School backpack, 20 litres",
    "Jewel case for CDs (10 pack)",
    "Accounting software premium 2007",
    "Photoshop elements 5.0",
    "Leather belt",
    "Leathr belt, vintage",  # a catalogue's own typo: a rare word with a frequent neighbour
    "Leather wallet",
    "Leather gloves",
]


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(TEXTS)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("addidas running shoes", "adidas running shoes"),
        ("acounting sofware", "accounting software"),
        ("jrwel case", "jewel case"),
        ("runnign shoess", "running shoes"),
    ],
)
def test_a_query_with_typos_finds_what_the_corrected_query_finds(index: LexicalIndex, typed: str, meant: str) -> None:
    assert index.analyze(typed).corrected == meant
    found, expected = index.top(typed, 5), index.top(meant, 5)
    assert list(found[0]) == list(expected[0]) and np.allclose(found[1], expected[1])


def test_short_words_numbers_and_unknown_words_are_not_corrected(index: LexicalIndex) -> None:
    assert index.analyze("nikr").corrected is None  # four letters
    assert index.analyze("502 jeans").corrected is None
    assert index.analyze("zzzzzzzz").terms == ()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(sorted({w for t in TEXTS for w in t.lower().split()})), min_size=1, max_size=4))
def test_clean_queries_search_exactly_what_they_did_without_typo_tolerance(words: list[str]) -> None:
    query = " ".join(words)
    tolerant = LexicalIndex.build(TEXTS)
    strict = LexicalIndex.build(TEXTS)
    strict.typo_tolerance = False
    for a, b in zip(tolerant.top(query, 10), strict.top(query, 10)):
        assert np.array_equal(a, b)


def test_did_you_mean_offers_a_far_more_frequent_spelling_without_applying_it(index: LexicalIndex) -> None:
    # "leathr" is a catalogue word (one product); "leather" is in three.
    analysis = index.analyze("leathr belt")
    assert analysis.corrected is None and analysis.did_you_mean is None  # 3 < 20 × 1: not far more
    big = LexicalIndex.build(TEXTS + [f"Leather bag {n}" for n in range(30)])
    analysis = big.analyze("leathr belt")
    assert analysis.corrected is None and analysis.did_you_mean == "leather belt"
    assert [term.tokens for term in analysis.terms] == [("leathr",), ("belt",)]


def test_prefix_mode_completes_only_the_last_word(index: LexicalIndex) -> None:
    rows, _ = index.top("backp", 5, prefix=True)
    assert list(rows) == [4]
    assert len(index.top("backp", 5)[0]) == 0  # not a word: nothing without prefix mode
    assert list(index.top("jea", 5, prefix=True)[0]) == [3]
    assert index.top("addidas run", 5, prefix=True)[0][0] == 0  # the only row with both words
    kinds = [term.kind for term in index.analyze("running sho", prefix=True).terms]
    assert kinds == ["exact", "prefix"]  # finished words stay whole
    assert index.analyze("shoes ", prefix=True).terms[0].kind == "exact"  # a space ends the word


def test_saved_index_keeps_its_vocabulary(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    assert (tmp_path / WORDS_FILE).is_file()
    loaded = LexicalIndex.load(tmp_path, len(TEXTS))
    assert loaded.vocabulary.surface("jean") == "jeans"
    assert loaded.analyze("addidas").corrected == "adidas"


def test_a_version_saved_before_the_vocabulary_still_corrects(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    for name in (WORDS_FILE, DELETES_FILE, "vocabulary.targets.npy"):
        (tmp_path / name).unlink()
    loaded = LexicalIndex.load(tmp_path, len(TEXTS))
    assert loaded.analyze("acounting").corrected == "accounting"
