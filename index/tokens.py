"""Product and query tokenisation for the BM25 index (``aisle.index.lexical``).

``tokenize`` is the same for products and queries:

* text is case-folded and accents are stripped (``Küche`` → ``kuche``); any script's letters
  and digits form words;
* a compound joined by ``. / - +`` (``4-1/2-inch``, ``dw-4524``, ``6.5``) is kept whole *and*
  split into its parts, and a part mixing letters and digits (``dw4524``, ``cs3``, ``v22``) is
  kept whole and split at each letter/digit boundary. So ``DW4524``, ``dw-4524`` and ``DW 4524``
  all share the tokens ``dw`` and ``4524``, while the exact spelling still scores higher through
  the rarer whole token;
* plural ``s``/``es``/``ies`` endings of alphabetic words are folded (``cables`` → ``cable``);
* at query time only, a short list of English function words is dropped (unless nothing else is
  left) and repeated tokens count once.

``TOKENIZER_VERSION`` is stored beside each lexical index, so that a version built by an older
tokenizer is still queried with the tokenizer that built it (``query_tokens(text, version)``).
"""

from __future__ import annotations

import re
import unicodedata

TOKENIZER_VERSION = 2
#: English function words dropped from queries (Lucene's list without "no"/"not", which matter
#: in product text such as "no-slip").
QUERY_STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    )
)

_WORD = re.compile(r"[^\W_]+(?:[./+-][^\W_]+)*")
_SEPARATORS = re.compile(r"[./+-]")
_LETTERS_OR_DIGITS = re.compile(r"\d+|[^\W\d_]+")
_ALPHA_RUN = re.compile(r"[^\W\d_]+")
_LEGACY_WORD = re.compile(r"[0-9a-z]+(?:[./-][0-9a-z]+)*")


def fold(text: str) -> str:
    """``text`` case-folded, accents stripped (``Küche`` → ``küche`` → ``kuche``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def fold_plural(token: str) -> str:
    """A token's singular by the ``s``/``es``/``ies`` rule (``cables`` → ``cable``)."""
    # A light "S-stemmer": enough to match "cables"/"cable" without a language-specific stemmer.
    if len(token) <= 3 or not token.isalpha():
        return token
    if token.endswith("ies") and not token.endswith(("eies", "aies")):
        return token[:-3] + "y"
    if token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        return token[:-1]
    if token.endswith("s") and not token.endswith(("us", "ss")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` (see the module docstring), in order, repeats kept."""
    tokens: list[str] = []
    for match in _WORD.finditer(fold(text)):
        word = match.group()
        parts = [part for part in _SEPARATORS.split(word) if part]
        if len(parts) > 1:
            tokens.append(word)
        for part in parts:
            pieces = _LETTERS_OR_DIGITS.findall(part)
            if len(pieces) > 1:
                tokens.append(part)
            tokens.extend(pieces)
    return [fold_plural(token) for token in tokens]


def alpha_runs(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, folded run)`` of each run of letters in ``text``, offsets into ``text``.

    Every such run is a token of ``tokenize`` once its plural is folded (words split at digits
    and separators), which is what spelling correction, prefix completion and highlighting need:
    they replace or mark words of the text as written.
    """
    return [(match.start(), match.end(), fold(match.group())) for match in _ALPHA_RUN.finditer(text)]


def word_spans(text: str) -> list[tuple[int, int, list[str]]]:
    """``(start, end, tokens)`` of each word of ``text`` as ``tokenize`` splits it, offsets into
    ``text`` (for highlighting the words a query matched)."""
    return [(match.start(), match.end(), tokenize(match.group())) for match in _WORD.finditer(text)]


def _tokenize_v1(text: str) -> list[str]:
    """The first tokenizer (versions built before ``TOKENIZER_VERSION`` 2 are queried with it)."""
    tokens: list[str] = []
    for match in _LEGACY_WORD.finditer(text.casefold()):
        token = match.group()
        tokens.append(token)
        if any(sep in token for sep in "./-"):
            tokens.extend(part for part in re.split(r"[./-]", token) if part)
    return tokens


_TOKENIZERS = {1: _tokenize_v1, 2: tokenize}
#: Every tokenizer version this Aisle can query an index with.
KNOWN_VERSIONS: tuple[int, ...] = tuple(sorted(_TOKENIZERS))


def query_tokens(text: str, version: int = TOKENIZER_VERSION) -> list[str]:
    """The distinct tokens a query searches for, stopwords dropped unless nothing else is left."""
    tokens = list(dict.fromkeys(_TOKENIZERS[version](text)))
    if version >= 2:
        content = [token for token in tokens if token not in QUERY_STOPWORDS]
        tokens = content or tokens
    return tokens
