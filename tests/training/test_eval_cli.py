"""``aisle eval`` end to end on the shared fixture data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisle.cli import main
from aisle.training.datasets import load_sequence_set
from tests.fakes import HashingEncoder


@pytest.fixture
def fast_encoder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HashingEncoder:
    """Evaluation indexes built with the hashing encoder, under a private cache."""
    encoder = HashingEncoder(dim=96)
    monkeypatch.setattr("aisle.training.indexes.create_encoder_for", lambda settings, model=None: encoder)
    monkeypatch.setenv("AISLE_CACHE_DIR", str(tmp_path / "cache"))
    return encoder


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if status == 0 else {}, captured.err


def test_search_in_process(shared_data: Path, fast_encoder, capsys, tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    status, payload, err = _run(
        capsys, ["eval", "search", "--data", "fixture/amazon_google", "--no-progress", "--out", str(out)]
    )
    assert status == 0
    assert set(payload["runs"]) == {"dense", "lexical"}
    for run in payload["runs"].values():
        metrics = run["metrics"]
        assert metrics["queries"] == 100
        assert 0 < metrics["MRR@10"] <= 1 and 0 < metrics["recall@10"] <= 1 and 0 < metrics["NDCG@10"] <= 1
        assert run["settings"]["data"] == "fixture/amazon_google"
    # BM25 finds another shop's listing title of the same product well on this data.
    assert payload["runs"]["lexical"]["metrics"]["MRR@10"] > 0.8
    assert "| dense |" in err and "| lexical |" in err
    assert json.loads(out.read_text()) == payload


def test_search_halves_partition_the_queries(shared_data: Path, fast_encoder, capsys) -> None:
    counts = []
    for half in ("even", "odd"):
        status, payload, _ = _run(
            capsys,
            [
                "eval",
                "search",
                "--data",
                "fixture/amazon_google",
                "--half",
                half,
                "--mode",
                "lexical",
                "--format",
                "json",
                "--no-progress",
            ],
        )
        assert status == 0
        counts.append(payload["runs"]["lexical"]["metrics"]["queries"])
    assert counts == [50, 50]


def test_recsys_in_process_with_and_without_masking(shared_data: Path, fast_encoder, capsys) -> None:
    base = ["eval", "recsys", "--data", "fixture/scientific", "--format", "json", "--no-progress"]
    status, plain, _ = _run(capsys, base)
    assert status == 0
    status, masked, _ = _run(capsys, [*base, "--mask-seen"])
    assert status == 0
    plain_metrics = plain["runs"]["next_item"]["metrics"]
    masked_metrics = masked["runs"]["next_item"]["metrics"]
    assert plain_metrics["cases"] == masked_metrics["cases"] == 300
    assert plain["runs"]["next_item"]["settings"]["history_items_masked"] is False
    assert masked["runs"]["next_item"]["settings"]["history_items_masked"] is True
    data = load_sequence_set("fixture/scientific")
    if not any(case.target in case.history for case in data.cases):
        # Masking only removes items that are not the target, so no target can fall.
        for key in ("HR@10", "NDCG@10", "HR@50", "NDCG@50"):
            assert masked_metrics[key] >= plain_metrics[key]
    assert masked_metrics["NDCG@10"] > plain_metrics["NDCG@10"]


def test_unknown_data_set_is_a_clean_error(shared_data: Path, fast_encoder, capsys) -> None:
    status = main(["eval", "search", "--data", "no_such_set", "--no-progress"])
    assert status == 2
    assert "no_such_set" in capsys.readouterr().err


def test_hybrid_needs_the_service(shared_data: Path, fast_encoder, capsys) -> None:
    status = main(["eval", "search", "--data", "fixture/amazon_google", "--mode", "hybrid", "--no-progress"])
    assert status == 2
    assert "--engine service" in capsys.readouterr().err
