"""``aisle tune``: settings search on a validation split, written to a YAML settings file.

What is tuned, and how it is measured:

* ``half_lives_s`` and ``event_weights`` (the profile decay) on next-item cases, in process
  (a grid of half-lives for one event type, a seeded random search for several):
  ``aisle.index.profile`` over the index's vectors, the same computation the service makes;
* ``recommend_profile_cap``, ``personal_half_mass``, ``bought_together_weight`` and
  ``recommend_lexical_weight`` (the recommendation blend) and ``fusion_*`` (hybrid search)
  through the service itself — they are its code — by restarting a local ``aisle serve`` with
  each candidate setting (``aisle.training.local_service``); the events are posted once and
  re-read at every restart.

Tune on training data only (the UniSRec train split, or the even half of a search set's
queries) and report on held-out data. The file is written atomically and is usable as
``AISLE_CONFIG`` / ``--config`` by every command.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import DecayConfig, TypeDecay, decay_from_overrides
from aisle.index.storage import atomic_write_bytes
from aisle.training.datasets import SearchSet, SequenceSet
from aisle.training.eval_recsys import evaluate_profiles
from aisle.training.eval_search import evaluate_http as search_http
from aisle.training.local_service import local_service
from aisle.training.metrics import HEADLINE
from aisle.training.timeline import Timeline

log = logging.getLogger(__name__)

#: Half-lives tried, in steps of the timeline (∞ = no decay).
HALF_LIFE_STEPS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 30.0)
FUSION_GRID: tuple[dict[str, Any], ...] = (
    *(
        {"fusion_method": "weighted", "fusion_dense_weight": w, "fusion_lexical_weight": round(1 - w, 2)}
        for w in (0.2, 0.35, 0.5, 0.65, 0.8)
    ),
    {"fusion_method": "rrf", "fusion_dense_weight": 1.0, "fusion_lexical_weight": 1.0},
)
#: The profile's share of a recommendation score grows with the user's decayed evidence; a
#: fine-tuned model spreads its scores differently, and on Amazon Scientific it needed a share
#: that grows four times faster (half mass 1) for popularity not to take over its top 10. The
#: title match is tried off and on: some shops' titles say little (film titles, say).
BLEND_GRID: tuple[dict[str, Any], ...] = tuple(
    {
        "recommend_profile_cap": cap,
        "personal_half_mass": half_mass,
        "bought_together_weight": together,
        "recommend_lexical_weight": title_match,
    }
    for cap, half_mass, together, title_match in itertools.product(
        (0.8, 0.9, 1.0), (1.0, 4.0), (0.0, 0.2, 0.4, 0.8), (0.0, 0.3)
    )
)


def tune_half_life(
    index: LoadedIndex,
    data: SequenceSet,
    timeline: Timeline,
    base: DecayConfig,
    steps: Iterable[float] = HALF_LIFE_STEPS,
    metric: str = "NDCG@10",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The half-life of ``timeline.event_type`` maximising ``metric``, and every trial."""
    trials: list[dict[str, Any]] = []
    for step in steps:
        half_life = step * timeline.step_s
        changed: dict[str, Any] = {timeline.event_type: TypeDecay(base.weight(timeline.event_type), half_life)}
        decay = replace(base, **changed)
        report = evaluate_profiles(index, data, decay=decay, timeline=timeline)
        trials.append(
            {
                "half_life_steps": step,
                "half_lives_s": {timeline.event_type: half_life},
                **{k: report.metrics[k] for k in HEADLINE},
            }
        )
        log.info("half-life %.2f steps: %s", step, report.metrics)
    best = max(trials, key=lambda t: (t[metric], -t["half_life_steps"]))
    return {"half_lives_s": {**_half_lives(base), **best["half_lives_s"]}}, trials


def tune_decay(
    index: LoadedIndex,
    data: SequenceSet,
    timeline: Timeline,
    base: DecayConfig,
    trials: int = 40,
    seed: int = 13,
    metric: str = "NDCG@10",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Event weights and half-lives of the event types in ``data`` maximising ``metric``.

    With one event type only its half-life matters (weights cancel in the normalised profile):
    the grid of ``tune_half_life``. With several, a seeded random search around ``base``
    (each weight × 2^U(−2, 2), each half-life × 2^U(−3, 3)), ``base`` itself being trial 0.
    """
    import random

    kinds = sorted({kind for case in data.cases for kind in (case.types or (timeline.event_type,))})
    if len(kinds) <= 1:
        return tune_half_life(
            index, data, replace(timeline, event_type=kinds[0] if kinds else timeline.event_type), base, metric=metric
        )
    rng = random.Random(seed)
    weights = {kind: base.weight(kind) for kind in kinds}
    half_lives = _half_lives(base)
    results: list[dict[str, Any]] = []
    for number in range(trials):
        trial_weights = (
            weights if number == 0 else {k: round(w * 2 ** rng.uniform(-2, 2), 4) for k, w in weights.items()}
        )
        trial_lives = (
            half_lives
            if number == 0
            else {k: round(h * 2 ** rng.uniform(-3, 3), 1) if k in kinds else h for k, h in half_lives.items()}
        )
        decay = decay_from_overrides(trial_weights, trial_lives, base.decay, base.activity_half_life)
        report = evaluate_profiles(index, data, decay=decay, timeline=timeline)
        results.append(
            {
                "event_weights": trial_weights,
                "half_lives_s": trial_lives,
                **{k: report.metrics[k] for k in HEADLINE},
            }
        )
    best = max(results, key=lambda t: t[metric])
    return {"event_weights": best["event_weights"], "half_lives_s": best["half_lives_s"]}, results


def _half_lives(decay: DecayConfig) -> dict[str, float]:
    from aisle.index.profile import EVENT_TYPES

    return {kind: decay.for_type(kind).half_life_s for kind in EVENT_TYPES}


def service_trials(
    index_root: Path,
    grid: Iterable[dict[str, Any]],
    measure: Callable[[Any], float],
    *,
    base: dict[str, Any],
    data_dir: Path | None = None,
    prepare: Callable[[Any], None] | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Runs ``measure(client)`` on a local service started with each setting of ``grid``.

    Args:
        index_root: the index the service serves.
        grid: candidate settings (setting name → value), each applied on top of ``base``.
        measure: the score of one running service (higher is better).
        base: settings every trial shares (e.g. the tuned half-lives).
        data_dir: the service's event store, kept across restarts.
        prepare: called once with the first service's client (to post the events).
        model: the model the index was built with (the service must encode queries with it).
    """
    trials = []
    for number, setting in enumerate(grid):
        environment = {f"AISLE_{key.upper()}": _env_value(value) for key, value in {**base, **setting}.items()}
        if model is not None:
            environment["AISLE_MODEL"] = model
        with local_service(index_root, environment=environment, data_dir=data_dir) as client:
            if number == 0 and prepare is not None:
                prepare(client)
            score = measure(client)
        trials.append({**setting, "score": round(score, 4)})
        log.info("trial %s: %.4f", setting, score)
    return trials


def _env_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)


def tune_fusion(
    index_root: Path,
    search_set: SearchSet,
    base: dict[str, Any],
    model: str | None = None,
) -> tuple[dict[str, Any], list]:
    """Fusion settings maximising hybrid MRR@10 on ``search_set`` (``model``: the index's model)."""
    trials = service_trials(
        index_root,
        FUSION_GRID,
        lambda client: float(search_http(client, search_set, "hybrid", "tune").metrics["MRR@10"]),
        base=base,
        model=model,
    )
    best = max(trials, key=lambda t: t["score"])
    return {k: v for k, v in best.items() if k != "score"}, trials


def tune_blend(
    index_root: Path,
    data: SequenceSet,
    timeline: Timeline,
    base: dict[str, Any],
    data_dir: Path,
    model: str | None = None,
) -> tuple[dict[str, Any], list]:
    """Recommendation blend settings maximising served NDCG@10 on ``data``'s cases."""
    run_id = secrets.token_hex(4)
    cases = data.cases

    def post(client: Any) -> None:
        import time

        from aisle.training.eval_recsys import HttpRecommender

        HttpRecommender(client, run_id, timeline).post_histories(cases, time.time())

    def measure(client: Any) -> float:
        from aisle.training.eval_recsys import HttpRecommender
        from aisle.training.metrics import summarize_ranks, target_rank

        recommender = HttpRecommender(client, run_id, timeline)
        ranks = [target_rank(recommender.rank(case, 10), case.target) for case in cases]
        return float(summarize_ranks(ranks, (10,))["NDCG@10"])

    trials = service_trials(
        index_root,
        BLEND_GRID,
        measure,
        base={**base, "recommend_exclude": "none"},
        data_dir=data_dir,
        prepare=post,
        model=model,
    )
    best = max(trials, key=lambda t: t["score"])
    return {k: v for k, v in best.items() if k != "score"}, trials


def write_settings(path: Path, settings: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Writes the tuned settings as YAML (atomically), with how they were found as a comment."""
    import yaml

    header = "".join(f"# {line}\n" for line in json.dumps(provenance, indent=1, sort_keys=True).splitlines())
    body = yaml.safe_dump(settings, sort_keys=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), ("# written by `aisle tune`\n" + header + body).encode("utf-8"))
