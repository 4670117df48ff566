"""Product pictures at build time: read each once, then colours, signatures and image vectors.

A product's ``image`` is a file path (made absolute against the catalogue's directory when the
catalogue is loaded) or an ``http(s)`` URL. URLs are fetched only when the shop allows it
(``image_fetch_urls``, off by default: a build should not depend on, or hammer, a web server).
Every picture ends in one status, counted in the build report:

* ``ok``: decoded and analysed (and encoded, with an image model);
* ``none``: the product has no image;
* ``missing``: the file does not exist;
* ``unreadable``: the file (or download) is not a picture Pillow can decode;
* ``url_not_fetched``: a URL while fetching is off;
* ``fetch_failed``: the download failed (HTTP error, timeout, too large).

What comes out (``pictures.parquet`` in the version, row-aligned with the items): the status,
the dominant colours (``aisle.embed.colours``), the near-duplicate signatures and the group of
each picture (``aisle.embed.phash``), and its key: the file's path, size and modification time
(a URL: the URL itself, as shops' CDNs publish a changed picture under a new URL). A rebuild
takes the colours, signatures and image vector (same image model) of every picture whose key is
unchanged from the current version instead of reading it again; groups are always recomputed. The primary colour also becomes the product attribute
``image_colour`` (unless the catalogue has that column), an ordinary attribute that filters
and facets can use.
"""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from aisle.embed.base import ImageEncoder
from aisle.embed.images import IMAGE_ERRORS
from aisle.embed.phash import HashTable, PictureHashes, near_duplicate_groups
from aisle.embed.picture import analyse_picture
from aisle.index.catalog import Product

log = logging.getLogger(__name__)

STATUSES = ("ok", "none", "missing", "unreadable", "url_not_fetched", "fetch_failed")
#: The product attribute the primary picture colour is stored under.
COLOUR_ATTRIBUTE = "image_colour"
_EMPTY_HASHES = PictureHashes(0, 0, bytes(32), bytes(48))
#: Pictures are decoded at no more than about this size (JPEG draft mode): enough for colours,
#: signatures and a CLIP model's 224-448 px input, and much faster for shop photos of 2000+ px.
_DECODE_SIZE = (1024, 1024)
#: Without an image model, colours and signatures read 256 px at most.
_DECODE_SIZE_NO_MODEL = (512, 512)


@dataclass(frozen=True)
class PictureOptions:
    """How a build reads pictures.

    Attributes:
        fetch_urls: download ``http(s)`` images (off by default).
        fetch_timeout_s: per-download timeout.
        max_download_bytes: larger downloads are refused (``fetch_failed``).
        batch_size: pictures per image-model call.
    """

    fetch_urls: bool = False
    fetch_timeout_s: float = 10.0
    max_download_bytes: int = 20_000_000
    batch_size: int = 32


@dataclass
class PictureResults:
    """Per product row: status, colours, signatures, near-duplicate group and (with a model) vector."""

    status: list[str]
    colours: list[list[str]]
    hashes: HashTable
    groups: np.ndarray
    vectors: np.ndarray | None = None
    keys: list[str] | None = None
    #: How many pictures were taken from the previous version instead of being read.
    reused: int = 0

    @property
    def ok(self) -> np.ndarray:
        return np.array([status == "ok" for status in self.status], dtype=bool)

    def counts(self) -> dict[str, int]:
        """Products per status (every status present, zeros included)."""
        counted = Counter(self.status)
        return {status: counted.get(status, 0) for status in STATUSES}

    def summary(self) -> str:
        """One line for the build's output, e.g. ``820 of 835 pictures read (15 missing)``."""
        counts = self.counts()
        with_image = len(self.status) - counts["none"]
        problems = [f"{counts[name]} {name.replace('_', ' ')}" for name in STATUSES[2:] if counts[name]]
        line = f"{counts['ok']} of {with_image} pictures read" + (f" ({', '.join(problems)})" if problems else "")
        return line + (f", {self.reused} of them re-used from the current version" if self.reused else "")


@dataclass
class PreviousPictures:
    """What the current version knows of each picture key (only pictures read successfully)."""

    row_of_key: dict[str, int]
    colours: list[str]
    hashes: HashTable
    #: The image vectors, when the current version's image space has the fingerprint asked for.
    vectors: np.ndarray | None = None

    @classmethod
    def open(cls, version: Path, image_fingerprint: str | None) -> PreviousPictures | None:
        """Reads the current version's pictures (verified against its manifest), or None."""
        import pyarrow.parquet as pq

        from aisle.index.manifest import read_manifest, require_listed
        from aisle.index.storage import sha256_file

        try:
            manifest = read_manifest(version)
            entry = manifest.get("pictures")
            if not isinstance(entry, dict):
                return None
            path = require_listed(version, manifest, entry["file"])
            if sha256_file(path) != manifest["files"][entry["file"]]["sha256"]:
                raise ValueError(f"{entry['file']} fails its checksum")
            table = pq.read_table(path).to_pydict()
            if "key" not in table:
                return None
            vectors = None
            space = manifest.get("spaces", {}).get("image")
            if (
                image_fingerprint is not None
                and isinstance(space, dict)
                and space.get("fingerprint") == image_fingerprint
            ):
                vectors_path = require_listed(version, manifest, space["vectors"])
                if sha256_file(vectors_path) != manifest["files"][space["vectors"]]["sha256"]:
                    raise ValueError(f"{space['vectors']} fails its checksum")
                vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot re-use the pictures of %s (%s); every picture is read", version.name, exc)
            return None
        row_of_key = {
            key: row for row, (key, status) in enumerate(zip(table["key"], table["status"])) if key and status == "ok"
        }
        hashes = HashTable(
            np.asarray(table["phash"], dtype=np.int64),
            np.asarray(table["dhash"], dtype=np.int64),
            np.frombuffer(b"".join(table["detail"]), dtype=np.uint8).reshape(-1, 32),
            np.frombuffer(b"".join(table["colour_grid"]), dtype=np.uint8).reshape(-1, 48),
        )
        return cls(row_of_key, table["colours"], hashes, vectors)


def picture_key(reference: str) -> tuple[str, str | None]:
    """``(key, status)``: a file's path, size and modification time (status ``missing`` when it
    does not exist), a URL as is, ``""`` for no image."""
    if not reference or "://" in reference:
        return reference, None
    try:
        stat = Path(reference).stat()
    except OSError:
        return "", "missing"
    return f"{reference}|{stat.st_size}|{stat.st_mtime_ns}", None


def is_url(reference: str) -> bool:
    return reference.startswith(("http://", "https://"))


def resolve_reference(reference: str, base_dir: Path | None) -> str:
    """A relative file path made absolute against the catalogue's directory; URLs as they are.

    The catalogue loader already does this today; doing it here too keeps pictures readable if
    the stored ``image`` becomes the catalogue's value as given.
    """
    if not reference or "://" in reference or base_dir is None or Path(reference).is_absolute():
        return reference
    return str((base_dir / Path(reference).expanduser()).resolve())


def open_picture(
    reference: str, options: PictureOptions, decode_size: tuple[int, int] = _DECODE_SIZE
) -> tuple[Image.Image | None, str]:
    """Decodes one product picture; ``(None, status)`` when it cannot be had (see the module).

    JPEGs are decoded at a reduced scale when they are much larger than ``decode_size`` (draft
    mode: a 2000 px photo costs a fraction of a full decode)."""
    if not reference:
        return None, "none"
    if "://" in reference:
        if not is_url(reference):
            log.warning("skipping image %s: only http(s) URLs are fetched", reference)
            return None, "fetch_failed"
        if not options.fetch_urls:
            return None, "url_not_fetched"
        payload = _download(reference, options)
        if payload is None:
            return None, "fetch_failed"
        source: io.BytesIO | Path = io.BytesIO(payload)
    else:
        source = Path(reference)
        if not source.is_file():
            return None, "missing"
    try:
        with Image.open(source) as image:
            image.draft("RGB", decode_size)
            image.load()
            return image.copy(), "ok"  # closing the file invalidates the image itself
    except IMAGE_ERRORS as error:
        log.warning("skipping image %s: %s: %s", reference, type(error).__name__, error)
        return None, "unreadable"


def _download(url: str, options: PictureOptions) -> bytes | None:
    request = urllib.request.Request(url, headers={"User-Agent": "aisle-build"})
    try:
        with urllib.request.urlopen(request, timeout=options.fetch_timeout_s) as response:
            payload = response.read(options.max_download_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        log.warning("skipping image %s: download failed: %s", url, error)
        return None
    if len(payload) > options.max_download_bytes:
        log.warning("skipping image %s: larger than %d bytes", url, options.max_download_bytes)
        return None
    return payload


def analyse_pictures(
    products: list[Product],
    options: PictureOptions = PictureOptions(),
    encoder: ImageEncoder | None = None,
    *,
    show_progress: bool = False,
    previous: PreviousPictures | None = None,
    base_dir: Path | None = None,
) -> PictureResults:
    """Reads every product's picture once (or takes it from ``previous``) and derives everything
    a version keeps of it. Relative paths are read from ``base_dir`` (the catalogue's folder)."""
    count = len(products)
    references = [resolve_reference(product.image, base_dir) for product in products]
    status = ["none"] * count
    colours: list[list[str]] = [[] for _ in range(count)]
    hashes = [_EMPTY_HASHES] * count
    vectors = np.zeros((count, encoder.dim), dtype=np.float32) if encoder is not None else None
    keys = [""] * count
    to_read = []
    reused = 0
    for row, reference in enumerate(references):
        if not reference:
            continue
        keys[row], known_status = picture_key(reference)
        old = previous.row_of_key.get(keys[row]) if previous is not None and keys[row] else None
        if known_status is not None:
            status[row] = known_status
        elif old is not None and previous is not None and (encoder is None or previous.vectors is not None):
            status[row], colours[row] = "ok", [name for name in previous.colours[old].split(",") if name]
            table = previous.hashes
            hashes[row] = PictureHashes(
                int(table.phash[old]), int(table.dhash[old]), table.detail[old].tobytes(), table.colour[old].tobytes()
            )
            if vectors is not None and previous.vectors is not None:
                vectors[row] = previous.vectors[old]
            reused += 1
        else:
            to_read.append(row)
    decode_size = _DECODE_SIZE if encoder is not None else _DECODE_SIZE_NO_MODEL
    progress = _progress(len(to_read), show_progress)
    try:
        for batch in _batches(to_read, options.batch_size):
            decoded: list[tuple[int, Image.Image]] = []
            for row in batch:
                image, status[row] = open_picture(references[row], options, decode_size)
                if image is not None:
                    decoded.append((row, image))
            for row, image in decoded:
                features = analyse_picture(image)
                colours[row], hashes[row] = features.colours, features.hashes
            if vectors is not None and encoder is not None and decoded:
                vectors[[row for row, _ in decoded]] = encoder.encode_pictures([image for _, image in decoded])
            if progress is not None:
                progress.update(len(batch))
    finally:
        if progress is not None:
            progress.close()
    table = HashTable.of(hashes)
    ok = np.array([value == "ok" for value in status], dtype=bool)
    return PictureResults(status, colours, table, near_duplicate_groups(table, ok), vectors, keys, reused)


def _batches(rows: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _progress(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="reading pictures", unit="img")


def with_colour_attribute(products: list[Product], results: PictureResults) -> list[Product]:
    """The products with ``image_colour`` set from their picture (a catalogue column wins)."""
    from dataclasses import replace

    out = []
    for product, names in zip(products, results.colours):
        if names and COLOUR_ATTRIBUTE not in product.attributes:
            product = replace(product, attributes={**product.attributes, COLOUR_ATTRIBUTE: names[0]})
        out.append(product)
    return out


def write_pictures(path: Path, results: PictureResults) -> None:
    """Writes ``pictures.parquet``: one row per product, in row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = results.hashes
    pq.write_table(
        pa.table(
            {
                "status": pa.array(results.status, pa.string()),
                "colours": pa.array([",".join(names) for names in results.colours], pa.string()),
                "phash": pa.array(table.phash, pa.int64()),
                "dhash": pa.array(table.dhash, pa.int64()),
                "detail": pa.array([row.tobytes() for row in table.detail], pa.binary(32)),
                "colour_grid": pa.array([row.tobytes() for row in table.colour], pa.binary(48)),
                "group": pa.array(results.groups, pa.int64()),
                "key": pa.array(results.keys or [""] * len(results.status), pa.string()),
            }
        ),
        path,
    )


def read_picture_groups(path: Path, count: int) -> np.ndarray:
    """The near-duplicate group of every row (``pictures.parquet``'s ``group`` column).

    Raises:
        ValueError: the file does not have one group per row.
    """
    import pyarrow.parquet as pq

    groups = np.asarray(pq.read_table(path, columns=["group"]).column("group").to_numpy(), dtype=np.int64)
    if len(groups) != count or (len(groups) and (groups.min() < 0 or groups.max() >= count)):
        raise ValueError(f"{path.name} has {len(groups)} picture groups for {count} items")
    return groups
