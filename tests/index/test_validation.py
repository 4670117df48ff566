"""A loaded version is validated before use: each kind of damage is refused with a clear message."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from aisle.index.ann import AnnParams
from aisle.index.loaded import LoadedIndex
from aisle.index.manifest import IndexValidationError
from tests.fakes import HashingEncoder
from tests.index.conftest import build, small_products

ENCODER = HashingEncoder(32)


@pytest.fixture
def version(tmp_path: Path) -> Path:
    return build(tmp_path / "root", small_products(), ENCODER).path


def edit_manifest(version: Path, change: Callable[[dict], None]) -> None:
    path = version / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def refused(version: Path, **kwargs) -> str:
    with pytest.raises(IndexValidationError) as caught:
        LoadedIndex.load(version, **kwargs)
    return str(caught.value)


def test_an_intact_version_loads_and_answers(version: Path) -> None:
    index = LoadedIndex.load(version, expected_fingerprint=ENCODER.fingerprint)
    assert len(index) == 40 and index.version == version.name
    assert index.items.ids[:2] == ["p0", "p1"]
    rows, _ = index.text.ann.search(ENCODER.encode_queries([small_products()[7].embedding_text()])[0], 1)
    assert index.items.ids[rows[0]] == "p7"


def test_manifest_describes_the_version(version: Path) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["count"] == 40
    assert manifest["model"] == {"name": ENCODER.name, "fingerprint": ENCODER.fingerprint}
    assert manifest["spaces"]["text"]["dim"] == 32
    assert manifest["spaces"]["text"]["index"] == AnnParams(type="flat").to_dict()
    assert set(AnnParams().to_dict()) == {"type", "hnsw_m", "ef_construction", "ef_search", "ivf_lists", "nprobe"}
    assert manifest["created"].endswith("+00:00")
    on_disk = {p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert {"ids.json", "items.parquet", "vectors.text.npy", "index.text.faiss"} <= on_disk
    assert all(len(entry["sha256"]) == 64 and entry["bytes"] > 0 for entry in manifest["files"].values())
    assert json.loads((version / "ids.json").read_text()) == [f"p{i}" for i in range(40)]


def test_truncated_file(version: Path) -> None:
    path = version / "vectors.text.npy"
    path.write_bytes(path.read_bytes()[:-100])
    assert "file 'vectors.text.npy' has" in refused(version) and "truncated" in refused(version)


def test_flipped_byte_fails_the_checksum(version: Path) -> None:
    path = version / "index.text.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "file 'index.text.faiss' fails its sha256 checksum" in refused(version)
    LoadedIndex.load(version, verify_checksums=False)  # sizes alone cannot see it


def test_missing_file(version: Path) -> None:
    (version / "ids.json").unlink()
    assert "file 'ids.json' is missing" in refused(version)


def test_missing_or_foreign_manifest(version: Path) -> None:
    (version / "manifest.json").write_text("[1, 2]")
    assert "not an Aisle manifest" in refused(version)
    (version / "manifest.json").unlink()
    assert "manifest.json is missing" in refused(version)


def test_wrong_dimension(version: Path) -> None:
    edit_manifest(version, lambda m: m["spaces"]["text"].update(dim=64))
    assert "text vectors are float32 (40, 32), the manifest says float32 (*, 64)" in refused(version)


def test_vectors_of_another_dimension_are_refused_even_with_valid_checksums(version: Path) -> None:
    from aisle.index.storage import sha256_file

    np.save(version / "vectors.text.npy", np.zeros((40, 16), dtype=np.float32))

    def resign(manifest: dict) -> None:
        entry = manifest["files"]["vectors.text.npy"]
        entry.update(
            sha256=sha256_file(version / "vectors.text.npy"), bytes=(version / "vectors.text.npy").stat().st_size
        )

    edit_manifest(version, resign)
    assert "the manifest says float32 (*, 32)" in refused(version)


@pytest.mark.parametrize("escape", ["../outside.npy", "/etc/passwd"])
def test_manifest_pointing_outside_the_version(version: Path, escape: str) -> None:
    (version.parent / "outside.npy").write_bytes(b"x")
    edit_manifest(version, lambda m: m["spaces"]["text"].update(vectors=escape))
    assert f"manifest names a file outside the version: {escape!r}" in refused(version)
    edit_manifest(version, lambda m: m["files"].update({escape: {"sha256": "0" * 64, "bytes": 1}}))
    assert "outside the version" in refused(version)


def test_symlink_escaping_the_version(version: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.parquet"
    os.replace(version / "items.parquet", outside)
    os.symlink(outside, version / "items.parquet")
    assert "manifest names a file outside the version: 'items.parquet'" in refused(version)


def test_reference_to_a_file_the_manifest_does_not_checksum(version: Path) -> None:
    np.save(version / "extra.npy", np.zeros((40, 32), dtype=np.float32))
    edit_manifest(version, lambda m: m["spaces"]["text"].update(vectors="extra.npy"))
    assert "refers to 'extra.npy', which it does not checksum" in refused(version)


def test_wrong_model_fingerprint(version: Path) -> None:
    message = refused(version, expected_fingerprint="onnx-int8:another-model")
    assert f"built with model {ENCODER.fingerprint}" in message
    assert "this service encodes queries with onnx-int8:another-model" in message


def test_id_map_disagreeing_with_the_items(version: Path) -> None:
    from aisle.index.storage import sha256_file

    ids = json.loads((version / "ids.json").read_text())
    ids[0], ids[1] = ids[1], ids[0]
    (version / "ids.json").write_text(json.dumps(ids))
    edit_manifest(
        version,
        lambda m: m["files"]["ids.json"].update(
            sha256=sha256_file(version / "ids.json"), bytes=(version / "ids.json").stat().st_size
        ),
    )
    assert "the id map does not match the item table's ids" in refused(version)


def test_missing_version_directory(tmp_path: Path) -> None:
    assert "index version not found" in refused(tmp_path / "nope")
