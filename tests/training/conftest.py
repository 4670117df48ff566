"""Shared fixtures of the training tests: the shared data location and encoders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from aisle.embed.base import Encoder
from aisle.training.recsys_data import shared_data_dir
from tests.fakes import HashingEncoder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "fixture").is_dir():
        pytest.skip(f"shared evaluation data not found at {path} (set AISLE_SHARED_DATA)")
    return path


class ShuffledEncoder(Encoder):
    """A deliberately bad model: each document gets the vector of another document's text."""

    def __init__(self, inner: Encoder, seed: int = 0) -> None:
        self.inner = inner
        self.seed = seed

    @property
    def name(self) -> str:
        return "shuffled-" + self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return f"shuffled:{self.seed}:{self.inner.fingerprint}"

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        vectors = self.inner.encode_documents(texts)
        return np.ascontiguousarray(vectors[np.random.default_rng(self.seed).permutation(len(texts))])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)


@pytest.fixture
def hashing() -> HashingEncoder:
    return HashingEncoder(dim=96)


#: The subcommands this package adds, as pyproject.toml declares them in ``aisle.commands``.
TRAINING_COMMANDS = {"training": "aisle.training.cli:register"}


@pytest.fixture
def aisle_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``aisle.cli.main`` see every training subcommand, even from an older install."""
    from importlib.metadata import EntryPoint, entry_points

    def patched(group: str):
        found = list(entry_points(group=group))
        if group == "aisle.commands":
            names = {entry.name for entry in found}
            found += [EntryPoint(name, value, group) for name, value in TRAINING_COMMANDS.items() if name not in names]
        return found

    monkeypatch.setattr("aisle.cli.entry_points", lambda group: patched(group))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT sentence-transformers directory (built once per session)."""
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    from tests.embed.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "tiny-bert")
