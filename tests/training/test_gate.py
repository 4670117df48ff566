"""The quality gate refuses a deliberately bad model and publishes an equal one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisle.cli import main
from aisle.index.build import BuildOptions, build_version
from aisle.index.loaded import LoadedIndex
from aisle.index.versions import VersionStore
from aisle.training.datasets import load_search_set, load_sequence_set
from aisle.training.gate import (
    EvalSet,
    GateRefused,
    compare_versions,
    gated_build,
    overlap_at_k,
)
from tests.fakes import HashingEncoder
from tests.training.conftest import ShuffledEncoder

OPTIONS = BuildOptions(show_progress=False)


@pytest.fixture
def search_root(tmp_path: Path, shared_data: Path, hashing: HashingEncoder):
    search_set = load_search_set("fixture/amazon_google")
    catalog = search_set.load_catalog()
    root = tmp_path / "index"
    first = build_version(catalog, root, hashing, OPTIONS)
    return search_set, catalog, root, first.version


def test_refuses_a_shuffled_model_and_keeps_the_current_version(search_root, hashing: HashingEncoder) -> None:
    search_set, catalog, root, current = search_root
    bad = ShuffledEncoder(hashing)
    with pytest.raises(GateRefused) as refused:
        gated_build(catalog, root, bad, hashing, EvalSet(search=search_set), margin=0.02, options=OPTIONS)
    report = refused.value.report
    assert not report.passed and not report.published
    assert report.delta < -0.5  # the shuffled vectors destroy retrieval
    assert report.overlap_at_k < 0.2
    store = VersionStore(root)
    assert store.current_name() == current
    assert store.names() == [current]
    assert not list(root.glob(".gate-*")) and not list(root.glob(".staging-*"))


def test_publishes_an_equal_model(search_root, hashing: HashingEncoder) -> None:
    search_set, catalog, root, current = search_root
    report = gated_build(
        catalog, root, HashingEncoder(dim=96), None, EvalSet(search=search_set), margin=0.0, options=OPTIONS
    )
    assert report.passed and report.published
    assert report.delta == 0.0 and report.overlap_at_k == 1.0
    store = VersionStore(root)
    assert store.current_name() == report.candidate_version != current
    assert len(store.names()) == 2


def test_the_margin_is_the_largest_tolerated_drop(tmp_path: Path, search_root, hashing: HashingEncoder) -> None:
    search_set, catalog, root, _ = search_root
    current = LoadedIndex.load(VersionStore(root).current_path())
    worse = ShuffledEncoder(hashing, seed=5)
    other = LoadedIndex.load(build_version(catalog, tmp_path / "other", worse, OPTIONS).path)
    eval_set = EvalSet(search=search_set)
    drop = -compare_versions((current, hashing), (other, worse), eval_set, margin=0.0).delta
    assert drop > 0
    assert compare_versions((current, hashing), (other, worse), eval_set, margin=drop + 1e-3).passed
    assert not compare_versions((current, hashing), (other, worse), eval_set, margin=drop - 1e-3).passed


def test_next_item_gate_refuses_shuffled_vectors(tmp_path: Path, shared_data: Path, hashing: HashingEncoder) -> None:
    data = load_sequence_set("fixture/scientific", "valid")
    catalog = data.catalog()
    root = tmp_path / "recsys"
    build_version(catalog, root, hashing, OPTIONS)
    eval_set = EvalSet(sequences=data)
    with pytest.raises(GateRefused) as refused:
        gated_build(catalog, root, ShuffledEncoder(hashing, seed=3), hashing, eval_set, margin=0.01, options=OPTIONS)
    assert refused.value.report.metric == "NDCG@10"
    assert refused.value.report.candidate < refused.value.report.current


def test_first_build_publishes_without_comparison(tmp_path: Path, shared_data: Path, hashing: HashingEncoder) -> None:
    search_set = load_search_set("fixture/amazon_google")
    report = gated_build(
        search_set.load_catalog(), tmp_path / "fresh", hashing, None, EvalSet(search=search_set), options=OPTIONS
    )
    assert report.published and "no current version" in report.reason


def test_overlap_at_k() -> None:
    assert overlap_at_k({"q": ["a", "b"]}, {"q": ["b", "c"]}, k=2) == 0.5
    assert overlap_at_k({"q": ["a"]}, {"r": ["a"]}) == 0.0


def test_gate_command(search_root, hashing: HashingEncoder, monkeypatch, capsys, aisle_commands) -> None:
    search_set, _, root, current = search_root
    bad = ShuffledEncoder(hashing)
    monkeypatch.setattr(
        "aisle.training.indexes.create_encoder_for", lambda settings, model=None: bad if model == "bad" else hashing
    )
    argv = [
        "gate",
        "--catalog",
        str(search_set.catalog_path),
        "--map",
        "id=product_id",
        "--map",
        "brand=manufacturer",
        "--index",
        str(root),
        "--search-set",
        "fixture/amazon_google",
        "--current-model",
        "good",
        "--no-progress",
    ]
    assert main([*argv, "--model", "bad"]) == 3
    refused = json.loads(capsys.readouterr().out)
    assert refused["passed"] is False and refused["published"] is False
    assert VersionStore(root).current_name() == current
    assert main([*argv, "--model", "good"]) == 0
    passed = json.loads(capsys.readouterr().out)
    assert passed["published"] and VersionStore(root).current_name() == passed["candidate_version"]


def test_current_model_must_match_the_current_version(search_root, hashing: HashingEncoder) -> None:
    search_set, catalog, root, current = search_root
    other = HashingEncoder(dim=96, salt="new")
    with pytest.raises(ValueError, match="--current-model"):
        gated_build(catalog, root, other, None, EvalSet(search=search_set), options=OPTIONS)
    assert VersionStore(root).current_name() == current
