"""The HTTP evaluations against the real app (FastAPI TestClient; the tests may import the service)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.service.app import create_app
from aisle.service.settings import ServiceSettings
from aisle.training.datasets import load_sequence_set
from aisle.training.eval_personal import evaluate_lift
from aisle.training.eval_recsys import evaluate_http
from aisle.training.recsys_data import Rating, TagCase
from aisle.training.timeline import Timeline
from tests.fakes import HashingEncoder


@pytest.fixture
def client(shared_data: Path, tmp_path: Path, hashing: HashingEncoder):
    data = load_sequence_set("fixture/scientific")
    build_version(data.catalog(), tmp_path / "index", hashing, BuildOptions(show_progress=False))
    settings = ServiceSettings(
        index_dir=tmp_path / "index", data_dir=tmp_path / "data", watch_interval_s=0, recommend_exclude="none"
    )
    with TestClient(create_app(settings, encoder_factory=lambda _settings: hashing)) as test_client:
        yield data, test_client


def test_recommendations_over_http(client) -> None:
    data, test_client = client
    data.cases = data.cases[:40]
    report = evaluate_http(test_client, data, timeline=Timeline(), run_id="t1")
    assert report.metrics["cases"] == 40
    assert 0 <= report.metrics["NDCG@10"] <= report.metrics["HR@10"] <= report.metrics["HR@50"] <= 1
    # Every evaluated user now has a profile built from the posted history.
    first = data.cases[0]
    profile = test_client.get(f"/users/eval-t1-{first.user}/profile").json()
    assert profile["events"]["total"] == profile["events"]["purchase"] == len(first.history)


def test_personalized_search_lift_over_http(client) -> None:
    data, test_client = client
    cases = []
    for case in data.cases[:15]:
        target_text = data.item_texts[data.item_ids.index(case.target)]
        history = tuple(Rating(0, i, 5.0, 1_000 + n) for n, i in enumerate(case.history))
        # The fixture's item ids are ASINs: the evaluation maps Rating.movie through str().
        cases.append(TagCase(0, case.target, " ".join(target_text.split()[:3]), 2_000, history))
    result = evaluate_lift(test_client, cases, run_id="t2", name="scientific-as-tags")
    runs = result["runs"]
    assert runs["search"]["metrics"]["cases"] == runs["personalized_search"]["metrics"]["cases"] == 15
    assert result["lift"]["MRR"] == pytest.approx(
        runs["personalized_search"]["metrics"]["MRR"] - runs["search"]["metrics"]["MRR"], abs=2e-4
    )
