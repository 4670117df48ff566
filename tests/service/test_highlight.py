"""Highlighting marks the words a query matched, escaped, at the right offsets."""

from __future__ import annotations

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
