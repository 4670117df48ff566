"""``aisle serve`` and ``aisle forget``: registered into the ``aisle`` command through an entry point."""

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
