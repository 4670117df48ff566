"""Amazon-Google: search relevance before and after ``aisle train`` on half of the queries.

Usage::

    python -m benchmarks.train_ag [--time-budget 900] [--out benchmarks/results/train_ag.json]

Protocol (``../shared/data/dev/search/amazon_google``): queries in query-id order are split by
position; the model is trained on the labelled pairs of the even half (``aisle train
--search-set amazon_google --half even``) and the hybrid fusion weights are re-tuned on the
same even half (``aisle.training.tune.tune_fusion``, through the service); MRR@10, recall@10 and
NDCG@10 are reported on the odd half, which neither ever sees. Before = the bundled
all-MiniLM-L6-v2 with the service's default settings; after = the trained model (ONNX int8, as
served) with the tuned fusion. Every number comes from ``aisle eval search --engine service``:
``aisle serve`` runs on an index of the 3,226 products and answers ``POST /search`` in each
retrieval mode (hybrid, dense, lexical). A query is the other shop's listing, title and
manufacturer (``aisle.training.datasets``); the same runs with the title alone are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_json
from benchmarks.machine import describe_machine
from benchmarks.train_scientific import aisle_environment, run

REPO = Path(__file__).resolve().parent.parent
TARGET_MRR = 0.90


def tune_fusion(env: dict[str, str], model: Path, settings: Path) -> dict[str, Any]:
    """Fusion weights tuned on the even half with the trained model, written to ``settings``."""
    os.environ.update(env)
    from aisle.training.datasets import load_search_set
    from aisle.training.indexes import build_eval_index, create_encoder_for
    from aisle.training.settings import TrainingSettings
    from aisle.training.tune import tune_fusion as search
    from aisle.training.tune import write_settings

    base = TrainingSettings()
    search_set = load_search_set("amazon_google").half("even")
    encoder = create_encoder_for(base, str(model))
    built = build_eval_index(search_set.load_catalog(), search_set.catalog_name, encoder, base, show_progress=False)
    best, trials = search(built.root, search_set, {}, str(model))
    write_settings(settings, best, {"tuned_on": "amazon_google even half"})
    return {"settings": best, "trials": trials}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", type=float, default=900.0, help="aisle train --time-budget")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models" / "amazon_google")
    parser.add_argument("--settings", type=Path, default=REPO / "var" / "models" / "amazon_google-settings.yaml")
    parser.add_argument("--train-args", default="", help="extra arguments for aisle train")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_ag.json")
    args = parser.parse_args()

    env = aisle_environment()
    env.pop("AISLE_CONFIG", None)
    aisle = [sys.executable, "-m", "aisle"]
    evaluate = [
        *aisle,
        "eval",
        "search",
        "--data",
        "amazon_google",
        "--half",
        "odd",
        "--engine",
        "service",
        "--mode",
        "all",
        "--format",
        "json",
        "--no-progress",
    ]
    before, before_time = run(evaluate, env)
    train = [
        *aisle,
        "train",
        "--search-set",
        "amazon_google",
        "--half",
        "even",
        "--output",
        str(args.model_dir),
        "--overwrite",
        "--time-budget",
        str(args.time_budget),
        "--no-progress",
        *args.train_args.split(),
    ]
    trained, train_time = run(train, env)
    default_command = [*evaluate, "--model", str(args.model_dir)]
    after_default, after_default_time = run(default_command, env)
    tuned = tune_fusion(env, args.model_dir, args.settings)
    after_command = [*evaluate, "--model", str(args.model_dir), "--config", str(args.settings)]
    after, after_time = run(after_command, env)
    # The same evaluations with the title alone as the query (the listing's manufacturer left out).
    titles = ["--query-columns", "query"]
    title_before, _ = run([*evaluate, *titles], env)
    title_after, _ = run([*evaluate, *titles, "--model", str(args.model_dir), "--config", str(args.settings)], env)

    def metrics(payload: dict[str, Any]) -> dict[str, Any]:
        return {mode: run["metrics"] for mode, run in payload["runs"].items()}

    result = {
        "command": "python -m benchmarks.train_ag " + " ".join(sys.argv[1:]),
        "protocol": __doc__.split("\n\n")[2].replace("\n", " "),
        "before": {"command": " ".join(evaluate[2:]), "metrics": metrics(before), "timing": before_time},
        "train": {"command": " ".join(train[2:]), "timing": train_time, "report": trained},
        "after_default_fusion": {
            "command": " ".join(default_command[2:]),
            "metrics": metrics(after_default),
            "timing": after_default_time,
        },
        "tuned_fusion": tuned,
        "after": {"command": " ".join(after_command[2:]), "metrics": metrics(after), "timing": after_time},
        "title_only_queries": {"before": metrics(title_before), "after": metrics(title_after)},
        "target_hybrid_mrr@10": TARGET_MRR,
        "meets_target": metrics(after)["hybrid"]["MRR@10"] >= TARGET_MRR,
        "machine": describe_machine(REPO),
    }
    atomic_write_json(args.out, result)
    print(
        json.dumps(
            {
                "before": metrics(before)["hybrid"],
                "after": metrics(after)["hybrid"],
                "train_wall_s": train_time["wall_s"],
                "meets_target": result["meets_target"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
