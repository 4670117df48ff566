"""``aisle eval``: reproducible offline evaluation on real data, JSON and a markdown table.

``aisle eval search``    recall@10, MRR@10, NDCG@10 of queries against qrels.
``aisle eval recsys``    HR@10/50, NDCG@10/50 of next-item prediction, full ranking.
``aisle eval personal``  personalized search lift (MovieLens tags).

``--engine index`` (default for search and recsys) evaluates in process on a version built from
the data set (``aisle.training.indexes``); ``--engine service`` starts ``aisle serve`` on that version and
evaluates through HTTP; ``--via-http URL`` evaluates a service already running on the same data.
"""

from __future__ import annotations

import argparse
import secrets
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from aisle.cli import add_common_options
from aisle.training.cli import guard
from aisle.training.datasets import QUERY_COLUMNS_HELP, parse_query_columns
from aisle.training.report import FORMATS, emit, metric_rows

SEARCH_MODES = ("dense", "lexical", "hybrid")


def add_engine_options(parser: argparse.ArgumentParser, default_engine: str) -> None:
    parser.add_argument(
        "--engine",
        choices=["index", "service"],
        default=default_engine,
        help=f"index: in process; service: a local `aisle serve` over HTTP (default {default_engine})",
    )
    parser.add_argument("--via-http", metavar="URL", help="evaluate a running service (same catalogue indexed)")
    parser.add_argument("--index", type=Path, help="existing index root (default: build one for the data set)")
    parser.add_argument("--model", help="model to build the evaluation index with (default: settings)")
    add_common_options(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="both",
        help="json (stdout), markdown (stdout) or both (table on stderr, JSON on stdout)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``aisle eval`` with its ``search``, ``recsys`` and ``personal`` subcommands."""
    eval_parser = commands.add_parser("eval", help="offline evaluation on real data (JSON + markdown table)")
    kinds = eval_parser.add_subparsers(dest="eval_kind", required=True, metavar="KIND")

    search = kinds.add_parser("search", help="search relevance against qrels")
    search.add_argument(
        "--data",
        default="amazon_google",
        help="amazon_google, esci_fragments, fixture/<name> or a folder (default amazon_google)",
    )
    search.add_argument(
        "--half",
        choices=["all", "even", "odd"],
        default="all",
        help="queries at even or odd positions in id order (default all)",
    )
    search.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="catalogue column map")
    search.add_argument("--query-columns", help=QUERY_COLUMNS_HELP)
    search.add_argument(
        "--mode",
        action="append",
        choices=[*SEARCH_MODES, "all"],
        help="retrieval mode(s); default dense+lexical in process, hybrid over HTTP",
    )
    add_engine_options(search, "index")
    search.set_defaults(handler=guard(run_search))

    recsys = kinds.add_parser("recsys", help="next-item recommendation, full ranking")
    recsys.add_argument("--data", default="scientific", help="scientific, fixture/scientific or a folder")
    recsys.add_argument("--split", choices=["valid", "train"], default="valid")
    recsys.add_argument("--mask-seen", action="store_true", help="leave history items out of the ranking")
    recsys.add_argument("--step-s", type=float, default=86_400.0, help="seconds between history items")
    recsys.add_argument("--event-type", default="purchase", help="event type of history items")
    recsys.add_argument("--max-events", type=int, default=50, help="most recent history items kept")
    recsys.add_argument("--limit", type=int, help="evaluate the first N cases only")
    add_engine_options(recsys, "index")
    recsys.set_defaults(handler=guard(run_recsys))

    personal = kinds.add_parser("personal", help="personalized search lift on MovieLens tags")
    personal.add_argument("--data", default="movielens", help="movielens or a ml-latest-small folder")
    personal.add_argument("--limit", type=int, help="evaluate the first N tag cases only")
    personal.add_argument("--min-history", type=int, default=5, help="fewest earlier ratings per case")
    add_engine_options(personal, "service")
    personal.set_defaults(handler=guard(run_personal))


def _settings(args: argparse.Namespace) -> Any:
    from aisle.training.settings import TrainingSettings

    return TrainingSettings()


def _http_context(args: argparse.Namespace, index_root: Path | None) -> Any:
    """A client for ``--via-http``, or a local service on ``index_root``."""
    from aisle.training.local_service import http_client, local_service

    if args.via_http:
        return nullcontext(http_client(args.via_http))
    assert index_root is not None
    # The service encodes queries with its configured model: the one the index was built with.
    environment = (
        {"AISLE_MODEL": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model}
        if args.model
        else None
    )
    return local_service(index_root, settings_file=args.config, environment=environment)


def _index(args: argparse.Namespace, catalog: Any, name: str, settings: Any) -> Any:
    from aisle.training.indexes import build_eval_index, create_encoder_for, load_eval_index

    encoder = create_encoder_for(settings, args.model)
    if args.index:
        return load_eval_index(args.index, encoder, catalog)
    return build_eval_index(catalog, name, encoder, settings, show_progress=not args.no_progress)


def run_search(args: argparse.Namespace) -> int:
    from aisle.index.catalog import parse_column_map
    from aisle.training.datasets import load_search_set
    from aisle.training.eval_search import evaluate_http, evaluate_in_process

    search_set = load_search_set(args.data, parse_column_map(args.map), parse_query_columns(args.query_columns)).half(
        args.half
    )
    over_http = args.via_http or args.engine == "service"
    modes = _modes(args.mode, over_http)
    settings = _settings(args)
    runs: dict[str, Any] = {}
    built = None
    if not args.via_http:
        built = _index(args, search_set.load_catalog(), search_set.catalog_name, settings)
    if over_http:
        engine = f"service at {args.via_http}" if args.via_http else "local aisle serve (HTTP)"
        with _http_context(args, built.root if built else None) as client:
            for mode in modes:
                runs[mode] = evaluate_http(client, search_set, mode, engine).to_dict()
    else:
        assert built is not None  # in process means an index was built above
        for mode in modes:
            runs[mode] = evaluate_in_process(built.index, built.encoder, search_set, mode).to_dict()
    payload = {"kind": "search", "data": search_set.name, "half": args.half, "runs": runs}
    emit(payload, metric_rows(runs), args.format, args.out)
    return 0


def _modes(requested: list[str] | None, over_http: bool) -> list[str]:
    if not requested:
        return ["hybrid", "dense", "lexical"] if over_http else ["dense", "lexical"]
    if "all" in requested:
        return list(SEARCH_MODES) if over_http else ["dense", "lexical"]
    if "hybrid" in requested and not over_http:
        from aisle.cli import CommandError

        raise CommandError("hybrid retrieval is the service's fusion: add --engine service or --via-http URL")
    return list(dict.fromkeys(requested))


def run_recsys(args: argparse.Namespace) -> int:
    from aisle.training.datasets import load_sequence_set
    from aisle.training.eval_recsys import evaluate_http, evaluate_profiles
    from aisle.training.timeline import Timeline

    data = load_sequence_set(args.data, args.split)
    settings = _settings(args)
    timeline = Timeline(step_s=args.step_s, event_type=args.event_type, max_events=args.max_events)
    built = None if args.via_http else _index(args, data.catalog(), f"sequences-{data.name}", settings)
    if args.via_http or args.engine == "service":
        if args.mask_seen:
            from aisle.cli import CommandError

            raise CommandError("over HTTP the service's recommend_exclude setting decides masking; drop --mask-seen")
        with _http_context(args, built.root if built else None) as client:
            report = evaluate_http(client, data, timeline=timeline, run_id=secrets.token_hex(4), limit=args.limit)
    else:
        assert built is not None  # in process means an index was built above
        report = evaluate_profiles(
            built.index,
            data,
            decay=settings.decay_config(),
            timeline=timeline,
            mask_seen=args.mask_seen,
            limit=args.limit,
        )
    runs = {"next_item": report.to_dict()}
    payload = {"kind": "recsys", "data": data.name, "split": args.split, "runs": runs}
    emit(payload, metric_rows(runs), args.format, args.out)
    return 0


def run_personal(args: argparse.Namespace) -> int:
    from aisle.training.eval_personal import evaluate_lift, movie_catalog
    from aisle.training.recsys_data import load_movielens

    if args.engine == "index" and not args.via_http:
        from aisle.cli import CommandError

        raise CommandError("personalized search is the service's blend: use --engine service or --via-http URL")
    data = load_movielens(None if args.data == "movielens" else args.data)
    cases = data.tag_cases(min_history=args.min_history)
    cases = cases[: args.limit] if args.limit else cases
    settings = _settings(args)
    started = time.perf_counter()
    built = None if args.via_http else _index(args, movie_catalog(data), "movielens", settings)
    with _http_context(args, built.root if built else None) as client:
        result = evaluate_lift(client, cases, run_id=secrets.token_hex(4))
    result["seconds_total"] = round(time.perf_counter() - started, 2)
    payload = {"kind": "personal", **result}
    emit(payload, metric_rows(result["runs"]), args.format, args.out)
    return 0
