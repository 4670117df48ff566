"""Amazon Scientific: next-item quality of the served profile before and after ``aisle train``.

Usage::

    python -m benchmarks.train_scientific [--time-budget 1500] [--out benchmarks/results/train_scientific.json]

Protocol (the UniSRec split of ``../shared/data/dev/recsys/amazon_scientific_unisrec``): train on
``Scientific.train.inter`` only, measure on ``Scientific.valid.inter``: every one of the 8,442
users' histories becomes a profile (``aisle.index.profile``, one ``purchase`` per history item, one day
apart), all 4,385 items are ranked by cosine to it through the version's FAISS index, history
items are NOT masked, and HR@10, NDCG@10, HR@50, NDCG@50 of the next item are reported. The
half-life is tuned on the training rows (never on valid) with the bundled model and then kept
fixed for training and both measurements. Before = the bundled all-MiniLM-L6-v2 (ONNX int8, as
served); after = the trained model, exported to ONNX int8 by ``aisle train`` and served the same way.

The three steps run the real commands (``aisle eval recsys``, ``aisle train``) as subprocesses;
their command lines, wall and CPU times and the machine's load are recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_json
from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parent.parent
#: Published test-split results of UniSRec on this data (text + ID, pre-trained and fine-tuned).
UNISREC = {"HR@10": 0.1235, "NDCG@10": 0.0634, "HR@50": 0.2473, "NDCG@50": 0.0904}
METRICS = tuple(UNISREC)


def run(command: list[str], env: dict[str, str]) -> tuple[dict[str, Any], dict[str, float]]:
    """Runs an ``aisle`` command, returning its JSON output and its wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing = {
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    return json.loads(done.stdout), timing


def aisle_environment() -> dict[str, str]:
    """This process's environment for the ``aisle`` subprocesses: offline, the repository's cache."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "AISLE_CACHE_DIR": os.environ.get("AISLE_CACHE_DIR", str(REPO / ".cache" / "aisle")),
    }


def tune_half_life(env: dict[str, str], settings: Path) -> dict[str, Any]:
    """Half-life of the profile tuned on the training rows with the bundled model."""
    os.environ.update(env)
    from aisle.training.datasets import load_sequence_set
    from aisle.training.indexes import build_eval_index, create_encoder_for
    from aisle.training.settings import TrainingSettings
    from aisle.training.timeline import Timeline
    from aisle.training.tune import tune_half_life as search
    from aisle.training.tune import write_settings

    base = TrainingSettings()
    data = load_sequence_set("scientific", "train")
    # One case per user, the longest training row: the shape of the valid protocol.
    longest: dict[str, Any] = {}
    for case in data.cases:
        if len(case.history) >= len(longest.get(case.user, case).history):
            longest[case.user] = case
    data.cases = [longest[user] for user in sorted(longest)]
    encoder = create_encoder_for(base)
    built = build_eval_index(data.catalog(), f"sequences-{data.name}", encoder, base, show_progress=False)
    best, trials = search(built.index, data, Timeline(), base.decay_config())
    write_settings(settings, best, {"tuned_on": "Scientific.train.inter, each user's longest row"})
    return {"settings": best, "trials": trials, "cases": len(data.cases)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", type=float, default=1500.0, help="aisle train --time-budget")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models" / "scientific")
    parser.add_argument("--settings", type=Path, default=REPO / "var" / "models" / "scientific-settings.yaml")
    parser.add_argument("--train-args", default="", help="extra arguments for aisle train")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_scientific.json")
    args = parser.parse_args()

    env = aisle_environment()
    aisle = [sys.executable, "-m", "aisle"]
    tuned = tune_half_life(env, args.settings)
    env["AISLE_CONFIG"] = str(args.settings)
    evaluate = [
        *aisle,
        "eval",
        "recsys",
        "--data",
        "scientific",
        "--split",
        "valid",
        "--format",
        "json",
        "--no-progress",
    ]
    before, before_time = run(evaluate, env)
    train = [
        *aisle,
        "train",
        # The served profile alone measures the encoder: no collaborative vectors beside it.
        "--learn",
        "encoder",
        "--sequences",
        "scientific",
        "--output",
        str(args.model_dir),
        "--overwrite",
        "--time-budget",
        str(args.time_budget),
        "--no-progress",
        *args.train_args.split(),
    ]
    trained, train_time = run(train, env)
    after, after_time = run([*evaluate, "--model", str(args.model_dir)], env)

    before_metrics = before["runs"]["next_item"]["metrics"]
    after_metrics = after["runs"]["next_item"]["metrics"]
    result = {
        "command": "python -m benchmarks.train_scientific " + " ".join(sys.argv[1:]),
        "protocol": __doc__.split("\n\n")[2].replace("\n", " "),
        "tuned_half_life": tuned,
        "before": {
            "command": " ".join(evaluate[2:]),
            "metrics": before_metrics,
            "timing": before_time,
            "model": before["runs"]["next_item"]["settings"]["model"],
        },
        "train": {"command": " ".join(train[2:]), "timing": train_time, "report": trained},
        "after": {
            "command": " ".join(evaluate[2:]) + f" --model {args.model_dir}",
            "metrics": after_metrics,
            "timing": after_time,
            "model": after["runs"]["next_item"]["settings"]["model"],
        },
        "unisrec_published_test": UNISREC,
        "beats_unisrec": {key: after_metrics[key] > UNISREC[key] for key in METRICS},
        "machine": describe_machine(REPO),
    }
    atomic_write_json(args.out, result)
    print(
        json.dumps(
            {k: result[k] for k in ("beats_unisrec",)}
            | {"before": before_metrics, "after": after_metrics, "train_wall_s": train_time["wall_s"]},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
