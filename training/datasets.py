"""Evaluation and training sets, from ``../shared/data`` (see its README) or a shop's own files.

A *search set* is a folder holding a catalogue (``corpus.csv`` or ``products.csv``), ``queries.csv``
(``query_id, query``) and ``qrels.csv`` (``query_id, product_id, gain``). The shared sets are named
(``amazon_google``, ``esci_fragments``; ``fixture/amazon_google`` for the small copies) and carry
their column maps; any other folder is read with the columns ``id`` and ``title`` or an explicit map.

A *sequence set* is either the UniSRec Scientific folder (leave-one-out ``train``/``valid`` files)
or a folder with ``items.csv`` (``asin|item_id, text``) and ``interactions.csv`` (``user_id,
asin|item_id, position``), whose users' last items are the targets (the fixture's format), or a
shop's catalogue with an event log (``events_sequence_set``), where each user's last event is the
target and the real times and types of the events make the profile.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from aisle.index.catalog import Catalog, Product, load_catalog
from aisle.training.recsys_data import UNISREC_DIR, load_unisrec, shared_data_dir

_SEARCH_SETS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    # An Amazon-Google query is the other shop's listing of the product: its title and its
    # manufacturer (the catalogue side embeds title and brand too). ``query_columns=("query",)``
    # gives the title alone.
    "amazon_google": (
        "dev/search/amazon_google",
        {"id": "product_id", "brand": "manufacturer"},
        ("query", "manufacturer"),
    ),
    "esci_fragments": (
        "dev/search/esci_fragments",
        {
            "id": "product_id",
            "title": "product_title",
            "description": "product_description",
            "brand": "product_brand",
        },
        ("query",),
    ),
}
DEFAULT_QUERY_COLUMNS = ("query",)
_CATALOG_FILES = ("corpus.csv", "products.csv", "catalog.csv", "corpus.jsonl", "products.jsonl")


class DatasetError(ValueError):
    """A data set cannot be found or read; the message names the file and the problem."""


@dataclass(frozen=True)
class SearchQuery:
    """A labelled query: its id, text and the gain of every labelled product (gain > 0 relevant)."""

    id: str
    text: str
    gains: dict[str, float]

    @property
    def relevant(self) -> frozenset[str]:
        return frozenset(item for item, gain in self.gains.items() if gain > 0)


@dataclass
class SearchSet:
    """A catalogue file and its labelled queries, in query-id order."""

    name: str
    catalog_path: Path
    column_map: dict[str, str]
    queries: list[SearchQuery]
    unlabelled: int = 0
    #: Names the catalogue (halves of one set share it, and so share an evaluation index).
    catalog_name: str = ""

    def load_catalog(self) -> Catalog:
        return load_catalog(self.catalog_path, self.column_map)

    def half(self, which: str) -> SearchSet:
        """``even`` or ``odd`` positions in query-id order (``all``: unchanged).

        The even half is the one service defaults and trained models may be tuned on; the odd
        half is held out for reporting.
        """
        if which == "all":
            return self
        if which not in ("even", "odd"):
            raise DatasetError(f"unknown half '{which}': choose even, odd or all")
        start = 0 if which == "even" else 1
        return SearchSet(
            f"{self.name}[{which}]",
            self.catalog_path,
            self.column_map,
            self.queries[start::2],
            self.unlabelled,
            self.catalog_name or self.name,
        )


def _resolve(spec: str, relative: str | None) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if relative is not None:
        candidate = shared_data_dir() / relative
        if candidate.is_dir():
            return candidate
    raise DatasetError(
        f"data set '{spec}' not found: give a folder, or a shared set name with the shared data "
        f"at {shared_data_dir()} (set AISLE_SHARED_DATA)"
    )


def parse_query_columns(text: str | None) -> tuple[str, ...] | None:
    """``"query,manufacturer"`` → ``("query", "manufacturer")``; None or empty → None (the default)."""
    columns = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    return columns or None


QUERY_COLUMNS_HELP = (
    "queries.csv columns joined into the query text, comma-separated (default: the set's "
    "own; amazon_google: query,manufacturer, the listing's title and maker)"
)


def load_search_set(
    spec: str, column_map: dict[str, str] | None = None, query_columns: tuple[str, ...] | None = None
) -> SearchSet:
    """Reads a named shared search set (``amazon_google``, ``fixture/esci_fragments``, ...) or a folder.

    Args:
        spec: a shared set's name or a folder.
        column_map: catalogue column map (a shared set has its own).
        query_columns: the ``queries.csv`` columns joined, in this order, into a query's text
            (default: the set's own, ``query`` for a folder); empty cells are skipped.
    """
    fixture = spec.startswith("fixture/")
    base = spec.split("/", 1)[1] if fixture else spec
    relative, default_map, default_columns = _SEARCH_SETS.get(base, (None, {}, DEFAULT_QUERY_COLUMNS))
    columns = tuple(query_columns or default_columns)
    if relative is not None and fixture:
        relative = relative.replace("dev/", "fixture/", 1)
    folder = _resolve(spec, relative)
    catalog_path = next((folder / name for name in _CATALOG_FILES if (folder / name).is_file()), None)
    if catalog_path is None:
        raise DatasetError(f"{folder}: no catalogue file (one of {', '.join(_CATALOG_FILES)})")
    gains: dict[str, dict[str, float]] = defaultdict(dict)
    for row in _csv(folder / "qrels.csv", ("query_id", "product_id")):
        gains[row["query_id"]][row["product_id"]] = float(row.get("gain") or 1)
    queries: list[SearchQuery] = []
    unlabelled = 0
    for row in _csv(folder / "queries.csv", ("query_id", *columns)):
        labels = gains.get(row["query_id"], {})
        if any(gain > 0 for gain in labels.values()):
            text = " ".join(value for value in ((row.get(c) or "").strip() for c in columns) if value)
            queries.append(SearchQuery(row["query_id"], text, dict(labels)))
        else:
            unlabelled += 1
    queries.sort(key=lambda q: (0, int(q.id), "") if q.id.isdigit() else (1, 0, q.id))
    name = spec if relative is not None else folder.name
    return SearchSet(name, catalog_path, {**default_map, **(column_map or {})}, queries, unlabelled, name)


def _csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


@dataclass(frozen=True)
class SequenceCase:
    """A user's history of item ids (oldest first) and the id of the next item.

    Event logs also give each history event's ``timestamps`` and ``types`` and the moment
    ``now`` of the next one; untimed sequences are placed on ``aisle.training.timeline.Timeline``.
    """

    user: str
    history: tuple[str, ...]
    target: str
    timestamps: tuple[float, ...] | None = None
    types: tuple[str, ...] | None = None
    now: float | None = None


@dataclass
class SequenceSet:
    """Items (id and text) and next-item cases of one split."""

    name: str
    item_ids: list[str]
    item_texts: list[str]
    cases: list[SequenceCase]
    train_cases: list[SequenceCase] = field(default_factory=list)

    def catalog(self) -> Catalog:
        """The items as a catalogue whose embedded text is exactly the item text."""
        return Catalog([Product(id=i, title=t) for i, t in zip(self.item_ids, self.item_texts)])


def load_sequence_set(spec: str, split: str = "valid") -> SequenceSet:
    """Reads ``scientific`` (UniSRec; split ``train`` or ``valid``), ``fixture/scientific`` or a folder.

    For UniSRec, ``train`` gives every training row (all prefixes) and ``valid`` the
    leave-one-out validation rows; ``train_cases`` always holds the training rows. For the
    fixture format, each user's last item is the target of ``valid`` and the earlier prefixes
    are the training rows.
    """
    if spec in ("scientific", "amazon_scientific"):
        folder = _resolve(spec, str(UNISREC_DIR))
    elif spec in ("fixture/scientific", "fixture/amazon_scientific"):
        folder = _resolve(spec, "fixture/recsys/amazon_scientific")
    else:
        folder = _resolve(spec, None)
    if split not in ("train", "valid"):
        raise DatasetError(f"unknown split '{split}': choose train or valid")
    if any(folder.glob("*.train.inter")):
        domain = next(folder.glob("*.train.inter")).name.split(".")[0]
        data = load_unisrec(folder, domain)

        def convert(cases):
            return [
                SequenceCase(str(c.user), tuple(data.item_ids[r] for r in c.history), data.item_ids[c.target])
                for c in cases
            ]

        train = convert(data.train)
        return SequenceSet(
            domain, data.item_ids, data.item_texts, train if split == "train" else convert(data.valid), train
        )
    return _load_interactions(folder, split)


def _load_interactions(folder: Path, split: str) -> SequenceSet:
    items = _csv(folder / "items.csv", ("text",))
    id_column = "asin" if "asin" in items[0] else "item_id"
    item_ids = [row[id_column] for row in items]
    texts = [row["text"].strip() for row in items]
    known = set(item_ids)
    sequences: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in _csv(folder / "interactions.csv", ("user_id", "position")):
        item = row.get("asin") or row.get("item_id") or ""
        if item not in known:
            raise DatasetError(f"{folder / 'interactions.csv'}: unknown item '{item}'")
        sequences[row["user_id"]].append((int(row["position"]), item))
    valid: list[SequenceCase] = []
    train: list[SequenceCase] = []
    for user in sorted(sequences):
        ordered = [item for _, item in sorted(sequences[user])]
        if len(ordered) < 2:
            continue
        valid.append(SequenceCase(user, tuple(ordered[:-1]), ordered[-1]))
        train.extend(SequenceCase(user, tuple(ordered[:end]), ordered[end]) for end in range(1, len(ordered) - 1))
    return SequenceSet(folder.name, item_ids, texts, train if split == "train" else valid, train)


def events_sequence_set(
    catalog: Catalog, events: list[tuple[str, str, float, str]], name: str, split: str = "valid"
) -> SequenceSet:
    """Leave-one-out cases from an event log ``(user, item, timestamp, type)`` over ``catalog``.

    ``valid``: each user's last event is the target of the events before it; ``train``: every
    earlier event is the target of the events before it. Events on unknown items are ignored.
    """
    known = {p.id for p in catalog.products}
    by_user: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for user, item, timestamp, kind in events:
        if item in known:
            by_user[user].append((timestamp, item, kind))
    valid: list[SequenceCase] = []
    train: list[SequenceCase] = []
    for user in sorted(by_user):
        ordered = sorted(by_user[user])
        for end in range(1, len(ordered)):
            history = ordered[:end]
            case = SequenceCase(
                user,
                tuple(i for _, i, _ in history),
                ordered[end][1],
                tuple(t for t, _, _ in history),
                tuple(k for _, _, k in history),
                ordered[end][0],
            )
            (valid if end == len(ordered) - 1 else train).append(case)
    items = catalog.products
    return SequenceSet(
        name, [p.id for p in items], [p.embedding_text() for p in items], train if split == "train" else valid, train
    )
