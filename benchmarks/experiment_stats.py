"""Does the experiment report tell the truth? A/A false positives, power, interval coverage, peeking.

Usage::

    python -m benchmarks.experiment_stats [--aa-runs 1000] [--power-runs 500] [--seed 11]
        [--out benchmarks/results/experiment_stats.json]

In-process: visitors' outcomes are drawn from a known model and analysed by the report's own
code (``aisle.service.experiments.report``: ``VisitorOutcomes``, ``variant_lifts``, the plan),
the same functions ``GET /experiments/{name}`` runs on the outcomes read from the databases.
(The HTTP path, assignment and attribution through a running service, is what
``benchmarks/simulator.py`` measures; thousands of experiments through it would not fit a shared
two-core machine.)

The visitor model follows the simulator's shape: 1 + Poisson(1) ranked responses seen, clicks
Poisson(0.3 per response), an add-to-cart with probability 0.12, a purchase with probability
``conversion`` (5 % in control), revenue log-normal (mean ≈ 48) per purchase.

* **A/A**: both variants drawn from the control model, 5,000 visitors each; the share of runs
  with p < 0.05 per metric should be about 5 %.
* **Power**: the report's plan (``visitors_needed_per_variant.conversion`` for a 10 % lift),
  read from a 20,000-visitor A/A pilot exactly as a shop would; then runs at that traffic with a
  true conversion lift of 10 %: the share with p < 0.05 (and a positive lift), and the share whose
  95 % interval for the lift covers 10 %.
* **Peeking**: A/A runs read at 10 equally spaced looks, stopping at the first p < 0.05:
  the fixed-horizon p-value's false-positive rate inflates; the sequential p-value (mSPRT,
  running minimum over the looks) stays below 5 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.storage import atomic_write_json
from aisle.service.experiments.config import ExperimentConfig
from aisle.service.experiments.report import METRICS, VisitorOutcomes, _plan, variant_lifts
from aisle.service.experiments.stats import msprt_p_value

REPO = Path(__file__).resolve().parent.parent
BASE_CONVERSION = 0.05
TRUE_LIFT = 0.10
AA_VISITORS = 5_000
PILOT_VISITORS = 20_000
LOOKS = 10
EXPERIMENT = ExperimentConfig.model_validate(
    {
        "name": "study",
        "surfaces": ["recommendations"],
        "variants": [{"name": "control", "share": 0.5, "control": True}, {"name": "treatment", "share": 0.5}],
    }
)


def visitors(rng: np.random.Generator, n: int, conversion: float) -> VisitorOutcomes:
    """``n`` visitors' outcomes (see the module docstring)."""
    impressions = 1 + rng.poisson(1.0, n)
    clicks = rng.poisson(0.3 * impressions)
    bought = rng.random(n) < conversion
    carts = ((rng.random(n) < 0.12) | bought).astype(np.float64)
    revenue = np.where(bought, rng.lognormal(mean=3.5, sigma=0.8, size=n), 0.0)
    return VisitorOutcomes(
        impressions.astype(np.float64), clicks.astype(np.float64), carts, bought.astype(np.float64), revenue
    )


def aa_study(rng: np.random.Generator, runs: int) -> dict[str, Any]:
    hits = {metric: 0 for metric in METRICS}
    for _ in range(runs):
        lifts = variant_lifts(visitors(rng, AA_VISITORS, BASE_CONVERSION), visitors(rng, AA_VISITORS, BASE_CONVERSION))
        for metric in METRICS:
            hits[metric] += lifts[metric].p_value < 0.05
    return {
        "runs": runs,
        "visitors_per_variant": AA_VISITORS,
        "false_positive_rate_at_0.05": {metric: round(hits[metric] / runs, 4) for metric in METRICS},
    }


def planned_traffic(rng: np.random.Generator) -> dict[str, Any]:
    """The report's plan after a pilot: what a shop would read before running the real test."""
    pilot = visitors(rng, PILOT_VISITORS, BASE_CONVERSION)
    return _plan(EXPERIMENT, pilot, pilot.estimates(), PILOT_VISITORS)


def power_study(rng: np.random.Generator, runs: int, n: int) -> dict[str, Any]:
    detected = covered = covered_revenue = 0
    for _ in range(runs):
        lifts = variant_lifts(visitors(rng, n, BASE_CONVERSION * (1 + TRUE_LIFT)), visitors(rng, n, BASE_CONVERSION))
        conversion = lifts["conversion"]
        detected += conversion.p_value < 0.05 and conversion.lift > 0
        covered += conversion.low <= TRUE_LIFT <= conversion.high
        # Revenue per visitor also rises by exactly the conversion lift in this model.
        covered_revenue += lifts["revenue_per_visitor"].low <= TRUE_LIFT <= lifts["revenue_per_visitor"].high
    return {
        "runs": runs,
        "visitors_per_variant": n,
        "true_conversion_lift": TRUE_LIFT,
        "detected_at_0.05": round(detected / runs, 4),
        "conversion_lift_ci95_covers_truth": round(covered / runs, 4),
        "revenue_lift_ci95_covers_truth": round(covered_revenue / runs, 4),
    }


def peeking_study(rng: np.random.Generator, runs: int, n: int) -> dict[str, Any]:
    fixed = sequential = 0
    for _ in range(runs):
        treatment, control = visitors(rng, n, BASE_CONVERSION), visitors(rng, n, BASE_CONVERSION)
        fixed_hit = sequential_hit = False
        running_min = 1.0
        for look in range(1, LOOKS + 1):
            size = n * look // LOOKS
            mask = np.zeros(n, dtype=bool)
            mask[:size] = True
            result = variant_lifts(treatment.subset(mask), control.subset(mask))["conversion"]
            fixed_hit |= result.p_value < 0.05
            tau = 0.1 * BASE_CONVERSION  # the report's mixing scale: minimum_effect × control rate
            running_min = min(running_min, msprt_p_value(result.difference, result.difference_variance, tau * tau))
            sequential_hit |= running_min < 0.05
        fixed += fixed_hit
        sequential += sequential_hit
    return {
        "runs": runs,
        "looks": LOOKS,
        "visitors_per_variant_at_last_look": n,
        "false_positive_rate_fixed_p_stop_at_first_below_0.05": round(fixed / runs, 4),
        "false_positive_rate_sequential_p": round(sequential / runs, 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aa-runs", type=int, default=1000)
    parser.add_argument("--power-runs", type=int, default=500)
    parser.add_argument("--peeking-runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "experiment_stats.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    plan = planned_traffic(rng)
    needed = plan["visitors_needed_per_variant"]["conversion"]
    if needed is None or not math.isfinite(needed):
        raise SystemExit("the pilot gave no plan")
    result = {
        "simulated": "in-process: visitor outcomes drawn from a known model, analysed by the report's own code",
        "seed": args.seed,
        "base_conversion": BASE_CONVERSION,
        "aa": aa_study(rng, args.aa_runs),
        "plan_from_pilot": plan,
        "power": power_study(rng, args.power_runs, int(needed)),
        "peeking": peeking_study(rng, args.peeking_runs, AA_VISITORS * 2),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
