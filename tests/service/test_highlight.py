"""Highlighting marks the words a query matched, escaped, at the right offsets."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.index.lexical import LexicalIndex
from aisle.service.highlight import Matcher, highlight_result, highlight_text

INDEX = LexicalIndex.build(["Adidas running shoes", "Straße & Küche <b>knives</b>", "DeWalt DW4524 grinder"])


def marked(query: str, text: str, prefix: bool = False) -> str | None:
    found = highlight_text(text, Matcher.of(query, INDEX.analyze(query, prefix)))
    return found[0] if found else None


def test_exact_typo_and_plural_matches_are_marked_whole() -> None:
    assert marked("addidas shoe", "Adidas Running Shoes") == "<em>Adidas</em> Running <em>Shoes</em>"


def test_prefixes_mark_only_the_typed_beginning() -> None:
    assert marked("runn", "Adidas running shoes", prefix=True) == "Adidas <em>runn</em>ing shoes"


def test_text_is_escaped_and_offsets_survive_folding() -> None:
    assert marked("kuche knives", "Straße & Küche <b>knives</b>") == (
        "Straße &amp; <em>Küche</em> &lt;b&gt;<em>knives</em>&lt;/b&gt;"
    )
    assert marked("4524", "DeWalt DW4524 grinder") == "DeWalt DW<em>4524</em> grinder"
    assert marked("dw 4524", "DeWalt DW4524 grinder") == "DeWalt <em>DW</em><em>4524</em> grinder"
    assert marked("dw4524", "DeWalt DW4524 grinder") == "DeWalt <em>DW4524</em> grinder"


def test_only_matching_text_fields_are_reported_with_the_words_as_typed() -> None:
    result = {"id": "adidas-1", "title": "Adidas running shoes", "brand": "Adidas", "price": 3.0, "image": "adidas.jpg"}
    found = highlight_result(result, Matcher.of("Addidas", INDEX.analyze("Addidas")))
    assert found == {
        "title": {"value": "<em>Adidas</em> running shoes", "words": ["addidas"]},
        "brand": {"value": "<em>Adidas</em>", "words": ["addidas"]},
    }
    assert highlight_result(result, Matcher.of("zzz", INDEX.analyze("zzz"))) == {}


WORDS = ["adidas", "running", "shoes", "dw4524", "dewalt", "grinder", "küche", "straße", "4524", "run", "sho"]


@settings(max_examples=300, deadline=None)
@given(
    query=st.lists(st.sampled_from(WORDS + ["addidas", "grindr", "4"]), min_size=1, max_size=3).map(" ".join),
    text=st.lists(st.sampled_from(WORDS + ["&", "<b>", "DW", "x9", "Running-Shoes", "ÆON"]), max_size=8).map(" ".join),
    prefix=st.booleans(),
)
def test_the_screen_only_passes_over_fields_the_word_loop_would_not_mark(query: str, text: str, prefix: bool) -> None:
    screened = Matcher.of(query, INDEX.analyze(query, prefix))
    unscreened = Matcher.of(query, INDEX.analyze(query, prefix))
    if unscreened.screen is not None:
        unscreened.__dict__["screen"] = re.compile("")  # finds a place everywhere: every word is looped over
    assert highlight_text(text, screened) == highlight_text(text, unscreened)
