"""``aisle serve``, ``aisle forget`` and ``aisle recommend``: registered into the ``aisle`` command through an entry point."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from aisle.cli import add_common_options
from aisle.service.events.cli import register_forget

if TYPE_CHECKING:
    from aisle.service.holder import IndexHolder
    from aisle.service.settings import ServiceSettings

#: Seconds uvicorn waits for in-flight requests after SIGTERM before closing connections.
GRACEFUL_SHUTDOWN_S = 30


def register(commands: argparse._SubParsersAction) -> None:
    """``aisle serve``, and ``aisle experiments`` (reports read from the service's data)."""
    from aisle.service.experiments import cli as experiments_cli

    experiments_cli.register(commands)
    serve = commands.add_parser("serve", help="serve the HTTP API on the current index version")
    serve.add_argument("--index", type=Path, help="index root (default: settings index_dir)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, help="where events and profiles are stored")
    add_common_options(serve)
    serve.add_argument(
        "--workers", type=int, help="worker processes, each pinned to its own core when there are enough (default 1)"
    )
    serve.set_defaults(handler=_serve)
    register_forget(commands)

    recommend = commands.add_parser(
        "recommend",
        help="recommendations for many users as JSON Lines (e-mail and push campaigns)",
        description=(
            "Reads user ids (one per line) and writes one JSON line per user with the recommendations "
            "GET /users/{id}/recommendations would give, from the stored events and the current version."
        ),
    )
    recommend.add_argument("--users", type=Path, required=True, help="file of user ids, one per line ('-': stdin)")
    recommend.add_argument("--out", type=Path, help="JSON Lines output (default: stdout)")
    recommend.add_argument("-k", "--k", type=int, default=10, help="recommendations per user (default 10)")
    recommend.add_argument("--filters", help='the search filter syntax as JSON, e.g. {"in_stock": true}')
    recommend.add_argument("--index", type=Path, help="index root (default: settings index_dir)")
    recommend.add_argument("--data-dir", type=Path, help="where the service stores events")
    recommend.add_argument("--config", type=Path, help="YAML settings file (also $AISLE_CONFIG)")
    recommend.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    recommend.set_defaults(handler=_recommend)


def validated_holder(settings: ServiceSettings) -> IndexHolder:
    """The index holder, or a ``CommandError`` saying what is wrong with the model or the index."""
    from aisle.cli import CommandError, load_encoder
    from aisle.index.manifest import IndexValidationError
    from aisle.index.versions import VersionError
    from aisle.service.app import create_holder

    try:
        return create_holder(settings, lambda settings: load_encoder(settings, prepare=False))
    except (VersionError, IndexValidationError) as exc:
        raise CommandError(f"cannot serve {settings.index_dir}: {exc}") from None


def check_rules(settings: ServiceSettings) -> None:
    """Reads the rules file once before anything starts: a bad rule is a ``CommandError`` naming it."""
    from aisle.cli import CommandError
    from aisle.service.ranking.rules import RulesError, load_rule_book

    try:
        load_rule_book(settings.rules_file)
    except RulesError as exc:
        raise CommandError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    """Validates the current version, then serves until SIGTERM/SIGINT (draining requests first).

    Log lines are JSON (one object per line, with ``request_id``) on stderr.
    """
    import uvicorn

    from aisle.cli import load_settings, log_level_from_env
    from aisle.service.app import create_app
    from aisle.service.http import protocol_class
    from aisle.service.logs import configure_json_logging
    from aisle.service.settings import ServiceSettings

    log_level = log_level_from_env()
    configure_json_logging(log_level)
    settings = load_settings(
        ServiceSettings,
        index_dir=args.index,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        workers=args.workers,
    )
    # Validate before binding the port: a clear one-line error and exit status 2, no trace.
    check_rules(settings)
    holder = validated_holder(settings)
    if settings.workers > 1:
        from aisle.service.workers import serve_workers

        del holder  # each worker loads its own; the supervisor keeps no index in memory
        return serve_workers(settings.model_dump(), settings.workers, log_level, GRACEFUL_SHUTDOWN_S)
    uvicorn.run(
        create_app(settings, holder=holder),
        host=settings.host,
        port=settings.port,
        http=protocol_class(settings.read_timeout_s),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return 0


def _recommend(args: argparse.Namespace) -> int:
    """Streams recommendations for the listed users (see ``aisle.service.personal.export``)."""
    import sys

    from tqdm import tqdm

    from aisle.cli import CommandError, load_settings
    from aisle.service.events.identity import SECRET_FILE, IdHasher, load_or_create_secret
    from aisle.service.events.store import EVENTS_FILE, EventStoreError
    from aisle.service.personal.config import PersonalConfig
    from aisle.service.personal.export import output, read_user_ids, recommendation_lines
    from aisle.service.personal.profiles import ProfileService
    from aisle.service.personal.runtime import open_event_store
    from aisle.service.ranking.rules import RulesError, load_rule_book
    from aisle.service.routers.search import filters_from_json
    from aisle.service.settings import ServiceSettings

    settings = load_settings(ServiceSettings, index_dir=args.index, data_dir=args.data_dir)
    if not 1 <= args.k <= settings.max_k:
        raise CommandError(f"--k must be between 1 and {settings.max_k}, got {args.k}")
    local_events = settings.data_dir / EVENTS_FILE
    if not (settings.data_dir / SECRET_FILE).exists() or not (settings.database_url or local_events.exists()):
        raise CommandError(f"no stored events under {settings.data_dir} (set --data-dir to the service's data_dir)")
    if str(args.users) != "-" and not args.users.is_file():
        raise CommandError(f"--users: no such file {args.users}")
    try:
        config = PersonalConfig.from_settings(settings)
        rule_book = load_rule_book(settings.rules_file)
    except (ValueError, RulesError) as exc:
        raise CommandError(str(exc)) from None
    holder = validated_holder(settings)
    try:  # against the served version's schema: any filterable field
        filters = filters_from_json(args.filters, holder.engine)
    except ValueError as exc:  # "filters: ..." or, naming a field, "filters.colour: ..."
        message = str(exc)
        raise CommandError(
            "--filters: " + message.split(".", 1)[1] if message.startswith("filters.") else f"--{message}"
        ) from None
    hasher = IdHasher(load_or_create_secret(settings.data_dir))
    try:
        store = open_event_store(settings, hasher.check_value())
    except EventStoreError as exc:
        raise CommandError(f"cannot read events: {exc}") from None
    try:
        profiles = ProfileService(hasher, config, store)
        profiles.attach(holder.engine)
        handle = sys.stdin if str(args.users) == "-" else args.users.open(encoding="utf-8")
        with handle:
            try:
                user_ids = list(read_user_ids(handle, str(args.users)))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        from aisle.service.personal.collaborative import CollaborativeScorer

        try:
            collaborative = CollaborativeScorer.from_model(settings.model)
        except ValueError as exc:  # damaged collaborative files, named
            raise CommandError(str(exc)) from None
        lines = recommendation_lines(holder.engine, profiles, rule_book, user_ids, args.k, filters, collaborative)
        show = not args.no_progress
        with output(args.out) as out:
            for line in tqdm(lines, total=len(user_ids), unit="users", disable=not show, file=sys.stderr):
                out.write(line)
    finally:
        store.close()
    if args.out is not None:
        print(f"wrote recommendations for {len(user_ids)} users to {args.out}")
    return 0
