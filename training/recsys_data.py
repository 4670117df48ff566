"""Readers for the recommendation evaluation data under ``../shared/data`` (see its README).

* UniSRec's Amazon "Industrial & Scientific" preprocessing: item texts, and leave-one-out
  splits where each row is ``user index, history item indexes in time order, target index``.
* MovieLens ml-latest-small: ratings, movies and free-text tags; a tag is a personalized search
  case (the tag text as the query, the tagged movie as the target, the user's earlier ratings as
  the history).

Nothing here imports ``aisle.service``: the training package and the HTTP benchmark share it.
"""

from __future__ import annotations

import csv
import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming the shared data directory (default: ``<repo>/../shared/data``).
SHARED_DATA_ENV = "AISLE_SHARED_DATA"
UNISREC_DIR = Path("dev/recsys/amazon_scientific_unisrec")
MOVIELENS_DIR = Path("dev/recsys/ml_latest_small")


def shared_data_dir() -> Path:
    """``$AISLE_SHARED_DATA`` or ``<repo>/../shared/data`` (it may not exist: callers skip)."""
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class SequenceCase:
    """One next-item case: the user's history (item indexes, oldest first) and the next item."""

    user: int
    history: tuple[int, ...]
    target: int


@dataclass
class UniSRecData:
    """A UniSRec domain: items by index (ASIN and text) and its leave-one-out splits."""

    item_ids: list[str]
    item_texts: list[str]
    user_count: int
    train: list[SequenceCase]
    valid: list[SequenceCase]

    def __len__(self) -> int:
        return len(self.item_ids)

    def last_train_cases(self) -> list[SequenceCase]:
        """Each user's latest training row: the case just before ``valid``, one per user.

        The latest row has the longest history (histories are windows of at most 50 items; on a
        tie the file's first row of the user, the files listing each user's rows newest first).
        Tuning uses these, so that it mirrors the valid protocol (one case per user, the
        longest history) without ever looking at valid targets.
        """
        longest: dict[int, SequenceCase] = {}
        for case in self.train:
            best = longest.get(case.user)
            if best is None or len(case.history) > len(best.history):
                longest[case.user] = case
        return [longest[user] for user in sorted(longest)]


def load_unisrec(root: str | Path | None = None, domain: str = "Scientific") -> UniSRecData:
    """Reads ``<domain>.item2index``, ``.text``, ``.user2index``, ``.train.inter`` and ``.valid.inter``.

    Args:
        root: the folder holding the files (default: the shared data's UniSRec folder).
        domain: the file prefix.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: an item index is out of range or an item has no text.
    """
    root = Path(root) if root is not None else shared_data_dir() / UNISREC_DIR
    index_of: dict[str, int] = {}
    for asin, position in _tab_rows(root / f"{domain}.item2index", header=False):
        index_of[asin] = int(position)
    count = len(index_of)
    if sorted(index_of.values()) != list(range(count)):
        raise ValueError(f"{domain}.item2index: indexes are not 0..{count - 1}")
    item_ids = [""] * count
    for asin, row in index_of.items():
        item_ids[row] = asin
    texts: list[str | None] = [None] * count
    for asin, text in _tab_rows(root / f"{domain}.text", header=True):
        if asin in index_of:
            texts[index_of[asin]] = text.strip()
    missing = [item_ids[i] for i, text in enumerate(texts) if not text]
    if missing:
        raise ValueError(f"{domain}.text: {len(missing)} items have no text, e.g. {missing[:3]}")
    user_count = sum(1 for _ in _tab_rows(root / f"{domain}.user2index", header=False))
    train = list(_read_cases(root / f"{domain}.train.inter", count))
    valid = list(_read_cases(root / f"{domain}.valid.inter", count))
    return UniSRecData(item_ids, [t for t in texts if t], user_count, train, valid)


def _tab_rows(path: Path, *, header: bool) -> Iterator[list[str]]:
    with open(path, encoding="utf-8") as handle:
        if header:
            next(handle, None)
        for line in handle:
            line = line.rstrip("\n")
            if line:
                yield line.split("\t", 1)


def _read_cases(path: Path, item_count: int) -> Iterator[SequenceCase]:
    for line_number, (user, rest) in enumerate(_tab_rows(path, header=True), start=2):
        history_text, _, target = rest.partition("\t")
        history = tuple(int(token) for token in history_text.split())
        case = SequenceCase(int(user), history, int(target))
        if not all(0 <= i < item_count for i in (*history, case.target)):
            raise ValueError(f"{path.name} line {line_number}: item index out of range")
        yield case


@dataclass(frozen=True)
class Rating:
    user: int
    movie: int
    rating: float
    timestamp: int


@dataclass(frozen=True)
class Movie:
    movie: int
    title: str
    genres: tuple[str, ...]

    def text(self) -> str:
        """The catalogue text of a movie: its title and genres."""
        genres = ", ".join(g for g in self.genres if g != "(no genres listed)")
        return f"{self.title}. {genres}" if genres else self.title


@dataclass(frozen=True)
class TagCase:
    """A personalized search case: ``user`` tagged ``movie`` with ``query`` at ``timestamp``.

    ``history`` holds the user's ratings strictly before the tag's time, oldest first, without
    the tagged movie itself (its own rating would hand the answer to the profile).
    """

    user: int
    movie: int
    query: str
    timestamp: int
    history: tuple[Rating, ...]


@dataclass
class MovieLensData:
    movies: dict[int, Movie]
    ratings: list[Rating]
    tags: list[tuple[int, int, str, int]]

    def tag_cases(self, *, min_history: int = 1) -> list[TagCase]:
        """One case per distinct (user, movie, tag text), at the tag's first use.

        Args:
            min_history: cases with fewer earlier ratings are left out (no profile to test).
        """
        by_user: dict[int, list[Rating]] = defaultdict(list)
        for rating in self.ratings:
            by_user[rating.user].append(rating)
        for ratings in by_user.values():
            ratings.sort(key=lambda r: (r.timestamp, r.movie))
        first_use: dict[tuple[int, int, str], int] = {}
        for user, movie, tag, timestamp in self.tags:
            key = (user, movie, tag.strip().casefold())
            if key[2] and movie in self.movies:
                first_use[key] = min(timestamp, first_use.get(key, timestamp))
        cases: list[TagCase] = []
        for (user, movie, query), timestamp in sorted(first_use.items()):
            ratings = by_user.get(user, [])
            cut = bisect_left([r.timestamp for r in ratings], timestamp)
            history = tuple(r for r in ratings[:cut] if r.movie != movie)
            if len(history) >= min_history:
                cases.append(TagCase(user, movie, query, timestamp, history))
        return cases


def load_movielens(root: str | Path | None = None) -> MovieLensData:
    """Reads ``movies.csv``, ``ratings.csv`` and ``tags.csv`` of ml-latest-small."""
    root = Path(root) if root is not None else shared_data_dir() / MOVIELENS_DIR
    movies: dict[int, Movie] = {}
    for row in _csv_rows(root / "movies.csv"):
        movie = int(row["movieId"])
        movies[movie] = Movie(movie, row["title"].strip(), tuple(row["genres"].split("|")))
    ratings = [
        Rating(int(row["userId"]), int(row["movieId"]), float(row["rating"]), int(row["timestamp"]))
        for row in _csv_rows(root / "ratings.csv")
    ]
    tags = [
        (int(row["userId"]), int(row["movieId"]), row["tag"], int(row["timestamp"]))
        for row in _csv_rows(root / "tags.csv")
    ]
    return MovieLensData(movies, ratings, tags)


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)
