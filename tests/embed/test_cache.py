"""Content hashing and atomic publication of exports (no torch needed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from aisle.embed.artifacts import EXPORT_RECIPE, ExportManifest, publish_export, read_manifest_if_current
from aisle.embed.cache import content_hash, publish_dir, staging_dir, write_json_atomic


def _fake_model(directory: Path, weights: bytes = b"\x00\x01weights") -> Path:
    (directory / "1_Pooling").mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "config.json").write_text('{"hidden_size": 8}')
    (directory / "tokenizer.json").write_text('{"model": {}}')
    (directory / "1_Pooling" / "config.json").write_text('{"pooling_mode": "mean"}')
    (directory / "README.md").write_text("model card")
    return directory


def test_hash_depends_on_content_not_location_or_model_card(tmp_path: Path) -> None:
    first = _fake_model(tmp_path / "a")
    second = tmp_path / "b"
    shutil.copytree(first, second)
    (second / "README.md").write_text("a different model card")
    (second / ".git").mkdir()
    (second / ".git" / "HEAD").write_text("ref: main")
    assert content_hash(first) == content_hash(second)
    assert len(content_hash(first)) == 64


@pytest.mark.parametrize("change", ["weights", "pooling", "new file", "rename"])
def test_hash_changes_with_any_model_file(tmp_path: Path, change: str) -> None:
    model = _fake_model(tmp_path / "m")
    before = content_hash(model)
    if change == "weights":
        (model / "model.safetensors").write_bytes(b"\x00\x02weights")
    elif change == "pooling":
        (model / "1_Pooling" / "config.json").write_text('{"pooling_mode": "cls"}')
    elif change == "new file":
        (model / "2_Normalize").mkdir()
        (model / "2_Normalize" / "config.json").write_text("{}")
    else:
        (model / "tokenizer.json").rename(model / "tokenizer2.json")
    assert content_hash(model) != before


def test_hash_of_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        content_hash(tmp_path)


def test_write_json_atomic_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def _manifest(recipe: int = EXPORT_RECIPE, name: str = "m") -> ExportManifest:
    return ExportManifest(
        kind="text", name=name, backend="onnx-fp32", content_hash="0" * 64, dim=8, max_length=16, recipe=recipe
    )


def _publish_one(args: tuple[str, str]) -> str:
    final, label = Path(args[0]), args[1]
    staged = staging_dir(final)
    (staged / "model.onnx").write_text(label * 10_000)
    _manifest(name=label).write(staged)
    publish_export(staged, final)
    return ExportManifest.read(final).name


def test_concurrent_publishers_agree_on_one_complete_export(tmp_path: Path) -> None:
    final = tmp_path / "hash" / "onnx-fp32"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        winners = pool.map(_publish_one, [(str(final), label) for label in "abcdefgh"])
    # Every publisher sees the same, complete export; the losers' staging dirs are gone.
    assert len(set(winners)) == 1
    assert (final / "model.onnx").read_text() == winners[0] * 10_000
    assert sorted(p.name for p in final.parent.iterdir()) == ["onnx-fp32"]


def test_stale_recipe_is_replaced_but_current_export_is_kept(tmp_path: Path) -> None:
    final = tmp_path / "hash" / "onnx-fp32"
    old = staging_dir(final)
    _manifest(recipe=EXPORT_RECIPE - 1, name="old").write(old)
    publish_dir(old, final)
    assert read_manifest_if_current(final) is None
    new = staging_dir(final)
    _manifest(name="new").write(new)
    publish_export(new, final)
    assert ExportManifest.read(final).name == "new"
    newer = staging_dir(final)
    _manifest(name="newer").write(newer)
    publish_export(newer, final)
    assert ExportManifest.read(final).name == "new", "a current export must never be replaced"
    assert sorted(p.name for p in final.parent.iterdir()) == ["onnx-fp32"]


def test_abandoned_staging_directories_are_swept(tmp_path: Path) -> None:
    final = tmp_path / "hash" / "onnx-int8"
    crashed = staging_dir(final)
    (crashed / "model.onnx").write_text("half written")
    recent = staging_dir(final)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(crashed, (two_days_ago, two_days_ago))
    staging_dir(final)
    assert not crashed.exists(), "a staging dir untouched for two days belongs to a dead exporter"
    assert recent.exists(), "a fresh staging dir may belong to a running exporter"
