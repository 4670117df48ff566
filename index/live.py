"""The live catalogue's delta: a published version plus the changes logged since, searchable as one.

A ``Delta`` applies logged changes (``aisle.index.changes``) to one loaded version and hands out
immutable ``LiveIndex`` snapshots that read like a ``LoadedIndex``, so the engine, the reranker
and personalization need no second code path:

* Rows are stable. A product of the version keeps its row; a new product gets the next row after
  the version's last one, kept across later changes (and if it is deleted and added again).
* Price, stock, boost, margin and attributes are patched into copies of the item table's
  columns (copy-on-write, per batch of changes): no vector changes.
* A product whose embedded text changed (new, or retitled) gets its vector in a small delta
  matrix (exact search, beside the version's ANN index) and its text in a small BM25 index
  scored with the version's statistics (``DeltaLexical``); its old row is hidden from the
  version's ANN and BM25 indexes.
* A deleted product is a tombstone: its row stays, marked in ``items.removed``, hidden from
  retrieval, refused by the reranker and absent from ``items.row_of``.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.catalog import KNOWN_FIELDS, Product
from aisle.index.changes import Change, apply_change
from aisle.index.fields import FieldIndex
from aisle.index.items import ItemTable
from aisle.index.lexical import EMPTY_DOCUMENT_TOKEN, LexicalIndex, top_k
from aisle.index.loaded import LoadedIndex, VectorSpace
from aisle.index.selection import RowSelection, SelectionCache
from aisle.index.tokens import query_tokens, tokenize

#: Hidden version rows (deleted or re-encoded) up to this many are skipped by asking the version's
#: indexes for that many more results; beyond it a row mask excludes them.
OVERFETCH_LIMIT = 256
#: Products whose text gives the average document length the delta's BM25 normalises with.
AVGDL_SAMPLE = 2000
_RESULT_FIELDS = tuple(name for name in KNOWN_FIELDS)

Encode = Callable[[list[str]], np.ndarray]


def base_sequence(manifest: Mapping[str, Any]) -> int:
    """The last change-log ``seq`` a published version includes (0 for versions without one)."""
    return int(manifest.get("live_sequence", 0) or 0)


class Delta:
    """The changes applied to one version so far; ``apply`` returns the next snapshot.

    Not thread-safe: one follower applies changes; readers only use the snapshots.

    Args:
        base: the published version.
        encode: encodes product texts into unit vectors; used only when a logged change lacks
            the vector of the text it produces (another model wrote it, or two changes raced).
    """

    def __init__(self, base: LoadedIndex, encode: Encode) -> None:
        self.base = base
        self.encode = encode
        self.base_size = len(base)
        self.sequence = base_sequence(base.manifest)
        self.products: dict[int, Product] = {}
        self.removed: set[int] = set()
        self.appended_ids: list[str] = []
        self.appended_row_of: dict[str, int] = {}
        self.vectors: dict[int, tuple[str, np.ndarray]] = {}
        #: The embedded text of each row in ``vectors`` (kept when the product is deleted).
        self.texts: dict[int, str] = {}
        self.model = base.text.fingerprint
        self.avgdl = _average_length(base.items)
        self.snapshot = LiveIndex.unchanged(base, self.sequence)

    @property
    def base_sequence(self) -> int:
        return base_sequence(self.base.manifest)

    def row_of(self, item_id: str) -> int | None:
        """The row the product has or had (deleted products keep theirs)."""
        row = self.appended_row_of.get(item_id)
        return self.base.items.row_of.get(item_id) if row is None else row

    def current(self, row: int | None) -> Product | None:
        if row is None or row in self.removed:
            return None
        product = self.products.get(row)
        if product is None and row < self.base_size:
            product = self.base.items.product(row)
        return product

    def apply(self, changes: Iterable[Change]) -> LiveIndex:
        """Applies ``changes`` (in ``seq`` order, above ``sequence``) and returns the new snapshot."""
        changed_rows: set[int] = set()
        text_changed = False
        text_rows: set[int] = set()
        to_encode: dict[int, str] = {}
        for change in changes:
            if change.seq and change.seq <= self.sequence:
                continue
            row = self.row_of(change.item_id)
            current = self.current(row)
            product = apply_change(current, change)
            if change.seq:
                self.sequence = change.seq
            if product is None:
                if current is not None and row is not None:
                    self.removed.add(row)
                    self.products.pop(row, None)
                    changed_rows.add(row)
                    text_changed |= row in self.vectors
                continue
            if row is None:
                row = self.base_size + len(self.appended_ids)
                self.appended_ids.append(change.item_id)
                self.appended_row_of[change.item_id] = row
            if row in self.removed:
                self.removed.discard(row)
                text_changed |= row in self.vectors
            self.products[row] = product
            changed_rows.add(row)
            content_hash = product.content_hash()
            if row < self.base_size and content_hash == self.base.items.content_hashes[row]:
                self.texts.pop(row, None)
                if self.vectors.pop(row, None) is not None:  # back to the version's text
                    text_changed = True
                    text_rows.add(row)
                to_encode.pop(row, None)
            elif row not in self.vectors or self.vectors[row][0] != content_hash:
                text_changed = True
                text_rows.add(row)
                self.texts[row] = product.embedding_text()
                if change.vector is not None and change.content_hash == content_hash and change.model == self.model:
                    self.vectors[row] = (content_hash, change.vector)
                    to_encode.pop(row, None)
                else:
                    to_encode[row] = product.embedding_text()
                    self.vectors[row] = (content_hash, np.zeros(0, np.float32))
        if to_encode:
            encoded = self.encode(list(to_encode.values()))
            for row, vector in zip(to_encode, encoded, strict=True):
                self.vectors[row] = (self.vectors[row][0], np.asarray(vector, dtype=np.float32))
        if changed_rows:
            self.snapshot = self._next_snapshot(changed_rows, text_changed, text_rows)
        else:
            self.snapshot = self.snapshot.at_sequence(self.sequence)
        return self.snapshot

    def _next_snapshot(self, changed_rows: set[int], text_changed: bool, text_rows: set[int]) -> LiveIndex:
        previous = self.snapshot
        size = self.base_size + len(self.appended_ids)
        items = LiveItems(self, previous.items, size, changed_rows)
        if text_changed:
            rows = np.array(sorted(self.vectors), dtype=np.int64)
            dim = self.base.text.vectors.shape[1]
            matrix = (
                np.stack([self.vectors[int(row)][1] for row in rows]).astype(np.float32)
                if len(rows)
                else np.empty((0, dim), np.float32)
            )
            # Each row's vector becomes a view of the matrix: one copy of a delta vector is kept.
            for position, row in enumerate(rows.tolist()):
                self.vectors[row] = (self.vectors[row][0], matrix[position])
            texts = {row: self.texts[row] for row in text_rows if row in self.vectors}
            removed_texts = [row for row in text_rows if row not in self.vectors]
            lexical = DeltaLexical.updated(
                previous.delta_lexical, rows, texts, removed_texts, self.base.lexical, self.avgdl
            )
        else:
            rows, matrix, lexical = previous.delta_rows, previous.delta_matrix, previous.delta_lexical
        return LiveIndex(self.base, items, rows, matrix, lexical, self.sequence, previous=previous)


class LiveIndex:
    """An immutable snapshot: the version plus the delta, with ``LoadedIndex``'s interface."""

    def __init__(
        self,
        base: LoadedIndex,
        items: ItemTable,
        delta_rows: np.ndarray,
        delta_matrix: np.ndarray,
        delta_lexical: DeltaLexical | None,
        sequence: int,
        previous: LiveIndex | None = None,
    ) -> None:
        self.base = base
        self.path: Path = base.path
        self.manifest = base.manifest
        self.items = items
        self.sequence = sequence
        self.delta_rows = delta_rows
        self.delta_matrix = delta_matrix
        self.delta_lexical = delta_lexical
        size = len(items)
        if (
            previous is not None
            and previous.items.removed is items.removed
            and previous.delta_rows is delta_rows
            and len(previous.items) == size
        ):
            view, delta_live = previous.view, previous.delta_live
        else:
            removed = items.removed if items.removed is not None else np.zeros(size, dtype=bool)
            hidden = removed[: len(base)].copy()
            hidden[delta_rows[delta_rows < len(base)]] = True
            delta_live = ~removed[delta_rows] if len(delta_rows) else np.zeros(0, dtype=bool)
            view = _BaseView(len(base), hidden)
        self.view, self.delta_live = view, delta_live
        self.spaces = {name: self._live_space(space, size) for name, space in base.spaces.items()}
        self.lexical = LiveLexical(base.lexical, view, delta_lexical, delta_live, size)

    def _live_space(self, space: VectorSpace, size: int) -> VectorSpace:
        """A vector space of the version seen through the delta: only the text space has delta
        vectors; new products have none in the others (their pictures wait for the next build)."""
        present = space.present
        if present is not None and len(present) < size:
            present = np.concatenate([present, np.zeros(size - len(present), dtype=bool)])
        if space.name == self.base.text.name:
            rows, matrix, live = self.delta_rows, self.delta_matrix, self.delta_live
        else:
            dim = space.vectors.shape[1]
            rows, matrix, live = np.empty(0, np.int64), np.empty((0, dim), np.float32), np.zeros(0, dtype=bool)
        return dataclasses.replace(
            space,
            vectors=LiveVectors(space.vectors, rows, matrix if len(rows) else None, size),
            ann=LiveAnn(space.ann, self.view, rows, matrix, live, size),
            present=present,
        )

    @classmethod
    def unchanged(cls, base: LoadedIndex, sequence: int) -> LiveIndex:
        dim = base.text.vectors.shape[1]
        return cls(base, base.items, np.empty(0, np.int64), np.empty((0, dim), np.float32), None, sequence)

    def at_sequence(self, sequence: int) -> LiveIndex:
        """The same content, recorded as including the log up to ``sequence``."""
        return LiveIndex(
            self.base, self.items, self.delta_rows, self.delta_matrix, self.delta_lexical, sequence, previous=self
        )

    @property
    def version(self) -> str:
        return self.base.version

    @property
    def text(self) -> VectorSpace:
        return self.spaces["text"]

    @property
    def image(self) -> VectorSpace | None:
        return self.spaces.get("image")

    @property
    def live_items(self) -> int:
        """Products in the catalogue now (rows less tombstones)."""
        removed = self.items.removed
        return len(self.items) - (int(removed.sum()) if removed is not None else 0)

    def __len__(self) -> int:
        return len(self.items)


class LiveItems(ItemTable):
    """The version's item table with the delta's rows patched in and appended (copy-on-write)."""

    def __init__(self, delta: Delta, previous: ItemTable, size: int, changed_rows: set[int]) -> None:
        base = delta.base.items
        # Whatever else the version's table holds is shared; row-indexed columns are replaced below.
        self.__dict__.update(base.__dict__)
        self._base = base
        self._base_size = len(base)
        self._size = size
        self._products = dict(delta.products)
        # New products are only ever appended: the snapshot shares the delta's list and map, and
        # reads no further than its own size.
        self.ids = _Ids(base.ids, delta.appended_ids, size - len(base))
        self.row_of = _RowMap(base.row_of, delta.appended_row_of, frozenset(delta.removed), self.ids, size)
        self.titles = _Column(base.titles, self._products, "title")
        self.content_hashes = _Column(base.content_hashes, self._products, None)
        self.brand_names = list(previous.brand_names)
        self.brand_code_of = dict(previous.brand_code_of)
        self.category_names = list(previous.category_names)
        self.category_code_of = {name: code for code, name in enumerate(self.category_names)}
        rows = [row for row in sorted(changed_rows) if row in self._products]
        products = [self._products[row] for row in rows]
        # Copy-on-write, column by column: a batch of price changes copies the price column only.
        columns: list[tuple[str, Any, list[Any]]] = [
            ("price", np.nan, [np.nan if p.price is None else p.price for p in products]),
            ("in_stock", False, [p.in_stock for p in products]),
            ("margin", 0.0, [0.0 if p.margin is None else p.margin for p in products]),
            ("boost", 0.0, [0.0 if p.boost is None else p.boost for p in products]),
            ("brand_codes", 0, [_code(p.brand.casefold(), self.brand_names, self.brand_code_of) for p in products]),
            (
                "category_codes",
                0,
                [_code(p.category.casefold(), self.category_names, self.category_code_of) for p in products],
            ),
        ]
        for name, fill, values in columns:
            setattr(self, name, _patched(getattr(previous, name), size, fill, rows, values))
        removed_rows = np.fromiter(delta.removed, dtype=np.int64, count=len(delta.removed))
        before = previous.removed
        if (
            before is not None
            and len(before) == size
            and int(before.sum()) == len(removed_rows)
            and (len(removed_rows) == 0 or bool(before[removed_rows].all()))
        ):
            self.removed = before
        else:
            removed = np.zeros(size, dtype=bool)
            removed[removed_rows] = True
            self.removed = removed
        groups = getattr(previous, "picture_groups", None)
        if groups is not None and len(groups) < size:  # a new product's picture groups with itself
            grown = np.arange(len(groups), size, dtype=groups.dtype)
            self.picture_groups = np.concatenate([groups, grown])
            self.picture_shared = np.concatenate([previous.picture_shared, np.zeros(len(grown), dtype=bool)])
        elif groups is not None:
            self.picture_groups, self.picture_shared = groups, previous.picture_shared
        self.selections = SelectionCache()
        self.fields = _patched_fields(previous.fields, size, rows, products)

    def __len__(self) -> int:
        return self._size

    def product(self, row: int) -> Product:
        product = self._products.get(row)
        return product if product is not None else self._base.product(row)

    def brand(self, row: int) -> str:
        product = self._products.get(row)
        return product.brand if product is not None else self._base.brand(row)

    def category(self, row: int) -> str:
        product = self._products.get(row)
        return product.category if product is not None else self._base.category(row)

    def to_result(self, row: int) -> dict[str, Any]:
        product = self._products.get(row)
        if product is None:
            return self._base.to_result(row)
        # Built like the version's rows: the public understood fields (the image as given), then
        # the public attributes.
        public = {name for name, _ in self._result_columns}
        result = {
            name: value
            for name in _RESULT_FIELDS
            if name in public
            and (value := (product.image_source or product.image if name == "image" else getattr(product, name)))
            is not None
            and value != ""
        }
        for key, value in product.attributes.items():
            if key in self._public_attributes:
                result.setdefault(key, value)
        return result


class LiveVectors:
    """Row → vector: the version's (memory-mapped) matrix, with the delta's rows taking precedence."""

    def __init__(self, base: np.ndarray, delta_rows: np.ndarray, delta: np.ndarray | None, size: int) -> None:
        self.base = base
        self.delta_rows = delta_rows
        self.delta = delta
        self.dtype = base.dtype
        self.shape = (size, base.shape[1])
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[np.arange(self.shape[0])], dtype=dtype)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows], dtype=np.int64)][0]
        rows = np.asarray(rows, dtype=np.int64)
        if self.delta is None or len(self.delta_rows) == 0:
            if len(rows) and rows.max(initial=0) >= len(self.base):
                out = np.zeros((len(rows), self.shape[1]), dtype=np.float32)
                inside = rows < len(self.base)
                out[inside] = self.base[rows[inside]]
                return out
            return self.base[rows]
        at = np.minimum(np.searchsorted(self.delta_rows, rows), len(self.delta_rows) - 1)
        hit = self.delta_rows[at] == rows
        if not hit.any():
            return self.base[rows]
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        miss = ~hit
        if miss.any():
            out[miss] = self.base[rows[miss]]
        out[hit] = self.delta[at[hit]]
        return out


class _BaseView:
    """Which of the version's rows its own indexes may still return, in the forms they take."""

    def __init__(self, size: int, hidden: np.ndarray) -> None:
        self.size = size
        self.hidden_rows = np.flatnonzero(hidden).astype(np.int64)
        self._visible = RowSelection(~hidden) if len(self.hidden_rows) > OVERFETCH_LIMIT else None
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def overfetch(self) -> int:
        """How many more rows to ask for (hidden rows then dropped); 0 when a mask hides them."""
        return len(self.hidden_rows) if self._visible is None else 0

    def selection(self, allowed: Any) -> RowSelection | None:
        """The version's allowed rows for a live selection (None: all), hidden rows masked when many."""
        if allowed is None:
            return self._visible
        if isinstance(allowed, RowSelection):
            known = self._cache.get(allowed)
            if known is None:
                known = self._cache[allowed] = self._base_selection(allowed.mask)
            return known
        return self._base_selection(np.asarray(allowed, dtype=bool))

    def _base_selection(self, mask: np.ndarray) -> RowSelection:
        mask = mask[: self.size]
        return RowSelection(mask & self._visible.mask if self._visible is not None else mask)

    def drop_hidden(self, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._visible is not None or len(self.hidden_rows) == 0 or len(rows) == 0:
            return rows, scores
        keep = ~np.isin(rows, self.hidden_rows)
        return rows[keep], scores[keep]


def _delta_mask(allowed: Any, delta_rows: np.ndarray, delta_live: np.ndarray) -> np.ndarray:
    if allowed is None:
        return delta_live
    mask = allowed.mask if isinstance(allowed, RowSelection) else np.asarray(allowed, dtype=bool)
    return delta_live & mask[delta_rows]


def _merge(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    if len(second[0]) == 0:
        return first[0][:k], first[1][:k]
    rows = np.concatenate([first[0], second[0]]).astype(np.int64)
    scores = np.concatenate([first[1], second[1]]).astype(np.float32)
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


class LiveAnn:
    """The version's ANN index beside an exact scan of the delta's vectors, merged by score."""

    def __init__(
        self,
        base: Any,
        view: _BaseView,
        delta_rows: np.ndarray,
        delta_matrix: np.ndarray,
        delta_live: np.ndarray,
        size: int,
    ) -> None:
        self._base = base
        self._view = view
        self._rows = delta_rows
        self._matrix = delta_matrix
        self._live = delta_live
        self._size = size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __len__(self) -> int:
        return self._size

    def search(self, query: np.ndarray, k: int, allowed: Any = None, **options: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows of the live catalogue (see ``AnnIndex.search``; ``options`` go to it)."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        base_rows, base_scores = self._base.search(
            query, k + self._view.overfetch, self._view.selection(allowed), **options
        )
        found = self._view.drop_hidden(base_rows, base_scores)
        live = _delta_mask(allowed, self._rows, self._live)
        if not live.any():
            return found[0][:k], found[1][:k]
        scores = self._matrix @ query  # every delta row: cheaper than gathering the allowed ones
        return _merge(found, top_k(self._rows[live], scores[live], k), k)


class LiveLexical:
    """The version's BM25 index beside the delta's, merged by score (the same BM25 scale)."""

    def __init__(
        self,
        base: LexicalIndex,
        view: _BaseView,
        delta: DeltaLexical | None,
        delta_live: np.ndarray,
        size: int,
    ) -> None:
        self._base = base
        self._view = view
        self._delta = delta
        self._live = delta_live
        self.size = size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def tokens(self, query: str, *args: Any, **options: Any) -> list[str]:
        known = self._base.tokens(query, *args, **options)
        if self._delta is None:
            return known
        extra = [token for token in self._delta.tokens(query) if token not in known]
        return known + extra

    _OWN = frozenset({"_base", "_view", "_delta", "_live", "size"})

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings made on the index (e.g. by the engine) belong to the version's own index.
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._base, name, value)

    def top(
        self, query: str, k: int, allowed: Any = None, excluded: np.ndarray | None = None, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best live rows by BM25 (see ``LexicalIndex.top``; ``options`` go to it).

        The delta matches the query's exact tokens.
        """
        excluded = np.asarray(excluded if excluded is not None else [], dtype=np.int64)
        base_excluded = excluded[excluded < self._view.size]
        if self._view.overfetch:
            base_excluded = np.union1d(base_excluded, self._view.hidden_rows)
        found = self._base.top(
            query, k, self._view.selection(allowed), base_excluded if len(base_excluded) else None, **options
        )
        if self._delta is None:
            return found
        live = _delta_mask(allowed, self._delta.rows, self._live)
        if len(excluded):
            live = live & ~np.isin(self._delta.rows, excluded)
        return _merge(found, self._delta.top(query, k, live), k)

    def search(self, query: str, k: int, allowed: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self.top(query, k, allowed)

    def scores_of(self, query: str, rows: np.ndarray, **options: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self._delta is None or len(self._delta.rows) == 0:
            inside = rows < self._view.size
            if inside.all():
                return self._base.scores_of(query, rows, **options)
            out = np.zeros(len(rows), dtype=np.float32)
            out[inside] = self._base.scores_of(query, rows[inside], **options)
            return out
        at = np.minimum(np.searchsorted(self._delta.rows, rows), len(self._delta.rows) - 1)
        hit = self._delta.rows[at] == rows
        out = np.zeros(len(rows), dtype=np.float32)
        miss = ~hit & (rows < self._view.size)
        if miss.any():
            out[miss] = self._base.scores_of(query, rows[miss], **options)
        if hit.any():
            out[hit] = self._delta.scores(query)[at[hit]]
        return out


class DeltaLexical:
    """BM25 over the delta's texts with the version's statistics, so scores compare with its own.

    Lucene's BM25 as ``bm25s`` computes it (k1 = 1.5, b = 0.75): a token's IDF comes from its
    document frequency in the version plus in the delta, lengths are normalised by the version's
    average (estimated on a sample of its products). Postings hold (row, term frequency, length)
    and weights are computed at query time for the query's tokens only, so adding a product
    touches only its own tokens' postings (``updated``); each snapshot's postings are immutable.
    """

    K1 = 1.5
    B = 0.75

    def __init__(
        self,
        rows: np.ndarray,
        postings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        tokens_of: dict[int, tuple[str, ...]],
        base: LexicalIndex,
        avgdl: float,
    ) -> None:
        self.rows = rows
        self._postings = postings
        self._tokens_of = tokens_of
        self._base = base
        self._avgdl = avgdl
        self.tokenizer_version = base.tokenizer_version
        self._last: tuple[str, np.ndarray] = ("", np.zeros(len(rows), dtype=np.float32))

    @classmethod
    def updated(
        cls,
        previous: DeltaLexical | None,
        rows: np.ndarray,
        texts: dict[int, str],
        removed: Iterable[int],
        base: LexicalIndex,
        avgdl: float,
    ) -> DeltaLexical:
        """``previous`` with the texts of ``texts``' rows replaced and ``removed`` rows' dropped.

        Args:
            previous: the last snapshot's index (None: empty).
            rows: every delta row with its own text now (ascending).
            texts: row → its new text.
            removed: rows whose text is the version's again (their delta postings go).
            base: the version's BM25 index (IDF).
            avgdl: the version's average length.
        """
        postings = dict(previous._postings) if previous is not None else {}
        tokens_of = dict(previous._tokens_of) if previous is not None else {}
        replaced = [row for row in [*texts, *removed] if row in tokens_of]
        touched: dict[str, list[int]] = {}
        for row in replaced:
            for token in tokens_of.pop(row):
                touched.setdefault(token, []).append(row)
        for token, gone in touched.items():
            token_rows, tfs, lengths = postings[token]
            keep = ~np.isin(token_rows, gone)
            if keep.any():
                postings[token] = (token_rows[keep], tfs[keep], lengths[keep])
            else:
                del postings[token]
        added: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for row, text in texts.items():
            counts = Counter(tokenize(text) or [EMPTY_DOCUMENT_TOKEN])
            length = sum(counts.values())
            tokens_of[row] = tuple(counts)
            for token, tf in counts.items():
                entry = added.setdefault(token, ([], [], []))
                entry[0].append(row)
                entry[1].append(tf)
                entry[2].append(length)
        for token, (token_rows, tfs, lengths) in added.items():
            new = (np.array(token_rows, np.int64), np.array(tfs, np.float32), np.array(lengths, np.float32))
            known = postings.get(token)
            if known is not None:
                new = tuple(np.concatenate([a, b]) for a, b in zip(known, new, strict=True))  # type: ignore[assignment]
            postings[token] = new
        return cls(rows, postings, tokens_of, base, avgdl)

    def tokens(self, query: str) -> list[str]:
        return [token for token in query_tokens(query, self.tokenizer_version) if token in self._postings]

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every delta row (aligned with ``rows``) for ``query``."""
        last_query, last_scores = self._last
        if query == last_query:
            return last_scores
        scores = np.zeros(len(self.rows), dtype=np.float32)
        total = self._base.size + len(self._tokens_of)
        for token in self.tokens(query):
            token_rows, tfs, lengths = self._postings[token]
            df = self._base.document_frequency(token) + len(token_rows)
            idf = math.log(1 + (total - df + 0.5) / (df + 0.5))
            weights = idf * tfs / (tfs + self.K1 * (1 - self.B + self.B * lengths / self._avgdl))
            at = np.searchsorted(self.rows, token_rows)
            np.add.at(scores, at, weights.astype(np.float32))
        self._last = (query, scores)
        return scores

    def top(self, query: str, k: int, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = self.scores(query)
        keep = live & (scores > 0)
        return top_k(self.rows[keep], scores[keep], k)


class _Ids:
    """Row → product id: the version's ids, then the delta's new products."""

    def __init__(self, base: list[str], appended: list[str], count: int) -> None:
        self._base = base
        self._appended = appended
        self._split = len(base)
        self._count = count

    def __len__(self) -> int:
        return self._split + self._count

    def __getitem__(self, row: int) -> str:
        row = int(row)
        if row < self._split:
            return self._base[row]
        if row - self._split >= self._count:
            raise IndexError(row)
        return self._appended[row - self._split]

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from self._appended[: self._count]


class _RowMap(Mapping[str, int]):
    """Product id → row for products in the catalogue now (deleted ones are absent)."""

    def __init__(
        self, base: Mapping[str, int], appended: dict[str, int], removed: frozenset[int], ids: _Ids, size: int
    ) -> None:
        self._base = base
        self._appended = appended
        self._removed = removed
        self._ids = ids
        self._size = size

    def get(self, item_id: Any, default: Any = None) -> Any:
        row = self._appended.get(item_id)
        if row is None:
            row = self._base.get(item_id)
        if row is None or row >= self._size or row in self._removed:
            return default
        return row

    def __getitem__(self, item_id: str) -> int:
        row = self.get(item_id)
        if row is None:
            raise KeyError(item_id)
        return row

    def __contains__(self, item_id: object) -> bool:
        return self.get(item_id) is not None

    def __iter__(self) -> Iterator[str]:
        return (item_id for row, item_id in enumerate(self._ids) if row not in self._removed)

    def __len__(self) -> int:
        return len(self._ids) - len(self._removed)


class _Column:
    """Row → one field: the changed product's when the delta has one, else the version's."""

    def __init__(self, base: list[Any], products: dict[int, Product], field: str | None) -> None:
        self._base = base
        self._products = products
        self._field = field

    def __getitem__(self, row: int) -> Any:
        product = self._products.get(int(row))
        if product is None:
            return self._base[row] if int(row) < len(self._base) else ""
        return getattr(product, self._field) if self._field else product.content_hash()

    def __len__(self) -> int:
        return len(self._base) + sum(1 for row in self._products if row >= len(self._base))


def _patched(values: np.ndarray, size: int, fill: Any, rows: list[int], new: list[Any]) -> np.ndarray:
    """``values`` with ``rows`` set to ``new`` and grown to ``size``: the same array when nothing differs."""
    wanted = np.asarray(new, dtype=values.dtype)
    if len(values) == size:
        current = values[rows]
        same = (
            (current == wanted) | (np.isnan(current) & np.isnan(wanted))
            if values.dtype.kind == "f"
            else current == wanted
        )
        if bool(np.all(same)):
            return values
    out = _grown(values, size, fill) if len(values) != size else values.copy()
    out[rows] = wanted
    return out


def _grown(values: np.ndarray, size: int, fill: Any) -> np.ndarray:
    """A copy of ``values`` extended to ``size`` rows with ``fill``."""
    out = np.full(size, fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


def _code(name: str, names: list[str], code_of: dict[str, int]) -> int:
    code = code_of.get(name)
    if code is None:
        code = code_of[name] = len(names)
        names.append(name)
    return code


def _average_length(items: ItemTable) -> float:
    """The version's average product length in tokens, on an evenly spaced sample."""
    if len(items) == 0:
        return 1.0
    rows = np.unique(np.linspace(0, len(items) - 1, min(AVGDL_SAMPLE, len(items))).astype(np.int64))
    lengths = [len(tokenize(items.product(int(row)).embedding_text())) or 1 for row in rows]
    return float(np.mean(lengths))


_PRODUCT_FIELDS = ("brand", "category", "price", "in_stock", "margin", "boost", "title")


def _patched_fields(previous: FieldIndex, size: int, rows: list[int], products: list[Product]) -> FieldIndex:
    """The filter, facet and sort columns with the changed and appended rows' values."""
    columns = {}
    for name, column in previous.columns.items():
        if name in _PRODUCT_FIELDS:
            values = [getattr(product, name) for product in products]
        else:
            values = [product.attributes.get(name) for product in products]
        columns[name] = column.patched(size, rows, values)
    return FieldIndex(previous.schema, columns)
