"""The ``aisle`` subcommands of the training package: ``eval``, ``train``, ``tune`` and ``gate``.

One ``register(commands)`` (the ``aisle.commands`` entry point ``training``) adds them all; each
lives in its own ``*_cli`` module with the same ``register(commands)`` shape, and heavy imports
happen inside the handlers so that ``aisle --help`` stays fast.
"""

from __future__ import annotations

import argparse

from aisle.cli import CommandError, Handler


def register(commands: argparse._SubParsersAction) -> None:
    from aisle.training import eval_cli, gate_cli, train_cli, tune_cli

    for module in (eval_cli, train_cli, tune_cli, gate_cli):
        module.register(commands)


def guard(handler: Handler) -> Handler:
    """Turns data and option errors into one-line messages (exit status 2), not tracebacks."""

    def run(args: argparse.Namespace) -> int:
        from aisle.index.manifest import IndexValidationError
        from aisle.index.versions import VersionError

        try:
            return handler(args)
        except (ValueError, FileNotFoundError, IndexValidationError, VersionError) as exc:
            raise CommandError(str(exc)) from None

    return run
