"""Corrupt versions are refused, with a message naming the problem, at reload and at start-up.

Each case publishes a good version, then a corrupted one (as a failed disk, a bad copy or a
hostile manifest would leave it). At reload the answer is 409 and the good version keeps
serving; at start-up the app refuses to start, and ``aisle serve`` exits 2 with one clear line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aisle.cli import main as aisle_main
from aisle.index.manifest import IndexValidationError
from aisle.index.storage import sha256_file
from aisle.service import app as service_app
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish

ENCODER = HashingEncoder()


class NarrowEncoder(HashingEncoder):
    """Claims the serving encoder's fingerprint but writes 32 dimensions instead of 64."""

    def __init__(self) -> None:
        super().__init__(dim=32)

    @property
    def fingerprint(self) -> str:
        return ENCODER.fingerprint


def edit_manifest(version: Path, change: Callable[[dict], None], rehash: bool = False) -> None:
    """Applies ``change`` to the manifest; ``rehash`` re-lists every file's size and sha256."""
    path = version / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    if rehash:
        for relative in manifest["files"]:
            member = version / relative
            manifest["files"][relative] = {"sha256": sha256_file(member), "bytes": member.stat().st_size}
    path.write_text(json.dumps(manifest))


def truncated_file(version: Path) -> None:
    target = version / "vectors.text.npy"
    target.write_bytes(target.read_bytes()[:-100])


def bad_checksum(version: Path) -> None:
    target = version / "items.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped
    target.write_bytes(bytes(data))


def missing_file(version: Path) -> None:
    (version / "index.text.faiss").unlink()


def manifest_outside_directory(version: Path) -> None:
    outside = version.parent.parent / "stolen.parquet"
    outside.write_bytes((version / "items.parquet").read_bytes())

    def point_outside(manifest: dict) -> None:
        manifest["items"] = "../../stolen.parquet"
        manifest["files"]["../../stolen.parquet"] = manifest["files"]["items.parquet"]

    edit_manifest(version, point_outside)


def wrong_dimension_vectors(version: Path) -> None:
    """Vectors of 48 dimensions where the manifest says 64; sizes and checksums re-listed."""
    vectors = np.load(version / "vectors.text.npy")
    np.save(version / "vectors.text.npy", np.ascontiguousarray(vectors[:, :48]), allow_pickle=False)
    edit_manifest(version, lambda manifest: None, rehash=True)


def other_model(version: Path) -> None:
    def change(manifest: dict) -> None:
        manifest["spaces"]["text"]["fingerprint"] = "onnx-int8:0123456789abcdef"

    edit_manifest(version, change)


def unreadable_manifest(version: Path) -> None:
    (version / "manifest.json").write_text('{"format": 1, "files": {')


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated file": (truncated_file, "vectors.text.npy' has"),
    "bad checksum": (bad_checksum, "items.parquet' fails its sha256 checksum"),
    "missing file": (missing_file, "index.text.faiss' is missing"),
    "manifest pointing outside": (manifest_outside_directory, "outside the version"),
    "wrong dimension": (wrong_dimension_vectors, "text vectors are float32 (30, 48)"),
    "other model": (other_model, "built with model onnx-int8:0123456789abcdef"),
    "unreadable manifest": (unreadable_manifest, "unreadable manifest"),
}


def publish_corrupt(root: Path, corrupt: Callable[[Path], None]) -> Path:
    version = publish(root, ENCODER, "b").path
    corrupt(version)
    return version


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_refused_at_reload_and_the_old_version_keeps_serving(tmp_path: Path, case: str) -> None:
    corrupt, expected = CORRUPTIONS[case]
    with TestClient(make_app(tmp_path, encoder=ENCODER)) as client:
        serving = client.get("/health").json()["index_version"]
        bad = publish_corrupt(tmp_path / "index", corrupt)
        response = client.post("/admin/reload")
        assert response.status_code == 409, response.text
        message = response.json()["error"]["message"]
        assert expected in message and bad.name in message
        assert f"still serving {serving}" in message
        search = client.post("/search", json={"query": "knife"})
        assert search.status_code == 200 and search.json()["index_version"] == serving
        assert client.get("/health").json()["refused_version"] == bad.name


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_refused_at_start_up(tmp_path: Path, case: str) -> None:
    corrupt, expected = CORRUPTIONS[case]
    app = make_app(tmp_path, encoder=ENCODER, publish_first=False)
    publish_corrupt(tmp_path / "index", corrupt)
    with pytest.raises(IndexValidationError) as refused:
        with TestClient(app):
            pass
    assert expected in str(refused.value)


def test_wrong_dimension_for_the_query_encoder_is_refused(tmp_path: Path) -> None:
    """Same fingerprint, consistent files, but 32-dimensional: queries (64) could not be compared."""
    with TestClient(make_app(tmp_path, encoder=ENCODER)) as client:
        publish(tmp_path / "index", NarrowEncoder(), "b")
        response = client.post("/admin/reload")
        assert response.status_code == 409
        assert "32 dimensions, the query encoder writes 64" in response.json()["error"]["message"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``aisle serve`` configures the process's logging; put it back for the next tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("case", ["truncated file", "manifest pointing outside"])
def test_aisle_serve_exits_2_with_one_clear_line(
    tmp_path: Path,
    case: str,
    workers: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    corrupt, expected = CORRUPTIONS[case]
    publish_corrupt(tmp_path / "index", corrupt)
    monkeypatch.setattr(service_app, "default_encoder", lambda settings: ENCODER)
    served = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: served.append(args))
    monkeypatch.setattr("aisle.service.workers.serve_workers", lambda *args, **kwargs: served.append(args))
    status = aisle_main(["serve", "--index", str(tmp_path / "index"), "--port", "1", "--workers", workers])
    assert status == 2 and served == []  # refused before binding the port or starting a worker
    err = capsys.readouterr().err
    assert "aisle serve: error: cannot serve" in err and expected in err
    assert "Traceback" not in err


def test_aisle_serve_names_invalid_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    monkeypatch.setenv("AISLE_PORT", "abc")
    assert aisle_main(["serve", "--index", "anywhere", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "aisle serve: error: invalid settings:" in err
    assert "workers=0" in err and "port='abc'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
