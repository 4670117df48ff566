"""``aisle serve``: registered into the ``aisle`` command through an entry point."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API on the current index version")
    serve.add_argument("--index", type=Path, help="index root (default: settings index_dir)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, help="where events and profiles are stored")
    serve.add_argument("--config", type=Path, help="YAML settings file (also $AISLE_CONFIG)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from index.cli import CommandError
    from index.manifest import IndexValidationError
    from index.settings import with_overrides
    from index.versions import VersionError, VersionStore
    from service.app import create_app, create_holder
    from service.settings import ServiceSettings

    settings = with_overrides(
        ServiceSettings, index_dir=args.index, host=args.host, port=args.port, data_dir=args.data_dir
    )
    try:
        VersionStore(settings.index_dir).current_path()
    except VersionError as exc:
        raise CommandError(str(exc)) from None
    try:
        holder = create_holder(settings)  # validate before binding the port: a clear error, no trace
    except IndexValidationError as exc:
        raise CommandError(str(exc)) from None
    uvicorn.run(create_app(settings, holder=holder), host=settings.host, port=settings.port,
                log_level="info", access_log=False)
    return 0
