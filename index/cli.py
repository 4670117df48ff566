"""The ``aisle`` command.

``build``, ``versions`` and ``rollback`` live here; other packages add their subcommands through
the ``aisle.commands`` entry-point group (``serve`` from ``service``, ``eval`` and ``train`` from
``training``), so that this package never imports them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from index.settings import CONFIG_ENV, AisleSettings, with_overrides

log = logging.getLogger("aisle")


class CommandError(Exception):
    """A user-facing error: printed as one message, exit status 2, no stack trace."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"YAML settings file (also ${CONFIG_ENV})")


def apply_config_option(args: argparse.Namespace) -> None:
    if getattr(args, "config", None):
        if not args.config.is_file():
            raise CommandError(f"config file not found: {args.config}")
        os.environ[CONFIG_ENV] = str(args.config)


def _build(args: argparse.Namespace) -> int:
    from embed import create_encoder, prepare_model
    from index.build import BuildOptions, build_version
    from index.catalog import CatalogError, load_catalog, parse_column_map

    settings = with_overrides(AisleSettings, index_dir=args.out, model=args.model)
    try:
        column_map = {**settings.columns, **parse_column_map(args.map)}
        catalog = load_catalog(args.catalog, column_map, skip_bad_rows=args.skip_bad_rows)
    except CatalogError as exc:
        raise CommandError(str(exc)) from None
    for problem in catalog.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    config = settings.encoder_config()
    prepare_model(config)
    encoder = create_encoder(config)
    options = BuildOptions(
        index_type=args.index_type, keep_versions=args.keep, show_progress=not args.no_progress,
    )
    report = build_version(catalog, settings.index_dir, encoder, options)
    summary = {
        "version": report.version, "items": report.items, "encoded": report.encoded,
        "reused": report.reused, "skipped": report.skipped,
        "seconds": round(report.seconds, 3), "path": str(report.path),
    }
    print(
        f"published {report.version}: {report.items} items ({report.encoded} encoded, "
        f"{report.reused} re-used, {report.skipped} skipped) in {report.seconds:.2f} s"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def _versions(args: argparse.Namespace) -> int:
    from index.versions import VersionStore

    settings = with_overrides(AisleSettings, index_dir=args.index)
    infos = VersionStore(settings.index_dir).list()
    if not infos:
        raise CommandError(f"no published versions under {settings.index_dir}")
    for info in infos:
        marker = "*" if info.current else " "
        print(f"{marker} {info.name}  {info.created}  {info.items} items  {info.model}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from index.versions import VersionError, VersionStore

    settings = with_overrides(AisleSettings, index_dir=args.index)
    try:
        name = VersionStore(settings.index_dir).rollback(args.version)
    except VersionError as exc:
        raise CommandError(str(exc)) from None
    print(f"current version is now {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aisle", description="Semantic product search and recommendations.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build and publish a new index version from a catalogue")
    build.add_argument("--catalog", type=Path, required=True, help="CSV, JSON Lines or Parquet file")
    build.add_argument("--out", type=Path, help="index root (default: settings index_dir)")
    build.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="map an Aisle field to your column")
    build.add_argument("--skip-bad-rows", action="store_true", help="skip and report invalid rows")
    build.add_argument("--model", help="bundled:all-MiniLM-L6-v2 or a local sentence-transformers dir")
    build.add_argument("--index-type", choices=["flat", "hnsw", "hnsw-sq8"], help="default: by catalogue size")
    build.add_argument("--keep", type=int, default=5, help="published versions to keep (default 5)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="also print a JSON summary line")
    add_common_options(build)
    build.set_defaults(handler=_build)

    versions = commands.add_parser("versions", help="list published index versions (* = current)")
    versions.add_argument("--index", type=Path, help="index root")
    add_common_options(versions)
    versions.set_defaults(handler=_versions)

    rollback = commands.add_parser("rollback", help="make an earlier version current")
    rollback.add_argument("version", nargs="?", help="version name (default: the one before current)")
    rollback.add_argument("--index", type=Path, help="index root")
    add_common_options(rollback)
    rollback.set_defaults(handler=_rollback)

    for entry in entry_points(group="aisle.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # a partial install must still build and serve
            log.warning("command '%s' is unavailable: %s", entry.name, exc)
            continue
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("AISLE_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_config_option(args)
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"aisle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
