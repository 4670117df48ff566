"""``aisle gate``: a rebuild that publishes the new version only if it passes the quality gate.

    aisle gate --catalog FILE [--map ...] --index ROOT --model NEW_MODEL \\
        (--search-set NAME [--half odd] | --sequences NAME [--split valid]) [--margin 0.02]

Prints the gate report as JSON; exit status 0 when published, 3 when refused (the current
version keeps serving).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aisle.cli import add_common_options
from aisle.training.cli import guard
from aisle.training.datasets import QUERY_COLUMNS_HELP, parse_query_columns

REFUSED_STATUS = 3


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("gate", help="rebuild, compare with the current version, publish only if not worse")
    parser.add_argument("--catalog", type=Path, required=True, help="catalogue file of the new version")
    parser.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="catalogue column map")
    parser.add_argument("--index", type=Path, help="index root (default: settings index_dir)")
    parser.add_argument("--model", help="model of the new version (default: settings model)")
    parser.add_argument("--current-model", help="model the current version was built with (default: --model)")
    evals = parser.add_argument_group("eval set (one)")
    evals.add_argument("--search-set", help="labelled queries: amazon_google, fixture/<name> or a folder")
    evals.add_argument("--half", choices=["all", "even", "odd"], default="all")
    evals.add_argument("--query-columns", help=QUERY_COLUMNS_HELP)
    evals.add_argument("--sequences", help="next-item cases: scientific, fixture/scientific or a folder")
    evals.add_argument("--split", choices=["valid", "train"], default="valid")
    evals.add_argument("--limit", type=int, help="first N cases only")
    parser.add_argument("--margin", type=float, default=0.02, help="largest tolerated metric drop (default 0.02)")
    parser.add_argument("--no-progress", action="store_true")
    add_common_options(parser)
    parser.set_defaults(handler=guard(_gate))


def _gate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from aisle.cli import load_image_encoder
    from aisle.index.build import BuildOptions
    from aisle.index.catalog import load_catalog, parse_column_map
    from aisle.settings import with_overrides
    from aisle.training.datasets import load_search_set, load_sequence_set
    from aisle.training.gate import EvalSet, GateRefused, gated_build
    from aisle.training.indexes import create_encoder_for
    from aisle.training.settings import TrainingSettings

    if bool(args.search_set) == bool(args.sequences):
        raise ValueError("give one eval set: --search-set or --sequences")
    settings = with_overrides(TrainingSettings, index_dir=args.index)
    column_map = {**settings.columns, **parse_column_map(args.map)}
    catalog = load_catalog(args.catalog, column_map)
    if args.search_set:
        search = load_search_set(args.search_set, query_columns=parse_query_columns(args.query_columns)).half(args.half)
        if args.limit:
            search = replace(search, queries=search.queries[: args.limit])
        eval_set = EvalSet(search=search)
    else:
        sequences = load_sequence_set(args.sequences, args.split)
        if args.limit:
            sequences = replace(sequences, cases=sequences.cases[: args.limit])
        eval_set = EvalSet(sequences=sequences, decay=settings.decay_config())
    encoder = create_encoder_for(settings, args.model)
    current_encoder = create_encoder_for(settings, args.current_model) if args.current_model else None
    options = BuildOptions(show_progress=not args.no_progress)
    try:
        report = gated_build(
            catalog,
            settings.index_dir,
            encoder,
            current_encoder,
            eval_set,
            margin=args.margin,
            options=options,
            image_encoder=load_image_encoder(settings),
        )
    except GateRefused as refused:
        print(json.dumps(refused.report.to_dict(), indent=2, sort_keys=True))
        print(f"aisle gate: {refused.report.reason}; nothing was published", file=sys.stderr)
        return REFUSED_STATUS
    print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    print(f"aisle gate: {report.reason}; published {report.candidate_version}", file=sys.stderr)
    return 0
