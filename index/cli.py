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
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from index.ann import INDEX_TYPES, AnnParams
from index.settings import CONFIG_ENV, AisleSettings, with_overrides

SettingsT = TypeVar("SettingsT", bound=AisleSettings)

if TYPE_CHECKING:
    from embed.base import Encoder

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


def settings_problems(error: ValidationError) -> str:
    """One line naming each invalid setting, its value and what is wrong (no pydantic URL)."""
    problems = []
    for problem in error.errors(include_url=False):
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        problems.append(f"{name}={problem.get('input')!r}: {problem['msg']}")
    return "invalid settings: " + "; ".join(problems)


def load_settings(settings_cls: type[SettingsT] = AisleSettings, /, **overrides: object) -> SettingsT:  # type: ignore[assignment]
    """Settings with the CLI's explicit values on top, a bad config reported as a ``CommandError``.

    Args:
        settings_cls: :class:`AisleSettings` or a subclass (the service's).
        overrides: the command's flags; ``None`` values are left to the other sources.
    """
    import yaml

    try:
        return with_overrides(settings_cls, **overrides)  # type: ignore[return-value]
    except ValidationError as exc:
        raise CommandError(settings_problems(exc)) from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"invalid settings: {exc}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"invalid config file: {exc}") from None


def _build(args: argparse.Namespace) -> int:
    from index.build import BuildOptions, build_version
    from index.catalog import CatalogError, load_catalog, parse_column_map
    from index.versions import VersionError

    started = time.perf_counter()
    settings = load_settings(index_dir=args.out, model=args.model)
    hnsw = {name: getattr(args, name) for name in ("hnsw_m", "ef_construction", "ef_search", "ivf_lists", "nprobe")
            if getattr(args, name) is not None}
    options = BuildOptions(
        index_type=args.index_type, memory_budget_mb=args.memory_budget_mb, **hnsw,
        keep_versions=args.keep, show_progress=not args.no_progress,
    )
    try:
        options.validate()
        column_map = {**settings.columns, **parse_column_map(args.map)}
        catalog = load_catalog(args.catalog, column_map, skip_bad_rows=args.skip_bad_rows)
    except (CatalogError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    for problem in catalog.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    print(f"loaded {len(catalog)} products from {args.catalog}"
          + (f" ({len(catalog.skipped)} bad rows skipped)" if catalog.skipped else ""), file=sys.stderr)
    _check_writable(settings.index_dir)  # before minutes of encoding, not after
    encoder = load_encoder(settings)
    try:
        report = build_version(catalog, settings.index_dir, encoder, options)
    except VersionError as exc:  # e.g. another build is running
        raise CommandError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"cannot build the index under {settings.index_dir}: {exc}") from None
    seconds = time.perf_counter() - started
    print(
        f"published {report.version}: {report.items} items ({report.encoded} encoded, "
        f"{report.reused} re-used, {report.skipped} skipped), {report.index_type} index, "
        f"in {seconds:.2f} s (build {report.seconds:.2f} s)"
    )
    if args.json:
        print(json.dumps({
            "version": report.version, "items": report.items, "encoded": report.encoded,
            "reused": report.reused, "skipped": report.skipped, "index_type": report.index_type,
            "reused_files": report.reused_files, "seconds": round(seconds, 3),
            "build_seconds": round(report.seconds, 3), "timings": report.timings,
            "path": str(report.path),
        }))
    return 0


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot build the index under {root}: {exc}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CommandError(f"cannot build the index under {root}: the directory is not writable")


def load_encoder(settings: AisleSettings, *, prepare: bool = True) -> Encoder:
    """The configured text encoder, or a ``CommandError`` naming the model and the problem.

    Args:
        settings: where the model and backend are configured.
        prepare: build (and cache) the ONNX export first if it is missing; that needs torch,
            so ``aisle serve`` passes ``False`` and only opens an existing export.
    """
    from embed import create_encoder, prepare_model

    config = settings.encoder_config()
    try:
        if prepare:
            prepare_model(config)
        return create_encoder(config)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(f"cannot load the model '{settings.model}': {exc}") from None


def _versions(args: argparse.Namespace) -> int:
    from index.versions import VersionStore

    settings = load_settings(index_dir=args.index)
    infos = VersionStore(settings.index_dir).list()
    if not infos:
        raise CommandError(f"no published versions under {settings.index_dir}; run `aisle build` first")
    if args.json:
        print(json.dumps([
            {"version": i.name, "created": i.created, "items": i.items, "model": i.model, "current": i.current}
            for i in infos
        ]))
        return 0
    for info in infos:
        marker = "*" if info.current else " "
        print(f"{marker} {info.name}  {info.created}  {info.items} items  {info.model}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from index.versions import VersionError, VersionStore

    settings = load_settings(index_dir=args.index)
    try:
        name = VersionStore(settings.index_dir).rollback(args.version)
    except VersionError as exc:
        raise CommandError(str(exc)) from None
    print(f"current version is now {name}; running services pick it up on POST /admin/reload")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aisle", description="Semantic product search and recommendations.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build and publish a new index version from a catalogue")
    build.add_argument("--catalog", type=Path, required=True, help="CSV, JSON Lines or Parquet file")
    build.add_argument("--out", type=Path, help="index root (default: settings index_dir)")
    build.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="map an Aisle field to your column")
    build.add_argument("--skip-bad-rows", action="store_true", help="skip and report invalid rows")
    build.add_argument("--model", help="bundled:all-MiniLM-L6-v2 or a local sentence-transformers dir")
    build.add_argument("--index-type", choices=list(INDEX_TYPES),
                       help="default: flat up to 20,000 products, else hnsw (hnsw-sq8 above --memory-budget-mb); "
                            "ivf or ivf-pq on request (catalogues of many near-duplicate variants)")
    build.add_argument("--memory-budget-mb", type=_positive_float,
                       help="most memory the vector index may take; larger catalogues get hnsw-sq8")
    build.add_argument("--hnsw-m", type=_positive_int, help=f"HNSW graph degree (default {AnnParams.hnsw_m})")
    build.add_argument("--ef-construction", type=_positive_int,
                       help=f"HNSW build beam (default {AnnParams.ef_construction})")
    build.add_argument("--ef-search", type=_positive_int, help=f"HNSW search beam (default {AnnParams.ef_search})")
    build.add_argument("--ivf-lists", type=_positive_int, help="IVF cells (default about 4·√products)")
    build.add_argument("--nprobe", type=_positive_int, help=f"IVF cells scanned per query (default {AnnParams.nprobe})")
    build.add_argument("--keep", type=_positive_int, default=5, help="published versions to keep (default 5)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="also print a JSON summary line")
    add_common_options(build)
    build.set_defaults(handler=_build)

    versions = commands.add_parser("versions", help="list published index versions (* = current)")
    versions.add_argument("--index", type=Path, help="index root")
    versions.add_argument("--json", action="store_true", help="print a JSON array")
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


#: Libraries that narrate their internals at INFO (FAISS's loader tries each SIMD build in
#: turn): only their warnings reach an ``aisle`` user.
CHATTY_LIBRARIES = ("faiss", "sentence_transformers", "httpx", "urllib3", "filelock")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level_from_env() -> str:
    """``$AISLE_LOG_LEVEL`` as a level name, any case (default INFO).

    Raises:
        CommandError: the variable names no level.
    """
    value = os.environ.get("AISLE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if value not in LOG_LEVELS:
        raise CommandError(f"AISLE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value.lower()!r}")
    return value


def configure_logging() -> None:
    """One line per record, at ``$AISLE_LOG_LEVEL`` (INFO); chatty libraries at WARNING."""
    logging.basicConfig(level=log_level_from_env(), format="%(levelname)s %(name)s: %(message)s")
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        configure_logging()
    except CommandError as exc:
        print(f"aisle: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_config_option(args)
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"aisle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a command that builds its settings without load_settings
        print(f"aisle {args.command}: error: {settings_problems(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run through the importable module: as __main__, this file's CommandError would be another
    # class than the one that subcommands of other packages import and raise.
    from index.cli import main as _main

    sys.exit(_main())
