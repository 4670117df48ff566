"""``aisle train`` on a tiny random BERT: a few steps, an atomic model directory, an ONNX export,
and a rebuild that uses the new model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from aisle.cli import main
from aisle.embed import EncoderConfig, create_encoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.manifest import read_manifest
from aisle.training.datasets import load_sequence_set
from aisle.training.model_io import TRAINING_REPORT, load_sentence_transformer
from aisle.training.train import TrainOptions, train_model
from aisle.training.train_sources import from_sequence_set


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AISLE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _train_args(tiny: Path, output: Path, *extra: str, learn: str = "encoder") -> list[str]:
    return [
        "train",
        "--learn",
        learn,
        "--sequences",
        "fixture/scientific",
        "--base-model",
        str(tiny),
        "--output",
        str(output),
        "--batch-size",
        "16",
        "--trainable-layers",
        "1",
        "--eval-every",
        "2",
        "--max-steps",
        "4",
        "--no-progress",
        "--seed",
        "5",
        "--threads",
        "1",
        *extra,
    ]


def test_train_exports_and_a_rebuild_uses_the_new_model(
    shared_data, tiny_model: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "models" / "trained"
    # Without a validation split the last weights are kept, so the model surely changed.
    assert main(_train_args(tiny_model, output, "--validation-fraction", "0")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4 and summary["stopped_because"] == "max_steps"
    assert [entry["step"] for entry in summary["history"]] == [0, 2, 4]
    assert Path(summary["export"]).is_dir()
    # Atomic write: the directory is complete and nothing temporary is left beside it.
    assert (output / "modules.json").is_file() and (output / TRAINING_REPORT).is_file()
    assert sorted(p.name for p in output.parent.iterdir()) == ["trained"]
    report = json.loads((output / TRAINING_REPORT).read_text())
    assert report["options"]["seed"] == 5 and report["split"]["train_sequences"] > 0

    base = create_encoder(EncoderConfig(model=str(tiny_model), cache_dir=cache))
    trained = create_encoder(EncoderConfig(model=str(output), cache_dir=cache))
    assert trained.fingerprint != base.fingerprint
    texts = ["Gorilla Glue waterproof 8 ounce", "DEWALT grinding wheel"]
    assert not np.allclose(trained.encode_documents(texts), base.encode_documents(texts), atol=1e-4)

    data = load_sequence_set("fixture/scientific")
    built = build_version(data.catalog(), tmp_path / "index", trained, BuildOptions(show_progress=False))
    assert read_manifest(built.path)["spaces"]["text"]["fingerprint"] == trained.fingerprint


def test_only_the_top_layers_change(shared_data, tiny_model: Path, tmp_path: Path) -> None:
    data = from_sequence_set(load_sequence_set("fixture/scientific", "train"))
    output = tmp_path / "top-only"
    train_model(
        data,
        TrainOptions(
            base_model=str(tiny_model),
            output=output,
            trainable_layers=1,
            batch_size=16,
            max_steps=3,
            eval_every=3,
            show_progress=False,
            seed=1,
            threads=1,
            validation_fraction=0.0,
        ),
    )
    before = load_sentence_transformer(str(tiny_model))[0].auto_model.state_dict()
    after = load_sentence_transformer(str(output))[0].auto_model.state_dict()
    changed = {name for name in before if not bool((before[name] == after[name]).all())}
    assert changed and all(name.startswith("encoder.layer.1.") for name in changed)


def test_fixed_seeds_reproduce_the_run(shared_data, tiny_model: Path, tmp_path: Path) -> None:
    data = from_sequence_set(load_sequence_set("fixture/scientific", "train"))
    runs = []
    for name in ("first", "second"):
        result = train_model(
            data,
            TrainOptions(
                base_model=str(tiny_model),
                output=tmp_path / name,
                trainable_layers=1,
                batch_size=16,
                max_steps=3,
                eval_every=3,
                show_progress=False,
                seed=9,
                threads=1,
            ),
        )
        runs.append(
            (
                [entry["score"] for entry in result.history],
                load_sentence_transformer(str(tmp_path / name)).encode(["glue", "sanding roll"]),
            )
        )
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_early_stopping_restores_the_best_weights(shared_data, tiny_model: Path, tmp_path: Path) -> None:
    data = from_sequence_set(load_sequence_set("fixture/scientific", "train"))
    # A learning rate this small cannot improve the validation score: the first validation
    # after step 0 stops the run, and the saved weights must be exactly the initial ones.
    result = train_model(
        data,
        TrainOptions(
            base_model=str(tiny_model),
            output=tmp_path / "early",
            trainable_layers=1,
            batch_size=16,
            learning_rate=1e-12,
            eval_every=1,
            patience=1,
            max_steps=50,
            show_progress=False,
            threads=1,
        ),
    )
    assert result.stopped_because == "early_stopping" and result.steps == 1 and result.best_step == 0
    before = load_sentence_transformer(str(tiny_model))[0].auto_model.state_dict()
    after = load_sentence_transformer(str(tmp_path / "early"))[0].auto_model.state_dict()
    assert all(bool((before[name] == after[name]).all()) for name in before)


def test_time_budget_stops_training(shared_data, tiny_model: Path, tmp_path: Path) -> None:
    data = from_sequence_set(load_sequence_set("fixture/scientific", "train"))
    result = train_model(
        data,
        TrainOptions(
            base_model=str(tiny_model),
            output=tmp_path / "budget",
            trainable_layers=1,
            batch_size=16,
            time_budget_s=0.01,
            show_progress=False,
            threads=1,
        ),
    )
    assert result.stopped_because == "time_budget"
    assert result.steps == 1
    assert (tmp_path / "budget" / "modules.json").is_file()


def test_existing_output_is_refused(shared_data, tiny_model: Path, cache: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "exists"
    output.mkdir()
    assert main(_train_args(tiny_model, output, "--no-export")) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_fine_tuned_encoder_ships_the_blend_chosen_through_the_service(
    shared_data, tiny_model: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    from aisle.embed.collaborative import read_serving_settings
    from aisle.training.train import ENCODER_TRIALS

    output = tmp_path / "models" / "tuned"
    assert main(_train_args(tiny_model, output, "--tune-limit", "30")) == 0
    serving = json.loads(capsys.readouterr().out)["serving"]
    assert serving["cases"] == 30 and len(serving["trials"]) == len(ENCODER_TRIALS)
    best = max(serving["trials"], key=lambda trial: trial["score"])
    assert serving["settings"] == {key: value for key, value in best.items() if key != "score"}
    # The served model reads what was chosen, and nothing temporary is left beside it.
    assert read_serving_settings(output) == serving["settings"]
    assert not [path.name for path in output.iterdir() if path.name.startswith(".")]


def test_the_serving_tune_refuses_a_model_that_already_ships_settings(tmp_path: Path) -> None:
    from aisle.embed.collaborative import write_serving_settings
    from aisle.training.serving_tune import ServingTuning, tune_serving
    from aisle.training.train_data import TrainingData

    write_serving_settings(tmp_path, {"recommend_lexical_weight": 0.6}, {"by": "test"})
    with pytest.raises(ValueError, match="aisle-serving.json"):
        tune_serving(tmp_path, TrainingData(["a"], ["A"]), [], ServingTuning(({},)))


def test_by_default_histories_teach_the_encoder_then_collaborative_vectors_over_it(
    shared_data, tiny_model: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    from aisle.embed.collaborative import CollaborativeVectors, read_serving_settings
    from aisle.embed.config import EncoderConfig
    from aisle.training.collaborative_model import COLLABORATIVE_TRIALS

    output = tmp_path / "models" / "both"
    extra = ("--dim", "8", "--epochs", "2", "--tune-limit", "30")
    assert main(_train_args(tiny_model, output, *extra, learn="auto")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4 and summary["collaborative"]["collaborative"]["epochs"] >= 1
    # One tune, of the collaborative blend over the fine-tuned encoder.
    serving = summary["serving"]
    assert serving["cases"] == 30 and len(serving["trials"]) == len(COLLABORATIVE_TRIALS)
    assert read_serving_settings(output) == serving["settings"]
    # The encoder is the fine-tuned one (its report and weights), not the base model.
    assert json.loads((output / TRAINING_REPORT).read_text())["steps"] == 4
    base = create_encoder(EncoderConfig(model=str(tiny_model), cache_dir=cache))
    trained = create_encoder(EncoderConfig(model=str(output), cache_dir=cache))
    assert trained.fingerprint != base.fingerprint
    assert CollaborativeVectors.read(output).dim == 8
    assert sorted(p.name for p in output.parent.iterdir()) == ["both"]


def test_learning_both_needs_histories(shared_data, tiny_model: Path, cache: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--learn", "both", "--search-set", "fixture/amazon_google", "--output", str(tmp_path / "m")]
    assert main([*argv, "--base-model", str(tiny_model), "--no-progress"]) == 2
    assert "--learn both needs next-item histories" in capsys.readouterr().err


def test_both_learners_hold_out_the_same_customers(shared_data) -> None:
    """The tune runs on customers neither learner trained on: the collaborative learner must hold
    out the encoder's users, seed for seed."""
    from aisle.training.collaborative import CollaborativeOptions, learn_collaborative
    from aisle.training.train_data import split_for_validation

    data = from_sequence_set(load_sequence_set("fixture/scientific", "train"))
    text_vectors = np.random.default_rng(0).standard_normal((len(data.item_ids), 16)).astype(np.float32)
    for seed in (5, 13):
        options = CollaborativeOptions(dim=8, max_epochs=1, seed=seed, threads=1)
        learnt = learn_collaborative(data.item_ids, text_vectors, data.sequences, options)
        held_out = split_for_validation(data, options.validation_fraction, seed).valid_sequences
        assert held_out and learnt.held_out_cases == held_out


@pytest.mark.parametrize("users", [1, 12])
def test_a_shop_with_few_histories_gets_both_learners_without_an_error(
    tiny_model: Path, cache: Path, tmp_path: Path, capsys, users: int
) -> None:
    """``--catalog`` with ``--events`` and the default learner, down to the fewest cases the
    encoder takes (one customer, two next-item cases): the collaborative step after the encoder's
    training must not fail for want of held-out customers or cases."""
    from aisle.embed.collaborative import COLLABORATIVE_DIR

    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "id,title\n" + "".join(f"p{i},{word} product number {i}\n" for i, word in enumerate(["glue", "tape"] * 10)),
        encoding="utf-8",
    )
    events = tmp_path / "events.csv"
    rows = [
        f"u{u},p{(u + step) % 20},{1704067200 + 86400 * step},purchase\n" for u in range(users) for step in range(3)
    ]
    events.write_text("user_id,item_id,timestamp,type\n" + "".join(rows), encoding="utf-8")
    output = tmp_path / "shop-model"
    argv = ["train", "--catalog", str(catalog), "--events", str(events), "--base-model", str(tiny_model)]
    argv += ["--output", str(output), "--max-steps", "2", "--batch-size", "4", "--trainable-layers", "1"]
    argv += ["--threads", "1", "--no-progress", "--dim", "4", "--epochs", "1", "--tune-limit", "5"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] >= 1 and summary["collaborative"]["collaborative"]["epochs"] >= 1
    assert (output / COLLABORATIVE_DIR).is_dir()


def test_one_history_and_labelled_queries_teach_the_encoder_alone(
    tiny_model: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    """Too few cases for collaborative vectors (one), enough queries for the encoder: the default
    learner fine-tunes the encoder instead of failing after it."""
    from aisle.embed.collaborative import COLLABORATIVE_DIR

    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,title\n" + "".join(f"p{i},glue product number {i}\n" for i in range(8)), encoding="utf-8")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp,type\nu,p1,1704067200,purchase\nu,p2,1704153600,purchase\n")
    queries, qrels = tmp_path / "queries.csv", tmp_path / "qrels.csv"
    queries.write_text("query_id,query\n" + "".join(f"q{i},glue {i}\n" for i in range(8)), encoding="utf-8")
    qrels.write_text("query_id,product_id,gain\n" + "".join(f"q{i},p{i},1\n" for i in range(8)), encoding="utf-8")
    output = tmp_path / "shop-model"
    argv = ["train", "--catalog", str(catalog), "--events", str(events), "--queries", str(queries)]
    argv += ["--qrels", str(qrels), "--base-model", str(tiny_model), "--output", str(output), "--max-steps", "2"]
    argv += ["--batch-size", "4", "--trainable-layers", "1", "--threads", "1", "--no-progress", "--tune-limit", "5"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and "collaborative" not in summary
    assert not (output / COLLABORATIVE_DIR).exists()
