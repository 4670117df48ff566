"""``aisle train``: fine-tunes the text encoder on the shop's data, learns collaborative item vectors
from its histories, and ships the model with the serving blend chosen for it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisle.cli import add_common_options
from aisle.training.cli import guard
from aisle.training.datasets import QUERY_COLUMNS_HELP, parse_query_columns

LEARNERS = ("auto", "encoder", "collaborative", "both")
#: Share of ``--time-budget`` the collaborative vectors get when both are learnt: they train in a
#: fraction of the encoder's time, and the encoder keeps improving to the end of its budget.
COLLABORATIVE_BUDGET_SHARE = 0.1


def register(commands: argparse._SubParsersAction) -> None:
    from aisle.training.collaborative import CollaborativeOptions

    parser = commands.add_parser(
        "train", help="fine-tune the text encoder and learn collaborative item vectors on the shop's data"
    )
    parser.add_argument("--output", type=Path, required=True, help="directory of the trained model")
    parser.add_argument("--base-model", help="model to start from (default: settings model)")
    parser.add_argument(
        "--learn",
        choices=LEARNERS,
        default="auto",
        help="encoder: fine-tune the text encoder; collaborative: keep the base encoder and learn item vectors "
        "from the event sequences; both: the encoder, then collaborative vectors over it; auto (default): both "
        "when the data has next-item histories, else the encoder. The recommendation blend is then chosen "
        "for the model (aisle-serving.json: serving it needs no setting)",
    )
    data = parser.add_argument_group("training data (one catalogue)")
    data.add_argument("--sequences", help="shared sequence set: scientific, fixture/scientific or a folder")
    data.add_argument("--search-set", help="shared search set: amazon_google, fixture/amazon_google or a folder")
    data.add_argument(
        "--half",
        choices=["all", "even", "odd"],
        default="all",
        help="train on these queries of --search-set (default all)",
    )
    data.add_argument("--catalog", type=Path, help="the shop's catalogue file")
    data.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="catalogue column map")
    data.add_argument("--query-columns", help=QUERY_COLUMNS_HELP)
    data.add_argument("--events", type=Path, help="interaction log: user_id, item_id, timestamp[, type]")
    data.add_argument("--queries", type=Path, help="queries file: query_id, query")
    data.add_argument("--qrels", type=Path, help="labels file: query_id, product_id, gain")
    knobs = parser.add_argument_group("training")
    knobs.add_argument(
        "--time-budget", type=float, default=1500.0, help="seconds of learning, both learners together (default 1500)"
    )
    knobs.add_argument("--max-steps", type=int, help="stop after this many steps")
    knobs.add_argument("--batch-size", type=int, default=128)
    knobs.add_argument("--learning-rate", type=float, default=1e-4)
    knobs.add_argument("--temperature", type=float, default=0.05)
    knobs.add_argument("--trainable-layers", type=int, default=2, help="top transformer layers trained")
    knobs.add_argument(
        "--fresh-history", type=int, default=4, help="most recent history items in each training profile (default 4)"
    )
    knobs.add_argument(
        "--hard-negatives", type=int, default=1, help="search: mined hard negatives per query (default 1)"
    )
    knobs.add_argument(
        "--random-negatives", type=int, default=64, help="uniform negatives per step, both objectives (default 64)"
    )
    knobs.add_argument("--refresh-every", type=int, default=25, help="steps between full re-encodings of the catalogue")
    knobs.add_argument("--dropout", action="store_true", help="train with the model's dropout (default off)")
    knobs.add_argument("--max-seq-length", type=int, default=64)
    knobs.add_argument("--eval-every", type=int, default=50, help="steps between validations")
    knobs.add_argument("--patience", type=int, default=4, help="validations without gain before stopping")
    knobs.add_argument("--validation-fraction", type=float, default=0.1)
    knobs.add_argument("--seed", type=int, default=13)
    knobs.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    knobs.add_argument("--step-s", type=float, default=86_400.0, help="seconds between untimed history items")
    knobs.add_argument("--event-type", default="purchase", help="event type of untimed history items")
    collaborative = parser.add_argument_group("collaborative vectors (--learn collaborative, both or auto)")
    collaborative.add_argument(
        "--dim", type=int, default=CollaborativeOptions.dim, help="size of the item vectors (default %(default)s)"
    )
    collaborative.add_argument(
        "--max-history", type=int, default=20, help="latest history items a customer's vector weighs (default 20)"
    )
    collaborative.add_argument("--epochs", type=int, default=60, help="most passes over the cases (default 60)")
    parser.add_argument(
        "--no-tune-serving",
        action="store_true",
        help="skip choosing the model's recommendation blend (aisle-serving.json) through a local aisle serve on "
        "the customers held out of the training",
    )
    parser.add_argument("--tune-limit", type=int, help="tune the serving blend on at most this many held-out cases")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    parser.add_argument("--no-progress", action="store_true")
    add_common_options(parser)
    parser.set_defaults(handler=guard(_train))


def _training_data(args: argparse.Namespace) -> Any:
    from aisle.index.catalog import load_catalog, parse_column_map
    from aisle.training import train_sources
    from aisle.training.datasets import load_search_set, load_sequence_set

    chosen = [name for name in ("sequences", "search_set", "catalog") if getattr(args, name)]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --sequences, --search-set or --catalog (with --events/--queries)")
    if args.sequences:
        return train_sources.from_sequence_set(load_sequence_set(args.sequences, "train"))
    if args.search_set:
        search_set = load_search_set(
            args.search_set, parse_column_map(args.map), parse_query_columns(args.query_columns)
        ).half(args.half)
        return train_sources.from_search_set(search_set)
    if bool(args.queries) != bool(args.qrels):
        raise ValueError("--queries and --qrels go together")
    queries = train_sources.read_labelled_queries(args.queries, args.qrels) if args.queries else None
    catalog = load_catalog(args.catalog, parse_column_map(args.map))
    return train_sources.from_catalog(catalog, events_file=args.events, queries=queries)


def _learners(choice: str, data: Any) -> tuple[bool, bool]:
    """(fine-tune the encoder, learn collaborative vectors) for ``--learn choice`` on ``data``.

    ``auto`` adds the vectors only when there are cases enough to learn them from, so that a shop
    with a handful of histories still gets its fine-tuned encoder rather than an error after it.
    """
    from aisle.training.collaborative import MIN_CASES

    if choice == "auto":
        return True, len(data.sequences) >= MIN_CASES
    if choice == "both" and not data.sequences:
        raise ValueError("--learn both needs next-item histories (--sequences, or --catalog with --events)")
    return choice in ("encoder", "both"), choice in ("collaborative", "both")


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from aisle.training.settings import TrainingSettings
    from aisle.training.timeline import Timeline
    from aisle.training.train import TrainOptions, train_model, tune_encoder_serving

    settings = TrainingSettings()
    started = time.perf_counter()
    data = _training_data(args)
    fine_tune, collaborative = _learners(args.learn, data)
    if not fine_tune:
        base_model = args.base_model or settings.model
        report = _train_collaborative(args, data, settings, base_model, args.time_budget, overwrite=args.overwrite)
        return _finish(
            report,
            started,
            lambda total: (
                f"trained {args.output} in {total:.0f} s: collaborative vectors after "
                f"{report['collaborative']['epochs']} epochs, serving settings {report['serving']['settings']}.\n"
                f"Serve it: AISLE_MODEL={args.output} (the index of the base model serves it; no setting to change)"
            ),
        )
    encoder_budget = args.time_budget * (1 - COLLABORATIVE_BUDGET_SHARE) if collaborative else args.time_budget
    options = TrainOptions(
        base_model=args.base_model or settings.model,
        output=args.output,
        trainable_layers=args.trainable_layers,
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        fresh_history=args.fresh_history,
        hard_negatives=args.hard_negatives,
        random_negatives=args.random_negatives,
        refresh_every=args.refresh_every,
        dropout=args.dropout,
        time_budget_s=encoder_budget,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        patience=args.patience,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        threads=args.threads,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    timeline = Timeline(step_s=args.step_s, event_type=args.event_type)
    result = train_model(data, options, decay=settings.decay_config(), timeline=timeline)
    summary = result.to_dict()
    if not args.no_export:
        from aisle.embed import prepare_model

        tick = time.perf_counter()
        config = replace(settings.encoder_config(), model=str(args.output.resolve()), backend="onnx-int8")
        summary["export"] = str(prepare_model(config))
        summary["seconds"]["export"] = round(time.perf_counter() - tick, 2)
    if collaborative:
        # Over the fine-tuned encoder's vectors, holding out the same customers (same seed and
        # fraction), so the blend is chosen on customers neither learner saw.
        tick = time.perf_counter()
        report = _train_collaborative(
            args,
            data,
            settings,
            str(args.output),
            args.time_budget * COLLABORATIVE_BUDGET_SHARE,
            overwrite=True,
            learned_by="aisle train --learn both",
        )
        summary["serving"] = report.pop("serving")
        summary["collaborative"] = report
        summary["seconds"]["collaborative"] = round(time.perf_counter() - tick, 2)
    elif not args.no_tune_serving:
        tick = time.perf_counter()
        summary["serving"] = tune_encoder_serving(data, result, limit=args.tune_limit)
        summary["seconds"]["tune"] = round(time.perf_counter() - tick, 2)
    best = (
        "no validation split"
        if result.best_score is None
        else (f"best validation score {result.best_score:.4f} at step {result.best_step}")
    )
    learnt = "; collaborative vectors over it" if collaborative else ""
    return _finish(
        summary,
        started,
        lambda total: (
            f"trained {args.output} in {total:.0f} s: {result.steps} steps, stopped by "
            f"{result.stopped_because}, {best}{learnt}; serving settings "
            f"{summary['serving']['settings'] if summary.get('serving') else 'not tuned'}.\n"
            f"Rebuild the index with it: aisle build --catalog FILE --model {args.output}"
            f"  (or AISLE_MODEL={args.output})"
        ),
    )


def _finish(report: dict[str, Any], started: float, message: Callable[[float], str]) -> int:
    """Records the total time, says what was trained on stderr and prints ``report`` as JSON."""
    total = report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    print(message(total), file=sys.stderr)
    print(json.dumps(report, indent=2, sort_keys=True, default=str))
    return 0


def _train_collaborative(
    args: argparse.Namespace,
    data: Any,
    settings: Any,
    base_model: str,
    budget_s: float,
    *,
    overwrite: bool,
    learned_by: str = "aisle train --learn collaborative",
) -> dict[str, Any]:
    """Learns collaborative vectors over ``base_model`` into ``args.output``; returns the report.

    ``budget_s`` covers the held-out run and the final run, which repeats its epochs.
    """
    import logging

    from aisle.training.collaborative import CollaborativeOptions
    from aisle.training.collaborative_model import COLLABORATIVE_TRIALS, train_collaborative_model
    from aisle.training.serving_tune import ServingTuning

    if not args.no_progress:
        logging.getLogger("aisle.training").setLevel(logging.INFO)
    options = CollaborativeOptions(
        dim=args.dim,
        max_history=args.max_history,
        max_epochs=args.epochs,
        validation_fraction=args.validation_fraction,
        time_budget_s=budget_s / 2,
        seed=args.seed,
        threads=args.threads,
        patience=args.patience,
    )
    tuning = None if args.no_tune_serving else ServingTuning(COLLABORATIVE_TRIALS, limit=args.tune_limit)
    return train_collaborative_model(
        data,
        args.output,
        base_model,
        settings.encoder_config(),
        options,
        tuning,
        overwrite=overwrite,
        learned_by=learned_by,
    )
