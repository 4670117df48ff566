"""A build killed (SIGKILL) while writing leaves the previous version current, intact and loadable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from aisle.index.loaded import LoadedIndex
from aisle.index.versions import STALE_STAGING_SECONDS, VersionStore
from tests.index.conftest import REPO, TextSeedEncoder, build, small_products

WORKER_PRODUCTS = 20_000
ATTEMPTS = 3


def start_worker(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.index.crash_worker", str(root), str(WORKER_PRODUCTS)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_while_staging(root: Path, delay: float, timeout: float = 120.0) -> Path | None:
    """Starts a build and SIGKILLs it ``delay`` seconds after its staging directory appears.

    Returns:
        The staging directory it was writing, or None if the build finished first.
    """
    worker = start_worker(root)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            staging = next(root.glob(".staging-*"), None)
            if staging is not None:
                time.sleep(delay)
                break
            if worker.poll() is not None:
                raise AssertionError(f"the build ended before staging: {worker.stderr.read() if worker.stderr else ''}")
            time.sleep(0.005)
        else:
            raise AssertionError("the build never started writing")
        worker.send_signal(signal.SIGKILL)
        killed = worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    return staging if killed else None


def test_killed_builds_leave_the_previous_version_current_and_loadable(tmp_path: Path) -> None:
    encoder = TextSeedEncoder(64)
    first = build(tmp_path, small_products(), encoder, keep_versions=10)
    rng = random.Random(4)
    leftovers: list[Path] = []
    previous = first.version
    for _ in range(ATTEMPTS):
        staging = kill_while_staging(tmp_path, delay=rng.uniform(0.0, 0.5))
        store = VersionStore(tmp_path)
        if staging is not None and staging.is_dir():  # killed while writing: nothing changed
            assert store.current_name() == previous
            leftovers.append(staging)
        else:  # killed (or done) after the rename into versions/: old or new, both complete
            new_name = staging.name.removeprefix(".staging-") if staging else store.current_name()
            assert store.current_name() in (previous, new_name)
        loaded = LoadedIndex.load(tmp_path / "current", verify_checksums=True)
        assert loaded.version == store.current_name()
        previous = store.current_name()
    assert leftovers, "no attempt was killed while writing"
    assert any(any(path.is_file() for path in staging.rglob("*")) for staging in leftovers), (
        "no attempt was killed after it had written a file"
    )

    # A later build succeeds; fresh leftovers may be a build still running elsewhere: kept.
    later = build(tmp_path, small_products(), encoder)
    assert VersionStore(tmp_path).current_name() == later.version
    assert all(staging.is_dir() for staging in leftovers)
    # Once old, they are the remains of crashed builds and the next build removes them.
    old = time.time() - STALE_STAGING_SECONDS - 60
    for staging in leftovers:
        os.utime(staging, (old, old))
    build(tmp_path, small_products(), encoder)
    assert not any(staging.exists() for staging in leftovers)
    assert not list(tmp_path.glob(".staging-*"))
