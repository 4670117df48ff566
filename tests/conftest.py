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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for the session (skips, saying why, when none is installed)."""
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'aisle-search[postgres]')")
    from benchmarks.postgres_server import running_server, server_binaries

    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries not found (make test installs Debian's postgresql)")
    with running_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """An empty database of its own for one test."""
    import re

    from benchmarks.postgres_server import fresh_database

    return fresh_database(postgres_server, "t_" + re.sub(r"\W", "_", request.node.name)[:50].lower())
