"""The catalogue's vocabulary: spelling corrections and word completions for the lexical retriever.

Built from a version's BM25 index at rebuild time and saved beside it (JSON and ``.npy``, no
pickle), it holds every indexed token with its document frequency and the spelling shoppers see
(``jeans`` for the plural-folded token ``jean``).

Corrections follow Typesense and Algolia: a typed word gets no edit below ``ONE_TYPO_LENGTH``
letters, one from there and two from ``TWO_TYPO_LENGTH`` (edits are Damerau-Levenshtein: insert,
delete, substitute, swap two neighbours). Candidates come from a deletion neighbourhood (SymSpell,
Wolf Garbe): every word of the vocabulary is stored under the hashes of the strings its first
``PREFIX_LENGTH`` letters give with up to two letters deleted, so the words within ``d`` edits of a
typed word are among those sharing one of the typed word's own deletion hashes. A lookup costs a
few dozen hashes and binary searches, whatever the vocabulary's size; the candidates are then
checked by computing the distance. Only alphabetic words take part: model numbers and sizes are
never "corrected".

Completions are the tokens starting with a prefix, found by binary search in the sorted tokens.
"""

from __future__ import annotations

import bisect
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
from rapidfuzz.distance import OSA

from aisle.index.storage import atomic_write, atomic_write_json
from aisle.index.tokens import fold, fold_plural

#: Typed words shorter than this are never corrected.
ONE_TYPO_LENGTH = 5
#: Typed words at least this long may be two edits away from the word meant.
TWO_TYPO_LENGTH = 9
#: The deletion neighbourhood is built on each word's first letters only (SymSpell's prefix).
PREFIX_LENGTH = 7
#: The most edits any lookup allows.
MAX_EDITS = 2
#: Vocabulary words shorter than this are never offered as corrections.
MIN_CORRECTION_LENGTH = 3

WORDS_FILE = "vocabulary.json"
DELETES_FILE = "vocabulary.deletes.npy"
TARGETS_FILE = "vocabulary.targets.npy"
VOCABULARY_FORMAT = 1

_SIMPLE_WORD = re.compile(r"[^\W\d_]+")


def allowed_edits(word: str) -> int:
    """Edits tolerated in a typed word of this length (0, 1 or 2)."""
    if len(word) >= TWO_TYPO_LENGTH:
        return 2
    return 1 if len(word) >= ONE_TYPO_LENGTH else 0


def _hash(text: str) -> int:
    # Stable across processes (``hash`` is salted); collisions only add candidates that the
    # distance check then drops.
    return zlib.crc32(text.encode("utf-8"))


def _deletes(word: str, edits: int) -> set[str]:
    """``word`` cut to ``PREFIX_LENGTH`` letters, and every string it gives with up to ``edits``
    letters deleted."""
    level = {word[:PREFIX_LENGTH]}
    found = set(level)
    for _ in range(edits):
        level = {text[:i] + text[i + 1 :] for text in level if len(text) > 1 for i in range(len(text))}
        found |= level
    return found


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (optimal string alignment) of ``a`` and ``b``, or ``limit + 1``
    when it is more than ``limit`` (rapidfuzz's bit-parallel kernel: a pure Python table was far
    slower per candidate)."""
    return int(OSA.distance(a, b, score_cutoff=limit))


@dataclass(frozen=True)
class Correction:
    """The vocabulary word meant by a typed word."""

    typed: str
    word: str
    edits: int
    frequency: int


def surface_forms(texts: Iterable[str], tokens: Iterable[str]) -> dict[str, str]:
    """The spelling of each plural-folded token most often found in ``texts`` (``jean`` →
    ``jeans``), for the tokens where it differs from the token itself."""
    wanted = set(tokens)
    counts: Counter[str] = Counter()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= 4096:
            counts.update(_SIMPLE_WORD.findall(fold("\n".join(batch))))
            batch.clear()
    if batch:
        counts.update(_SIMPLE_WORD.findall(fold("\n".join(batch))))
    best: dict[str, tuple[int, str]] = {}
    for word, count in counts.items():
        token = fold_plural(word)
        if token in wanted and (token not in best or count > best[token][0]):
            best[token] = (count, word)
    return {token: word for token, (_, word) in best.items() if word != token}


class Vocabulary:
    """The tokens of one version with their document frequencies (see the module docstring)."""

    def __init__(
        self,
        words: list[str],
        frequencies: np.ndarray,
        surfaces: dict[str, str],
        deletes: np.ndarray,
        targets: np.ndarray,
    ) -> None:
        if len(words) != len(frequencies) or len(deletes) != len(targets):
            raise ValueError("vocabulary files do not match each other; rebuild the index")
        if any(later <= earlier for earlier, later in zip(words, words[1:])):
            raise ValueError("vocabulary words are not sorted; rebuild the index")
        self.words = words
        self.frequencies = np.asarray(frequencies, dtype=np.int64)
        self.surfaces = surfaces
        self._row_of = {word: row for row, word in enumerate(words)}
        self._deletes = deletes
        self._targets = targets

    @classmethod
    def build(cls, frequencies: dict[str, int], surfaces: dict[str, str] | None = None) -> Vocabulary:
        """The vocabulary of tokens with their document frequencies."""
        words = sorted(frequencies)
        counts = np.array([frequencies[word] for word in words], dtype=np.int64)
        hashes: list[int] = []
        targets: list[int] = []
        surfaces = surfaces or {}
        for row, word in enumerate(words):
            if len(word) < MIN_CORRECTION_LENGTH or not word.isalpha():
                continue
            # The spelling shoppers see is indexed too: "shoess" is one edit from "shoes", two
            # from its token "shoe".
            forms = {word, surfaces.get(word, word)}
            for text in set().union(*(_deletes(form, MAX_EDITS) for form in forms)):
                hashes.append(_hash(text))
                targets.append(row)
        order = np.argsort(np.asarray(hashes, dtype=np.uint32), kind="stable")
        deletes = np.asarray(hashes, dtype=np.uint32)[order]
        return cls(words, counts, surfaces, deletes, np.asarray(targets, dtype=np.int32)[order])

    def save(self, directory: Path) -> None:
        """Writes the vocabulary files into ``directory`` (each one atomically)."""
        directory = Path(directory)
        atomic_write_json(
            directory / WORDS_FILE,
            {
                "format": VOCABULARY_FORMAT,
                "words": self.words,
                "frequencies": self.frequencies.tolist(),
                "surfaces": self.surfaces,
            },
        )
        for name, array in ((DELETES_FILE, self._deletes), (TARGETS_FILE, self._targets)):
            atomic_write(directory / name, partial(_save_array, array=array))

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (Path(directory) / WORDS_FILE).is_file()

    @classmethod
    def load(cls, directory: Path) -> Vocabulary:
        """Reads the files ``save`` wrote (the deletion index memory-mapped).

        Raises:
            ValueError: the files are of another format or do not match each other.
        """
        directory = Path(directory)
        payload = json.loads((directory / WORDS_FILE).read_text(encoding="utf-8"))
        if payload.get("format") != VOCABULARY_FORMAT:
            raise ValueError(f"vocabulary format {payload.get('format')!r}, this Aisle reads {VOCABULARY_FORMAT}")
        deletes = np.load(directory / DELETES_FILE, mmap_mode="r", allow_pickle=False)
        targets = np.load(directory / TARGETS_FILE, mmap_mode="r", allow_pickle=False)
        if deletes.dtype != np.uint32 or targets.dtype != np.int32:
            raise ValueError("vocabulary deletion index has the wrong types; rebuild the index")
        return cls(
            list(payload["words"]),
            np.asarray(payload["frequencies"], dtype=np.int64),
            dict(payload["surfaces"]),
            np.asarray(deletes),
            np.asarray(targets),
        )

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._row_of

    def frequency(self, word: str) -> int:
        """Products containing ``word`` (0 for a word not in the vocabulary)."""
        row = self._row_of.get(word)
        return 0 if row is None else int(self.frequencies[row])

    def surface(self, word: str) -> str:
        """How shoppers see ``word``: its most frequent spelling in the catalogue."""
        return self.surfaces.get(word, word)

    def neighbours(self, typed: str, edits: int) -> list[Correction]:
        """Vocabulary words within ``edits`` edits of ``typed`` (a folded word as written, plural
        and all; itself excluded), nearest first, then most frequent. A word's distance is that of
        its nearer form: the token or its usual spelling."""
        if edits <= 0 or not typed.isalpha():
            return []
        hashes = np.fromiter((_hash(text) for text in _deletes(typed, edits)), dtype=np.uint32)
        starts = np.searchsorted(self._deletes, hashes, side="left")
        ends = np.searchsorted(self._deletes, hashes, side="right")
        rows = {int(row) for start, end in zip(starts, ends) if end > start for row in self._targets[start:end]}
        found = []
        for row in rows:
            word = self.words[row]
            surface = self.surfaces.get(word, word)
            if typed in (word, surface):
                continue
            distance = min(edit_distance(typed, word, edits), edit_distance(typed, surface, edits))
            if distance <= edits:
                found.append(Correction(typed, word, distance, int(self.frequencies[row])))
        found.sort(key=lambda c: (c.edits, -c.frequency, c.word))
        return found

    def correct(self, typed: str) -> Correction | None:
        """The word most likely meant by ``typed`` (edits allowed by its length), or None."""
        found = self.neighbours(typed, allowed_edits(typed))
        return found[0] if found else None

    def completions(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` words starting with ``prefix`` (itself included), most frequent first."""
        if not prefix or limit <= 0:
            return []
        start = bisect.bisect_left(self.words, prefix)
        end = bisect.bisect_left(self.words, prefix + "\U0010ffff", start)
        if end <= start:
            return []
        counts = self.frequencies[start:end]
        if end - start > limit:
            best = np.argpartition(-counts, limit - 1)[:limit]
        else:
            best = np.arange(end - start)
        best = best[np.lexsort((best, -counts[best]))]
        return [self.words[start + int(i)] for i in best]


def _save_array(handle: BinaryIO, array: np.ndarray) -> None:
    np.save(handle, array, allow_pickle=False)
