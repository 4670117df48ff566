"""What a rebuild may take from the current version instead of recomputing it.

* Vectors, per product: a product whose embedded fields hash the same (``Product.content_hash``)
  gets the same vector from the same model, so only new and changed products are encoded.
* Whole files: when every product's hash is unchanged and in the same order (a nightly run where
  only prices and stock moved), the vectors file, the FAISS index (same parameters) and the BM25
  index (built by the same code, see ``build.lexical_signature``) would come out identical, so
  they are hard-linked from the current version (copied where links are impossible) after their
  checksums are verified. Versions never modify a file in place, so sharing is safe, and each
  version's manifest still checksums every file it holds.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.items import read_content_hashes
from aisle.index.manifest import IndexValidationError, read_manifest, resolve_member
from aisle.index.storage import sha256_file
from aisle.index.versions import VersionError, VersionStore

log = logging.getLogger(__name__)


@dataclass
class PreviousVersion:
    """The current version's artefacts that a rebuild with the same model can re-use."""

    path: Path
    manifest: dict[str, Any]
    content_hashes: list[str]
    vectors: np.ndarray
    #: Files already read and found intact: relative path → sha256.
    verified: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, store: VersionStore, fingerprint: str, dim: int) -> PreviousVersion | None:
        """The current version, if it exists, is readable and was built with this model."""
        try:
            path = store.current_path().resolve()
            manifest = read_manifest(path)
        except (IndexValidationError, VersionError, OSError):
            return None
        space = manifest.get("spaces", {}).get("text", {})
        if space.get("fingerprint") != fingerprint or space.get("dim") != dim:
            log.info("the current version used another model; every product is encoded")
            return None
        try:
            # A damaged file must not leak into the new version: both are verified first.
            verified = {
                relative: _verified_checksum(path, manifest, relative)
                for relative in (space["vectors"], manifest["items"])
            }
            vectors = np.load(resolve_member(path, space["vectors"]), mmap_mode="r", allow_pickle=False)
            hashes = read_content_hashes(resolve_member(path, manifest["items"]))
        except (OSError, ValueError, KeyError, TypeError, IndexValidationError) as exc:
            log.warning("cannot re-use vectors of %s (%s); every product is encoded", path.name, exc)
            return None
        if vectors.ndim != 2 or vectors.shape != (len(hashes), dim) or vectors.dtype != np.float32:
            log.warning("vectors of %s do not match its items; every product is encoded", path.name)
            return None
        return cls(path, manifest, hashes, vectors, verified)

    def rows_by_hash(self) -> dict[str, int]:
        """content hash → a row of the previous version holding that vector."""
        return {content_hash: row for row, content_hash in enumerate(self.content_hashes)}

    def same_products(self, content_hashes: list[str]) -> bool:
        """True when the new build embeds exactly the same texts in the same row order."""
        return self.content_hashes == content_hashes

    def index_params(self) -> dict[str, Any]:
        return dict(self.manifest["spaces"]["text"]["index"])

    def link_verified(self, relative: str, destination: Path) -> str | None:
        """Hard-links (or copies) one of this version's files to ``destination`` if it is intact.

        Returns:
            The file's sha256, or None when it fails its checksum (nothing is written then).
        """
        try:
            checksum = self.verified.get(relative) or _verified_checksum(self.path, self.manifest, relative)
            source = resolve_member(self.path, relative)
        except (OSError, ValueError, IndexValidationError) as exc:
            log.warning("cannot re-use %s/%s (%s); rebuilding it", self.path.name, relative, exc)
            return None
        try:
            os.link(source, destination)
        except OSError:  # another file system, or links not allowed: a copy is as good
            shutil.copyfile(source, destination)
        return checksum

    def link_tree_verified(self, relative_dir: str, destination: Path) -> dict[str, str] | None:
        """Links every file the manifest lists under ``relative_dir`` into ``destination``.

        Returns:
            ``{path relative to destination: sha256}``, or None (and nothing left behind) when
            a file is missing or fails its checksum.
        """
        prefix = relative_dir.rstrip("/") + "/"
        members = [name for name in self.manifest.get("files", {}) if name.startswith(prefix)]
        if not members:
            return None
        checksums: dict[str, str] = {}
        for relative in members:
            target = destination / relative[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            checksum = self.link_verified(relative, target)
            if checksum is None:
                shutil.rmtree(destination, ignore_errors=True)
                return None
            checksums[relative[len(prefix) :]] = checksum
        return checksums


def _verified_checksum(version: Path, manifest: dict[str, Any], relative: str) -> str:
    """The sha256 of a version's file after checking it against the manifest.

    Raises:
        ValueError: the file is not listed, or its content does not match.
        OSError: the file cannot be read.
    """
    entry = manifest.get("files", {}).get(relative)
    if not isinstance(entry, dict):
        raise ValueError(f"{relative} is not listed in the manifest")
    checksum = sha256_file(resolve_member(version, relative))
    if checksum != entry.get("sha256"):
        raise ValueError(f"{relative} fails its sha256 checksum")
    return checksum
