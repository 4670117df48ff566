"""``aisle tune``: the half-life search and the settings file it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aisle.cli import main
from aisle.index.build import BuildOptions, build_version
from aisle.index.loaded import LoadedIndex
from aisle.index.profile import DAY_S, DecayConfig
from aisle.training.datasets import load_sequence_set
from aisle.training.eval_recsys import evaluate_profiles
from aisle.training.settings import TrainingSettings
from aisle.training.timeline import Timeline
from aisle.training.tune import tune_half_life, write_settings
from tests.fakes import HashingEncoder


def test_half_life_search_picks_the_best_trial(shared_data: Path, hashing: HashingEncoder, tmp_path: Path) -> None:
    data = load_sequence_set("fixture/scientific", "train")
    built = build_version(data.catalog(), tmp_path / "index", hashing, BuildOptions(show_progress=False))
    index = LoadedIndex.load(built.path)
    timeline = Timeline()
    best, trials = tune_half_life(index, data, timeline, DecayConfig(), steps=(0.5, 2.0, 30.0))
    assert [t["half_life_steps"] for t in trials] == [0.5, 2.0, 30.0]
    winner = max(trials, key=lambda t: t["NDCG@10"])
    assert best["half_lives_s"]["purchase"] == winner["half_lives_s"]["purchase"]
    # The trial's number is what an evaluation with that setting reports.
    decay = TrainingSettings(half_lives_s=best["half_lives_s"]).decay_config()
    again = evaluate_profiles(index, data, decay=decay, timeline=timeline)
    assert again.metrics["NDCG@10"] == winner["NDCG@10"]


def test_settings_file_round_trips_through_aisle_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tuned.yaml"
    write_settings(path, {"half_lives_s": {"purchase": 1.5 * DAY_S}, "fusion_dense_weight": 0.5}, {"tuned_on": "test"})
    assert yaml.safe_load(path.read_text())["fusion_dense_weight"] == 0.5
    monkeypatch.setenv("AISLE_CONFIG", str(path))
    assert TrainingSettings().decay_config().half_life("purchase") == 1.5 * DAY_S


def test_tune_command_writes_a_usable_file(
    shared_data: Path, tmp_path: Path, monkeypatch, capsys, aisle_commands
) -> None:
    monkeypatch.setattr(
        "aisle.training.indexes.create_encoder_for", lambda settings, model=None: HashingEncoder(dim=96)
    )
    monkeypatch.setenv("AISLE_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "tuned.yaml"
    assert main(["tune", "--sequences", "fixture/scientific", "--output", str(output), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    tuned = yaml.safe_load(output.read_text())
    assert tuned == report["settings"]
    assert set(tuned["half_lives_s"]) == {"view", "click", "add_to_cart", "purchase"}
    assert len(report["half_life"]["trials"]) >= 5


def _topic_shop(tmp_path: Path) -> tuple[Path, Path]:
    """Views reveal what a user buys next; purchases are of an unrelated topic (noise)."""
    import random

    rng = random.Random(4)
    topics = ["kettle", "drill", "tent", "lamp", "boots", "guitar", "pillow", "camera"]
    catalog = tmp_path / "catalog.csv"
    rows = ["id,title"] + [f"{t}-{n},{t} {t}s model {n} {t}" for t in topics for n in range(8)]
    catalog.write_text("\n".join(rows) + "\n", encoding="utf-8")
    events = ["user_id,item_id,timestamp,type"]
    for user in range(60):
        wanted, noise = rng.sample(topics, 2)
        clock = 1_700_000_000
        for _ in range(3):
            clock += 3600
            events.append(f"u{user},{noise}-{rng.randrange(8)},{clock},purchase")
            clock += 3600
            events.append(f"u{user},{wanted}-{rng.randrange(8)},{clock},view")
        events.append(f"u{user},{wanted}-{rng.randrange(8)},{clock + 3600},purchase")
    log = tmp_path / "events.csv"
    log.write_text("\n".join(events) + "\n", encoding="utf-8")
    return catalog, log


def test_event_weights_are_tuned_from_a_log(tmp_path: Path, monkeypatch, capsys, aisle_commands) -> None:
    catalog, log = _topic_shop(tmp_path)
    monkeypatch.setattr(
        "aisle.training.indexes.create_encoder_for", lambda settings, model=None: HashingEncoder(dim=128)
    )
    monkeypatch.setenv("AISLE_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "tuned.yaml"
    assert (
        main(
            [
                "tune",
                "--catalog",
                str(catalog),
                "--events",
                str(log),
                "--split",
                "valid",
                "--trials",
                "25",
                "--output",
                str(output),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    trials = report["half_life"]["trials"]
    default, best = trials[0], max(trials, key=lambda t: t["NDCG@10"])
    assert best["NDCG@10"] > default["NDCG@10"]
    tuned = yaml.safe_load(output.read_text())
    # Views carry the signal here, so the tuned views weigh more, relative to purchases, than by default.
    assert tuned["event_weights"]["view"] / tuned["event_weights"]["purchase"] > 1 / 8


def test_every_tuned_setting_is_a_service_setting() -> None:
    """Trials pass settings as ``AISLE_*`` variables, which a misspelt name would silently miss."""
    from aisle.service.settings import ServiceSettings
    from aisle.training.tune import BLEND_GRID, FUSION_GRID

    names = {name for trial in (*BLEND_GRID, *FUSION_GRID) for name in trial}
    assert {"personal_half_mass", "recommend_lexical_weight"} <= names
    assert names <= set(ServiceSettings.model_fields)
