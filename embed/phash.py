"""Perceptual hashes of product photos and the near-duplicate groups they define (NumPy, Pillow).

Shops upload the same picture for several products (colour variants photographed once,
re-listed items, a resized or recompressed copy from a supplier's feed). Two 64-bit hashes of
each picture catch those copies:

* ``phash``: the signs of the 8×8 lowest frequencies of a 32×32 grey thumbnail's DCT against
  their median: stable under resizing, recompression and mild colour changes;
* ``dhash``: whether each pixel of a 9×8 grey thumbnail is brighter than its right neighbour:
  a different view (gradients), so requiring both to be close avoids most chance matches.

Grey low frequencies alone also match different products photographed alike (the same model
in the same pose wearing two shirts, two sandals side by side), so a pair within both radii is
confirmed by two finer signatures: ``detail``, the 256 signs of the 16×16 lowest frequencies of a
64×64 thumbnail (prints, logos), and ``colour``, the CIELAB mean of a 4×4 grid (colour variants).

Everything is taken on the picture cropped to its content (the studio background trimmed, see
``aisle.embed.colours.background_mask``), so a copy cropped by a few percent at the borders, which
mostly removes background, hashes as the original. Groups are the connected components of the
near-duplicate relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from aisle.embed.colours import Thumbnail, srgb_to_lab

#: Largest pHash Hamming distance (of 64 bits) between near-duplicates.
PHASH_RADIUS = 16
#: Largest dHash Hamming distance (of 64 bits) between near-duplicates.
DHASH_RADIUS = 22
#: Largest Hamming distance of the 256-bit detail hashes.
DETAIL_RADIUS = 56
#: Largest mean CIELAB distance between the 4×4 colour grids.
COLOUR_RADIUS = 4.0
#: Margin kept around the content when the background is trimmed (share of the content box).
TRIM_MARGIN = 0.02


@dataclass(frozen=True)
class PictureHashes:
    """The signatures of one picture: two 64-bit hashes (signed int64, Parquet and NumPy
    friendly), the 32-byte detail hash and the 48-byte colour grid (L·2.55, a+128, b+128)."""

    phash: int
    dhash: int
    detail: bytes
    colour: bytes


@cache
def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` transforms a column, ``D @ X @ D.T`` an image."""
    n = np.arange(size)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size)) * np.sqrt(2 / size)
    matrix[0] /= np.sqrt(2)
    return matrix


def _bits_to_int64(bits: np.ndarray) -> int:
    packed = np.packbits(bits.astype(np.uint8).ravel(), bitorder="big")
    return int(packed.view(">u8")[0].astype(np.int64)) if packed.size == 8 else 0


#: Pictures are reduced to at most this size before hashing: the hashes read 64 px at most.
HASH_INPUT = 256


def content_box(image: Image.Image, thumbnail: Thumbnail | None = None) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` of the picture without its studio background, or None."""
    thumbnail = thumbnail or Thumbnail.of(image)
    background = thumbnail.background
    rows = np.flatnonzero(~background.all(axis=1))
    columns = np.flatnonzero(~background.all(axis=0))
    if not background.any() or len(rows) == 0:
        return None
    scale_y, scale_x = image.height / background.shape[0], image.width / background.shape[1]
    top, bottom = rows[0] * scale_y, (rows[-1] + 1) * scale_y
    left, right = columns[0] * scale_x, (columns[-1] + 1) * scale_x
    pad_y, pad_x = (bottom - top) * TRIM_MARGIN, (right - left) * TRIM_MARGIN
    box = (
        max(0, int(left - pad_x)),
        max(0, int(top - pad_y)),
        min(image.width, int(np.ceil(right + pad_x))),
        min(image.height, int(np.ceil(bottom + pad_y))),
    )
    return box if box[2] - box[0] >= 4 and box[3] - box[1] >= 4 else None


def picture_hashes(image: Image.Image, thumbnail: Thumbnail | None = None) -> PictureHashes:
    """The signatures of ``image`` cropped to its content (see the module docstring)."""
    box = content_box(image, thumbnail)
    content = (image.crop(box) if box is not None else image).convert("RGB")
    if max(content.size) > HASH_INPUT:
        content = content.reduce(max(1, max(content.size) // HASH_INPUT))
    grey = content.convert("L")
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = _dct_matrix(32)
    low = (dct @ small @ dct.T)[:8, :8].ravel()
    phash_bits = low > np.median(low[1:])
    gradient = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    dhash_bits = gradient[:, 1:] > gradient[:, :-1]
    fine = np.asarray(grey.resize((64, 64), Image.Resampling.LANCZOS), dtype=np.float64)
    dct64 = _dct_matrix(64)
    detail = (dct64 @ fine @ dct64.T)[:16, :16].ravel()
    detail_bits = np.packbits(detail > np.median(detail[1:]))
    grid = srgb_to_lab(np.asarray(content.resize((4, 4), Image.Resampling.BOX))).reshape(-1, 3)
    colour = np.clip(np.round(grid * np.array([2.55, 1, 1]) + np.array([0, 128, 128])), 0, 255).astype(np.uint8)
    return PictureHashes(
        _bits_to_int64(phash_bits), _bits_to_int64(dhash_bits), detail_bits.tobytes(), colour.tobytes()
    )


_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def hamming(left: np.ndarray | int, right: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distances between int64 hashes (broadcasting)."""
    xor = np.bitwise_xor(np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64))
    return _POPCOUNT[xor.view(np.uint8).reshape(*xor.shape, 8)].sum(axis=-1, dtype=np.int64)


@dataclass(frozen=True)
class HashTable:
    """The signatures of many pictures, column-wise (see :class:`PictureHashes`)."""

    phash: np.ndarray  # (n,) int64
    dhash: np.ndarray  # (n,) int64
    detail: np.ndarray  # (n, 32) uint8
    colour: np.ndarray  # (n, 48) uint8

    @classmethod
    def of(cls, hashes: list[PictureHashes]) -> HashTable:
        return cls(
            np.array([h.phash for h in hashes], dtype=np.int64),
            np.array([h.dhash for h in hashes], dtype=np.int64),
            np.frombuffer(b"".join(h.detail for h in hashes), dtype=np.uint8).reshape(len(hashes), 32),
            np.frombuffer(b"".join(h.colour for h in hashes), dtype=np.uint8).reshape(len(hashes), 48),
        )

    def __len__(self) -> int:
        return len(self.phash)

    def take(self, rows: np.ndarray) -> HashTable:
        return HashTable(self.phash[rows], self.dhash[rows], self.detail[rows], self.colour[rows])


def near_duplicate_pairs(table: HashTable) -> np.ndarray:
    """``(m, 2)`` row pairs ``i < j`` whose pictures are near-duplicates.

    FAISS's binary index finds every pHash neighbour within the radius (exact, SIMD popcount
    over all pairs in blocks); the dHash, detail and colour conditions then confirm those few.
    """
    import faiss

    phashes = table.phash
    count = len(phashes)
    if count < 2:
        return np.empty((0, 2), dtype=np.int64)
    codes = np.ascontiguousarray(np.asarray(phashes, dtype=np.int64)).view(np.uint8).reshape(count, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    pairs = []
    block = 4096
    for start in range(0, count, block):
        limits, _, found = index.range_search(codes[start : start + block], PHASH_RADIUS + 1)
        sizes = np.diff(limits).astype(np.int64)
        left = np.repeat(np.arange(start, start + len(sizes)), sizes)
        keep = found > left
        pairs.append(np.stack([left[keep], found[keep]], axis=1))
    candidates = np.concatenate(pairs).astype(np.int64)
    left, right = candidates[:, 0], candidates[:, 1]
    close = hamming(table.dhash[left], table.dhash[right]) <= DHASH_RADIUS
    left, right = left[close], right[close]
    detail = _POPCOUNT[np.bitwise_xor(table.detail[left], table.detail[right])].sum(axis=1, dtype=np.int64)
    grid_step = table.colour[left].astype(np.float32) - table.colour[right].astype(np.float32)
    lab_step = grid_step.reshape(len(left), 16, 3) / np.array([2.55, 1, 1], dtype=np.float32)
    colour = np.linalg.norm(lab_step, axis=2).mean(axis=1)
    keep = (detail <= DETAIL_RADIUS) & (colour <= COLOUR_RADIUS)
    return np.stack([left[keep], right[keep]], axis=1)


def near_duplicate_groups(table: HashTable, present: np.ndarray | None = None) -> np.ndarray:
    """A group number per row: rows with near-duplicate pictures share one, every other row has its own.

    Args:
        table: the signatures, one row per product.
        present: rows that have a picture (others never join a group); None: all.

    Returns:
        int64 array: the smallest row of each row's group (so a row alone has its own number).
    """
    count = len(table)
    parent = np.arange(count, dtype=np.int64)
    rows = np.arange(count) if present is None else np.flatnonzero(present)
    if len(rows) < 2:
        return parent
    pairs = rows[near_duplicate_pairs(table.take(rows))]

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = int(parent[row])
        return row

    for left, right in pairs.tolist():
        a, b = root(left), root(right)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(row) for row in range(count)], dtype=np.int64)
