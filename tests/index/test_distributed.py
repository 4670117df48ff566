"""``aisle build --ray`` on a real local Ray cluster: the same vectors and index as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog
from aisle.index.distributed import RayBuild
from aisle.index.loaded import LoadedIndex
from tests.fakes import HashingEncoder
from tests.index.conftest import small_products

ray = pytest.importorskip("ray", reason="the distributed build needs Ray (pip install 'aisle-search[ray]')")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_cluster():
    """One local cluster for the module (two CPUs); RayBuild uses it instead of starting its own."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        # Actors unpickle the tests' encoder: they need the repository on their path.
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


class RendezvousEncoder(HashingEncoder):
    """Encodes a shard only once another actor has started one too (or after 30 s), and marks
    each vector with the encoding process: a pool that queues every shard on one actor shows."""

    def __init__(self, folder: str) -> None:
        super().__init__(dim=8)
        self.folder = Path(folder)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 30
        while len(list(self.folder.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        vectors[:, 0] = os.getpid()
        return vectors


def test_every_actor_encodes_while_the_others_do(local_cluster, tmp_path: Path) -> None:
    """Two shards, two actors: each actor takes one, so both shards are encoded at once."""
    cluster = RayBuild(
        address=None, actors=2, encoder_factory=partial(RendezvousEncoder, str(tmp_path)), shard_texts=50
    )
    started = time.monotonic()
    vectors = cluster.encode_documents([f"text {n}" for n in range(100)])
    assert len(set(vectors[:, 0].tolist())) == 2 and cluster.describe()["actors"] == 2
    assert time.monotonic() - started < 30  # nobody waited for a second actor that never came


def _search(index_path: Path, encoder: HashingEncoder, queries: list[str]) -> list[list[int]]:
    loaded = LoadedIndex.load(index_path, expected_fingerprint=encoder.fingerprint)
    vectors = encoder.encode_queries(queries)
    return [loaded.text.ann.search(vector, 10)[0].tolist() for vector in vectors]


@pytest.mark.parametrize("index_type", ["flat", "ivf", "ivf-pq"])
def test_ray_build_equals_the_single_process_build(local_cluster, tmp_path: Path, index_type: str) -> None:
    products = small_products(700)
    encoder = HashingEncoder(dim=64)
    options = BuildOptions(index_type=index_type, ivf_lists=8, nprobe=8, show_progress=False, reuse_vectors=False)
    alone = build_version(Catalog(products), tmp_path / "alone", encoder, options)
    # Several shards of each kind, so that row order and merging are really exercised.
    cluster = RayBuild(address=None, actors=2, encoder_factory=partial(HashingEncoder, dim=64), shard_texts=128)
    cluster.ivf_shard_vectors = 250
    on_ray = build_version(Catalog(products), tmp_path / "ray", encoder, replace(options, parallel=cluster))

    assert np.array_equal(np.load(alone.path / "vectors.text.npy"), np.load(on_ray.path / "vectors.text.npy"))
    queries = [p.title for p in products[::37]]
    assert _search(alone.path, encoder, queries) == _search(on_ray.path, encoder, queries)
    manifest = json.loads((on_ray.path / "manifest.json").read_text())
    assert manifest["build"] == {"engine": "ray", "address": "local", "actors": 2}
    assert manifest["spaces"]["text"]["index"]["type"] == index_type


class _PidRecordingEncoder(HashingEncoder):
    """Leaves one file per encoding process in ``folder``: which actors really did the work."""

    def __init__(self, folder: str, dim: int = 64) -> None:
        super().__init__(dim=dim)
        self._folder = Path(folder)

    def encode_documents(self, texts, *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        (self._folder / f"pid-{os.getpid()}").touch()
        return super().encode_documents(texts, batch_size=batch_size, show_progress=show_progress)


def test_without_a_count_the_pool_has_one_actor_per_cpu(local_cluster, tmp_path: Path) -> None:
    """No ``actors`` given: one actor per CPU of the cluster (two here), all of them encoding."""
    texts = [f"product number {n}" for n in range(64 * 6)]
    cluster = RayBuild(
        address=None, actors=None, encoder_factory=partial(_PidRecordingEncoder, str(tmp_path)), shard_texts=64
    )
    vectors = cluster.encode_documents(texts)

    assert np.array_equal(vectors, HashingEncoder(dim=64).encode_documents(texts))
    assert cluster.describe()["actors"] == 2
    assert len(list(tmp_path.glob("pid-*"))) == 2


def test_aisle_build_ray_with_the_bundled_model_writes_the_same_bytes(tmp_path: Path) -> None:
    """The real command and the real int8 encoder: dynamic quantisation depends on the batch, so
    this holds only because shards align with the encoder's length-sorting windows."""
    pytest.importorskip("onnxruntime")
    demo = REPO / "demo" / "catalog.csv"
    outputs = {}
    for name, extra in (("alone", []), ("ray", ["--ray", "--ray-actors", "1"])):
        command = [sys.executable, "-m", "aisle", "build", "--catalog", str(demo), "--out", str(tmp_path / name)]
        result = subprocess.run(
            [*command, "--no-progress", *extra], cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode == 2 and "cannot load the model" in result.stderr:
            pytest.skip(f"the bundled model is not available here: {result.stderr.strip()}")
        assert result.returncode == 0, result.stderr
        outputs[name] = next((tmp_path / name / "versions").glob("*/vectors.text.npy")).read_bytes()
    assert outputs["alone"] == outputs["ray"]


def test_ray_to_a_missing_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "aisle", "build", "--catalog", str(REPO / "demo" / "catalog.csv")]
    command += ["--out", str(tmp_path / "index"), "--no-progress", "--ray", "127.0.0.1:1"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode == 2 and "cannot load the model" in result.stderr:
        pytest.skip(f"the bundled model is not available here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "aisle build: error: cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
