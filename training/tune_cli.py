"""``aisle tune``: find settings on a validation split and write them to a YAML settings file.

    aisle tune --output tuned.yaml --sequences scientific [--split train] [--blend]
    aisle tune --output tuned.yaml --search-set amazon_google [--half even]

The file holds only the tuned keys; pass it with ``--config`` (or ``AISLE_CONFIG``) to ``aisle
serve``, ``aisle eval`` and ``aisle train``. Start from an existing file with ``--config``: its
values are the base every trial varies from.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aisle.cli import add_common_options
from aisle.training.cli import guard
from aisle.training.datasets import QUERY_COLUMNS_HELP, parse_query_columns


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tune", help="tune half-lives, blend and fusion settings on a validation split")
    parser.add_argument("--output", type=Path, required=True, help="YAML settings file to write")
    parser.add_argument("--sequences", help="next-item cases: scientific, fixture/scientific or a folder")
    parser.add_argument("--catalog", type=Path, help="the shop's catalogue (with --events)")
    parser.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="catalogue column map")
    parser.add_argument("--events", type=Path, help="the shop's event log: user_id, item_id, timestamp[, type]")
    parser.add_argument("--trials", type=int, default=40, help="random-search trials with several event types")
    parser.add_argument(
        "--split",
        choices=["train", "valid"],
        default="train",
        help="cases to tune on (default train: each user's training rows)",
    )
    parser.add_argument(
        "--blend", action="store_true", help="also tune the recommendation blend through a local service (slow)"
    )
    parser.add_argument("--search-set", help="labelled queries for the fusion weights (through a local service)")
    parser.add_argument("--half", choices=["all", "even", "odd"], default="even")
    parser.add_argument("--query-columns", help=QUERY_COLUMNS_HELP)
    parser.add_argument("--model", help="model to build the tuning index with (default: settings)")
    parser.add_argument("--step-s", type=float, default=86_400.0, help="seconds between untimed history items")
    parser.add_argument("--event-type", default="purchase")
    parser.add_argument("--limit", type=int, help="tune on the first N cases only")
    parser.add_argument("--seed", type=int, default=13, help="seeds the choice of cases with --limit")
    parser.add_argument("--no-progress", action="store_true")
    add_common_options(parser)
    parser.set_defaults(handler=guard(_tune))


def _sample(items: list, limit: int | None, seed: int) -> list:
    """A seeded random sample of ``limit`` items, in their original order (all without a limit)."""
    if not limit or limit >= len(items):
        return items
    import random

    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


def _sequences(args: argparse.Namespace) -> Any:
    from aisle.index.catalog import load_catalog, parse_column_map
    from aisle.training.datasets import events_sequence_set, load_sequence_set
    from aisle.training.train_sources import read_events

    if args.sequences:
        return load_sequence_set(args.sequences, args.split)
    if not args.catalog:
        raise ValueError("--events needs --catalog")
    catalog = load_catalog(args.catalog, parse_column_map(args.map))
    return events_sequence_set(catalog, read_events(args.events), args.catalog.stem, args.split)


def _tune(args: argparse.Namespace) -> int:
    from aisle.training import tune
    from aisle.training.datasets import load_search_set
    from aisle.training.indexes import build_eval_index, create_encoder_for
    from aisle.training.settings import TrainingSettings
    from aisle.training.timeline import Timeline

    if not (args.sequences or args.events) and not args.search_set:
        raise ValueError("give --sequences (or --catalog with --events) and/or --search-set to tune on")
    if args.sequences and args.events:
        raise ValueError("give --sequences or --events, not both")
    settings = TrainingSettings()
    encoder = create_encoder_for(settings, args.model)
    model = str(Path(args.model).resolve()) if args.model and Path(args.model).exists() else args.model
    tuned: dict[str, Any] = {}
    report: dict[str, Any] = {"model": encoder.fingerprint}
    started = time.perf_counter()
    if args.sequences or args.events:
        data = _sequences(args)
        data = replace(data, cases=_sample(data.cases, args.limit, args.seed))
        timeline = Timeline(step_s=args.step_s, event_type=args.event_type)
        built = build_eval_index(
            data.catalog(), f"sequences-{data.name}", encoder, settings, show_progress=not args.no_progress
        )
        best, trials = tune.tune_decay(
            built.index, data, timeline, settings.decay_config(), trials=args.trials, seed=args.seed
        )
        tuned.update(best)
        report["half_life"] = {"data": f"{data.name}/{args.split}", "cases": len(data.cases), "trials": trials}
        if args.blend:
            with tempfile.TemporaryDirectory(prefix="aisle-tune-") as scratch:
                blend, trials = tune.tune_blend(built.root, data, timeline, tuned, Path(scratch), model)
            tuned.update(blend)
            report["blend"] = {"trials": trials}
    if args.search_set:
        search_set = load_search_set(args.search_set, query_columns=parse_query_columns(args.query_columns)).half(
            args.half
        )
        built = build_eval_index(
            search_set.load_catalog(), search_set.catalog_name, encoder, settings, show_progress=not args.no_progress
        )
        fusion, trials = tune.tune_fusion(built.root, search_set, tuned, model)
        tuned.update(fusion)
        report["fusion"] = {"data": search_set.name, "queries": len(search_set.queries), "trials": trials}
    report["seconds"] = round(time.perf_counter() - started, 1)
    tune.write_settings(
        args.output,
        tuned,
        {"tuned_on": {k: v.get("data") for k, v in report.items() if isinstance(v, dict) and "data" in v}},
    )
    print(json.dumps({"settings": tuned, "written_to": str(args.output), **report}, indent=2, sort_keys=True))
    return 0
