"""The ``aisle`` command's root: the parser, errors, settings loading and logging.

Every package adds its subcommands with one ``register(commands)`` function listed in the
``aisle.commands`` entry-point group (``pyproject.toml``), so this module imports none of them and
each package may import this one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aisle import __version__
from aisle.settings import CONFIG_ENV, AisleSettings, SettingsT, with_overrides

if TYPE_CHECKING:
    from aisle.embed.base import Encoder, ImageEncoder

COMMANDS_GROUP = "aisle.commands"

#: A subcommand's handler: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]


log = logging.getLogger("aisle")


class CommandError(Exception):
    """A user-facing error: printed as one message, exit status 2, no stack trace."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every subcommand takes: ``--config FILE`` (applied by :func:`main`)."""
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


def load_settings(settings_cls: type[SettingsT] = AisleSettings, /, **overrides: object) -> SettingsT:  # type: ignore[assignment]  # the default is the bound
    """Settings with the CLI's explicit values on top, a bad config reported as a ``CommandError``.

    Args:
        settings_cls: :class:`AisleSettings` or a subclass (the service's).
        overrides: the command's flags; ``None`` values are left to the other sources.
    """
    import yaml

    try:
        return with_overrides(settings_cls, **overrides)
    except ValidationError as exc:
        raise CommandError(settings_problems(exc)) from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"invalid settings: {exc}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"invalid config file: {exc}") from None


def load_encoder(settings: AisleSettings, *, prepare: bool = True) -> Encoder:
    """The configured text encoder, or a ``CommandError`` naming the model and the problem.

    Args:
        settings: where the model and backend are configured.
        prepare: build (and cache) the ONNX export first if it is missing; that needs torch,
            so ``aisle serve`` passes ``False`` and only opens an existing export (a cache miss
            is then a one-line error saying how to fill the cache).
    """
    from aisle.embed import create_encoder

    try:
        return create_encoder(settings.encoder_config(), export=prepare)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        # ImportError: exporting needs the torch extra; its message carries the install hint.
        raise CommandError(f"cannot load the model '{settings.model}': {exc}") from None


def load_image_encoder(settings: AisleSettings, *, prepare: bool = True) -> ImageEncoder | None:
    """The configured image model (None when ``image_model`` is unset), or a one-line ``CommandError``.

    A missing or broken model directory stops the command: a build that quietly went on
    text-only would look successful. ``prepare=False`` (serving) opens only an existing export.
    """
    from aisle.embed.clip import cached_clip_export
    from aisle.embed.image_encoder import OnnxClipEncoder

    config = settings.image_encoder_config()
    if config.model is None:
        return None
    if not Path(config.model).expanduser().is_dir():
        raise CommandError(f"image model directory '{config.model}' does not exist (models are never downloaded)")
    try:
        if prepare:
            from aisle.embed import prepare_image_model

            return OnnxClipEncoder(prepare_image_model(config), threads=config.threads)
        export = cached_clip_export(config)
        if export is None:
            raise FileNotFoundError("its ONNX export is not in the model cache; run `aisle build --image-model` first")
        return OnnxClipEncoder(export, threads=config.threads)
    except ImportError as exc:
        raise CommandError(f"cannot load the image model '{config.model}': {exc}") from None
    except Exception as exc:  # transformers and onnx raise many kinds; all mean "this is no usable model"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"cannot load the image model '{config.model}': {reason}") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``aisle`` parser: every subcommand comes from a package's ``register(commands)``."""
    parser = argparse.ArgumentParser(prog="aisle", description="Semantic product search and recommendations.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The index's own commands (build, versions, rollback) first, then the others by name.
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda entry: (entry.name != "index", entry.name)):
        try:
            register = entry.load()
        except ImportError as exc:  # a partial install must still build and serve
            log.warning("commands '%s' are unavailable: %s", entry.name, exc)
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
    sys.exit(main())
