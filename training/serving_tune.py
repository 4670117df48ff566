"""Choosing a trained model's serving settings through a local ``aisle serve`` on held-out customers.

Both learners of ``aisle train`` end here, so that a trained model arrives with the blend that
serves it best and needs no hand-set setting: the held-out customers' histories are posted once,
``cadence_days`` apart (customers buy weeks apart), and every trial's settings are served by a
restarted service on the same stored events (``aisle.training.tune.service_trials``). The score is
``headline_score``: the mean of HR@10, NDCG@10, HR@50 and NDCG@50 of the next item.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisle.training.train_data import NextItemCase, TrainingData

log = logging.getLogger(__name__)

#: Days between the history events posted while tuning: customers buy weeks apart.
TUNING_CADENCE_DAYS = 30.0


@dataclass(frozen=True)
class ServingTuning:
    """How ``tune_serving`` chooses the settings.

    Attributes:
        trials: the settings tried (setting name → value); a tie goes to the earlier trial.
        cadence_days: days between the posted history events.
        limit: at most this many held-out cases (None: all).
    """

    trials: tuple[Mapping[str, float], ...]
    cadence_days: float = TUNING_CADENCE_DAYS
    limit: int | None = None


def tune_serving(
    model_dir: Path, data: TrainingData, cases: Sequence[NextItemCase], tuning: ServingTuning
) -> dict[str, Any]:
    """The trial of ``tuning`` maximising ``headline_score`` on ``cases``, served by ``aisle serve``
    on an index of ``data``'s items built with ``model_dir``; returns it with every trial.

    Raises:
        ValueError: ``model_dir`` already ships serving settings; they would fill every trial's
            unset keys, so the trials would not start from the service's defaults.
    """
    from aisle.embed.collaborative import SERVING_SETTINGS

    if (Path(model_dir) / SERVING_SETTINGS).exists():
        raise ValueError(f"{model_dir} already has {SERVING_SETTINGS}: tune a model before it ships its settings")
    from aisle.embed import create_encoder
    from aisle.embed.config import EncoderConfig
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import Catalog, Product
    from aisle.training.datasets import SequenceCase
    from aisle.training.eval_recsys import HttpRecommender
    from aisle.training.metrics import headline_score, summarize_ranks, target_rank
    from aisle.training.timeline import Timeline
    from aisle.training.tune import service_trials

    cases = list(cases)[: tuning.limit] if tuning.limit else list(cases)
    ids = data.item_ids
    sequence_cases = [SequenceCase(c.user, tuple(ids[r] for r in c.history), ids[c.target]) for c in cases]
    timeline = Timeline(step_s=tuning.cadence_days * 86_400.0)
    run_id = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="aisle-tune-serving-") as scratch:
        root = Path(scratch)
        catalog = Catalog([Product(id=item, title=text) for item, text in zip(ids, data.item_texts)])
        encoder = create_encoder(EncoderConfig(model=str(model_dir)))
        build_version(catalog, root / "index", encoder, BuildOptions(show_progress=False))

        def post(client: Any) -> None:
            HttpRecommender(client, run_id, timeline).post_histories(sequence_cases, time.time())

        def measure(client: Any) -> float:
            recommender = HttpRecommender(client, run_id, timeline)
            ranks = [target_rank(recommender.rank(case, 50), case.target) for case in sequence_cases]
            metrics = summarize_ranks(ranks)
            log.info("served held-out metrics: %s", metrics)
            return headline_score(metrics)

        trials = service_trials(
            root / "index",
            [dict(trial) for trial in tuning.trials],
            measure,
            base={},
            data_dir=root / "data",
            prepare=post,
            model=str(model_dir),
        )
    # max keeps the first of equal scores: a tie goes to the earlier trial.
    best = max(trials, key=lambda trial: trial["score"])
    return {
        "settings": {key: value for key, value in best.items() if key != "score"},
        "trials": trials,
        "cases": len(cases),
        "cadence_days": tuning.cadence_days,
        "metric": "mean of HR@10, NDCG@10, HR@50, NDCG@50 through aisle serve",
    }
