"""Fixtures for every test."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def unfrozen_garbage_collector() -> Iterator[None]:
    """Gives the garbage collector back what a test's index loads froze (``IndexHolder.reload``
    freezes the served version), so that one test's leftovers never outlive it."""
    yield
    gc.unfreeze()
