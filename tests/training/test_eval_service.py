"""``aisle eval --engine service``: a real ``aisle serve`` subprocess on the evaluation index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisle.cli import main

pytestmark = pytest.mark.slow


def test_hybrid_search_through_a_local_service(shared_data: Path, capsys, tmp_path: Path) -> None:
    """The bundled model (ONNX int8) serves the fixture catalogue; every mode answers over HTTP."""
    pytest.importorskip("httpx")
    out = tmp_path / "service.json"
    status = main(
        [
            "eval",
            "search",
            "--data",
            "fixture/amazon_google",
            "--engine",
            "service",
            "--mode",
            "all",
            "--format",
            "json",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    runs = payload["runs"]
    assert set(runs) == {"hybrid", "dense", "lexical"}
    versions = {run["settings"]["index_version"] for run in runs.values()}
    assert len(versions) == 1 and None not in versions
    for run in runs.values():
        assert run["metrics"]["queries"] == 100
        assert run["settings"]["engine"] == "local aisle serve (HTTP)"
    # Real product-matching queries: hybrid retrieval finds the labelled listing almost always.
    assert runs["hybrid"]["metrics"]["recall@10"] > 0.9
    assert runs["hybrid"]["metrics"]["MRR@10"] >= min(
        runs["dense"]["metrics"]["MRR@10"], runs["lexical"]["metrics"]["MRR@10"]
    )
