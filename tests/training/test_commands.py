"""The training subcommands are declared where an install finds them, not only in the tests."""

from __future__ import annotations

from pathlib import Path

import tomllib

from tests.training.conftest import TRAINING_COMMANDS


def test_pyproject_declares_every_training_subcommand() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["aisle.commands"]
    assert {name: declared.get(name) for name in TRAINING_COMMANDS} == TRAINING_COMMANDS
