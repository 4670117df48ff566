"""Highlighting: which query words matched in which field of a result.

A result's text fields (every public string field but ``id`` and ``image``) are scanned for the
words the query searched, as ``aisle.index.lexical.LexicalIndex.analyze`` resolved them: a word
as typed, the catalogue word a typo was corrected to, or (in the search box) a word the last,
unfinished word begins. The answer, per field that matched::

    "highlight": {"title": {"value": "<em>Adidas</em> running shoes", "words": ["addidas"]}}

``value`` is the field's text, HTML-escaped, with each matching word (or, for a prefix, its
matching beginning) wrapped in ``<em>…</em>``: safe to insert into a page as it is. ``words``
are the query's words, as the shopper wrote them, that matched in that field.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from typing import Any

from aisle.index.lexical import QueryAnalysis
from aisle.index.tokens import fold, fold_plural, tokenize

#: Result fields never highlighted: identifiers and file names.
SKIPPED_FIELDS = frozenset(("id", "image"))
_ALNUM_RUN = re.compile(r"[^\W_]+")
_PIECE = re.compile(r"\d+|[^\W\d_]+")


@dataclass(frozen=True)
class Matcher:
    """The tokens one query matches, each with the query word it stands for."""

    whole: dict[str, str]
    prefixes: dict[str, str]
    completions: dict[str, str]

    @classmethod
    def of(cls, query: str, analysis: QueryAnalysis) -> Matcher:
        written: dict[str, str] = {}
        for word in query.split():
            for token in tokenize(word):
                written.setdefault(token, word.strip(".,;:!?()[]{}\"'").casefold())
        whole: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        completions: dict[str, str] = {}
        for term in analysis.terms:
            shown = written.get(term.typed, term.typed)
            if term.kind == "prefix":
                prefixes[term.typed] = shown
                completions.update(dict.fromkeys(term.tokens, shown))
            else:
                whole.update(dict.fromkeys(term.tokens, shown))
        return cls(whole, prefixes, completions)

    def __bool__(self) -> bool:
        return bool(self.whole or self.prefixes)

    @functools.cached_property
    def starts(self) -> frozenset[str]:
        """The first two characters (or the only one) of every token's stem and typed prefix: a
        word starting otherwise cannot match, which keeps fields without a match cheap. A
        token's plural forms share its stem (a final ``y`` may have become ``ies``)."""
        stems = {token[:-1] if token.endswith("y") else token for token in [*self.whole, *self.completions]}
        return frozenset(stem[:2] for stem in stems | set(self.prefixes) if stem)

    def match(self, word: str) -> tuple[int, str] | None:
        """How many leading characters of the folded ``word`` to mark, and the query word."""
        token = fold_plural(word)
        shown = self.whole.get(token) or self.whole.get(word)
        if shown is not None:
            return len(word), shown
        for prefix, shown in self.prefixes.items():
            if word.startswith(prefix):
                return len(prefix), shown
        shown = self.completions.get(token)
        return (len(word), shown) if shown is not None else None


def highlight_text(text: str, matcher: Matcher) -> tuple[str, list[str]] | None:
    """``text`` HTML-escaped with its matching words marked, and the query words they matched;
    None when nothing matched."""
    starts = matcher.starts
    if not starts:
        return None
    folded, origin = _folded_with_origin(text)
    spans: list[tuple[int, int]] = []
    words: dict[str, None] = {}
    for run in _ALNUM_RUN.finditer(folded):
        word = run.group()
        # The whole letter-and-digit run ("dw4524"), else each of its letter or digit pieces.
        pieces = [(run.start(), word)]
        if not (word.isalpha() or word.isdigit()):
            pieces += [(run.start() + piece.start(), piece.group()) for piece in _PIECE.finditer(word)]
        for start, piece in pieces:
            if piece[:2] not in starts and piece[:1] not in starts:
                continue
            found = matcher.match(piece)
            if found is not None:
                spans.append((start, start + found[0]))
                words[found[1]] = None
                if piece is word:
                    break
    if not spans:
        return None
    parts, end = [], 0
    for start, stop in spans:
        first, last = origin[start], origin[stop - 1] + 1
        if first < end:
            continue
        parts += [html.escape(text[end:first]), "<em>", html.escape(text[first:last]), "</em>"]
        end = last
    parts.append(html.escape(text[end:]))
    return "".join(parts), list(words)


def highlight_result(result: dict[str, Any], matcher: Matcher) -> dict[str, dict[str, Any]]:
    """The ``highlight`` object of one result (see the module docstring)."""
    marked: dict[str, dict[str, Any]] = {}
    if not matcher:
        return marked
    for name, value in result.items():
        if name in SKIPPED_FIELDS or not isinstance(value, str) or not value:
            continue
        found = highlight_text(value, matcher)
        if found is not None:
            marked[name] = {"value": found[0], "words": found[1]}
    return marked


def _folded_with_origin(text: str) -> tuple[str, list[int]]:
    """``text`` folded as the tokenizer folds it, and for each folded character the offset of the
    character of ``text`` it came from (folding may change the length: ``ß`` → ``ss``)."""
    if text.isascii():
        return text.lower(), range(len(text))  # type: ignore[return-value]
    folded_text = fold(text)
    if len(folded_text) == len(text):  # one character for one ("é" → "e"): offsets unchanged
        return folded_text, range(len(text))  # type: ignore[return-value]
    folded: list[str] = []
    origin: list[int] = []
    for offset, char in enumerate(text):
        piece = fold(char)
        folded.append(piece)
        origin.extend([offset] * len(piece))
    return "".join(folded), origin
