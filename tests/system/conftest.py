"""System tests run real ``aisle serve`` processes with the real ONNX encoder.

They skip, saying why, when ``aisle.embed.create_encoder`` is not importable or the shared evaluation
data is absent; any other failure to prepare the model fails them. The ONNX export is cached under ``.cache/aisle`` of the
repository, shared with the server processes and every other test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.server import CACHE_DIR, REPO_ROOT, server_environment

DEMO_CATALOG = REPO_ROOT / "demo" / "catalog.csv"


@pytest.fixture(scope="session")
def real_encoder():
    """The serving encoder (ONNX int8 MiniLM), exported once and cached."""
    os.environ.setdefault("AISLE_CACHE_DIR", str(CACHE_DIR))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from aisle.embed import create_encoder, prepare_model
    except ImportError as exc:
        pytest.skip(f"system tests need the real encoder (embed.create_encoder): {exc}")
    from aisle.service.settings import ServiceSettings

    config = ServiceSettings().encoder_config()
    prepare_model(config)
    return create_encoder(config)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data`` (or ``$AISLE_SHARED_DATA``): real evaluation data, never copied here."""
    root = Path(os.environ.get("AISLE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "fixture").is_dir():
        pytest.skip(f"shared evaluation data not found at {root} (set AISLE_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory, real_encoder) -> Path:
    """The demo catalogue built by the real `aisle build` command (the model export is cached)."""
    out = tmp_path_factory.mktemp("demo") / "index"
    result = subprocess.run(
        [sys.executable, "-m", "aisle", "build", "--catalog", str(DEMO_CATALOG), "--out", str(out), "--no-progress"],
        cwd=REPO_ROOT,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "382 items" in result.stdout, result.stdout
    return out


@pytest.fixture
def demo_index_copy(demo_index: Path, tmp_path: Path) -> Path:
    """A private copy of the demo index root: a test's live changes and builds stay its own."""
    import shutil

    target = tmp_path / "index"
    shutil.copytree(demo_index, target, symlinks=True)
    return target
