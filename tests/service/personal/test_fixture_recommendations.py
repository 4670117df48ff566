"""Real sequences (the shared fixture: 300 Amazon Scientific users) through the HTTP API.

Each user's history without its last item is posted as purchases, one day apart; the last item
is the target. Personalized recommendations must find clearly more targets in their top 50 than
the cold-start (popular) list does (measured: HR@50 0.22 against 0.06). The encoder is the fast
HashingEncoder, so the margin tested is deliberately modest; the MiniLM figures are produced by
``benchmarks/eval_recsys_http.py``.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from aisle.training.metrics import summarize_ranks, target_rank
from aisle.training.recsys_data import shared_data_dir
from tests.fakes import HashingEncoder
from tests.service.harness import settings_for

FIXTURE = Path("fixture/recsys/amazon_scientific")
DAY_S = 86_400.0


def load_fixture(folder: Path) -> tuple[list[dict], dict[str, list[str]]]:
    with open(folder / "items.csv", encoding="utf-8", newline="") as handle:
        items = [{"id": row["asin"], "title": row["text"].strip()} for row in csv.DictReader(handle)]
    sequences: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with open(folder / "interactions.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            sequences[row["user_id"]].append((int(row["position"]), row["asin"]))
    return items, {user: [asin for _, asin in sorted(seq)] for user, seq in sequences.items()}


@pytest.fixture(scope="module")
def fixture_app(tmp_path_factory: pytest.TempPathFactory):
    folder = shared_data_dir() / FIXTURE
    if not folder.is_dir():
        pytest.skip(f"fixture data not found at {folder} (set AISLE_SHARED_DATA)")
    items, sequences = load_fixture(folder)
    root = tmp_path_factory.mktemp("fixture-recs")
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    encoder = HashingEncoder(dim=256)
    settings = settings_for(
        root, recommend_exclude="none", half_lives_s={"purchase": DAY_S}, bought_together_window_s=3 * DAY_S
    )
    build_version(load_catalog(catalog), settings.index_dir, encoder, BuildOptions(show_progress=False))
    return create_app(settings, encoder_factory=lambda _s: encoder), sequences


def test_personal_recommendations_beat_the_popular_list(fixture_app) -> None:
    app, sequences = fixture_app
    now = time.time()
    events = [
        {
            "event_id": f"{user}-{position}",
            "user_id": user,
            "item_id": asin,
            "type": "purchase",
            "timestamp": now - (len(sequence) - 1 - position) * DAY_S,
        }
        for user, sequence in sequences.items()
        for position, asin in enumerate(sequence[:-1])
    ]
    with TestClient(app) as client:
        for start in range(0, len(events), 1000):
            response = client.post("/events", json={"events": events[start : start + 1000]})
            assert response.status_code == 200 and response.json()["unknown_items"] == []
        popular = [r["id"] for r in client.get("/users/nobody/recommendations", params={"k": 50}).json()["results"]]
        personal, cold = [], []
        for user, sequence in sequences.items():
            body = client.get(f"/users/{user}/recommendations", params={"k": 50}).json()
            personal.append(target_rank([r["id"] for r in body["results"]], sequence[-1]))
            cold.append(target_rank(popular, sequence[-1]))
    personal_metrics, cold_metrics = summarize_ranks(personal), summarize_ranks(cold)
    assert personal_metrics["cases"] == len(sequences) == 300
    assert personal_metrics["HR@50"] >= cold_metrics["HR@50"] + 0.05, (personal_metrics, cold_metrics)
    assert personal_metrics["NDCG@10"] > cold_metrics["NDCG@10"], (personal_metrics, cold_metrics)
