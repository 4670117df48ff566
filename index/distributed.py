"""``aisle build --ray``: the rebuild's heavy steps on a Ray cluster, with the single-machine result.

Two steps of a build grow with the catalogue and split into independent pieces:

* **Encoding.** The texts are cut into shards of whole length-sorting windows of the encoder
  (``SHARD_TEXTS`` texts, a multiple of the window), encoded by a pool of actors as Ray Data
  batches, and put back in row order. Each actor sorts, pads and batches its shard exactly as one
  process sorts, pads and batches that window, so the vectors are the same bytes as a
  single-machine build's (dynamic int8 quantisation depends on the batch, hence the alignment).
* **Filling an inverted file.** ``ivf`` and ``ivf-pq`` cells are trained on a sample on the driver
  (as on one machine); the trained, empty index is sent to tasks that each add one shard of the
  vectors with their row ids, and the driver merges the shards (``merge_from``): the same cells
  with the same members, so searches return the same rows.

Graph indexes (``hnsw``) insert one vector at a time into one graph and are built on the driver.
The model cache must be readable by every node (``AISLE_CACHE_DIR`` on shared storage, or filled
by ``aisle build`` on each machine first): actors open the existing export and never re-export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisle.embed.base import Encoder

log = logging.getLogger(__name__)

#: Texts per encoding shard: a multiple of the ONNX text encoder's sort window (8,192), so that
#: batches, and so vectors, match a single-process build's.
SHARD_TEXTS = 8192
#: Seconds to wait for the encoder actors to start (and load the model) before giving up.
ACTOR_START_TIMEOUT_S = 600
#: Vectors per task when filling an inverted file.
IVF_SHARD_VECTORS = 200_000

RAY_INSTALL_HINT = "install the ray extra (pip install 'aisle-search[ray]')"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f"aisle build --ray needs Ray with Ray Data: {RAY_INSTALL_HINT}") from exc
    return ray


class _EncodeShard:
    """A Ray Data actor: builds the encoder once, then encodes one shard per call."""

    def __init__(self, encoder_factory: Callable[[], Encoder], batch_size: int) -> None:
        self.encoder = encoder_factory()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, vectors = [], []
        for start, texts in zip(batch["start"], batch["texts"], strict=True):
            encoded = self.encoder.encode_documents(list(texts), batch_size=self.batch_size)
            rows.append(np.arange(int(start), int(start) + len(encoded), dtype=np.int64))
            vectors.append(encoded)
        return {"row": np.concatenate(rows), "vector": np.concatenate(vectors)}


def _fill_ivf_shard(empty_index: np.ndarray, vectors: np.ndarray, first_row: int) -> np.ndarray:
    """Adds ``vectors`` (rows ``first_row``…) to a copy of the trained, empty index; serialised."""
    import faiss

    index = faiss.deserialize_index(empty_index)
    index.add_with_ids(vectors, np.arange(first_row, first_row + len(vectors), dtype=np.int64))
    return faiss.serialize_index(index)


@dataclass
class RayBuild:
    """Where and how wide a build runs on Ray.

    Attributes:
        address: a running cluster (``ray://host:10001`` or ``host:6379``); ``None`` starts a
            local one for the build and stops it afterwards.
        actors: encoder actors; ``None``: one per CPU the cluster has.
        encoder_factory: builds the text encoder inside an actor (picklable: a module-level
            function or a ``functools.partial`` of one, e.g. ``create_encoder`` with its config).
        threads_per_actor: encoder threads (and CPUs reserved) per actor.
        shard_texts: texts per encoding shard; keep it a multiple of the encoder's sort window
            (the default is) for vectors equal to a single-process build's.
        ivf_shard_vectors: vectors per task when filling an inverted file.
    """

    address: str | None
    actors: int | None
    encoder_factory: Callable[[], Encoder]
    threads_per_actor: int = 1
    shard_texts: int = SHARD_TEXTS
    ivf_shard_vectors: int = IVF_SHARD_VECTORS
    used_actors: int | None = field(default=None, init=False)

    @contextmanager
    def _cluster(self) -> Iterator[Any]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here and self.address is not None:
            check_reachable(self.address)
        if started_here:
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                ignore_reinit_error=True,
            )
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            # Every actor loaded before the first shard is handed out, so that none sits idle while
            # another drains the queue; a pool the cluster cannot hold fails after this long.
            context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
            yield ray
        finally:
            if started_here:
                ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """For the version's manifest: where the build ran."""
        return {"engine": "ray", "address": self.address or "local", "actors": self.used_actors or self.actors}

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """The vectors of ``texts`` in row order, encoded by the actor pool."""
        if not texts:
            raise ValueError("nothing to encode")
        with self._cluster() as ray:
            actors = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads_per_actor)
            # More actors than shards would only load the model for nothing.
            self.used_actors = actors = max(1, min(actors, -(-len(texts) // self.shard_texts)))
            shards = [
                {"start": start, "texts": list(texts[start : start + self.shard_texts])}
                for start in range(0, len(texts), self.shard_texts)
            ]
            log.info("encoding %d texts in %d shards on %d Ray actors", len(texts), len(shards), actors)
            encoded = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
                _EncodeShard,
                fn_constructor_kwargs={"encoder_factory": self.encoder_factory, "batch_size": batch_size},
                batch_size=1,
                batch_format="numpy",
                # A fixed pool, one shard in flight per actor: Ray Data's default queues several
                # shards on the first actor ready, so with few long shards one actor encoded them
                # all while the others idled (the 0.91x of scale.json; DECISIONS.md).
                compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
                num_cpus=self.threads_per_actor,
            )
            vectors: np.ndarray | None = None
            progress = _progress(len(texts), show_progress)
            for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                if vectors is None:
                    vectors = np.empty((len(texts), batch["vector"].shape[1]), dtype=np.float32)
                vectors[batch["row"]] = batch["vector"]
                progress(len(batch["row"]))
            progress(None)
        assert vectors is not None
        return vectors

    def fill_ivf(self, empty_index: Any, vectors: np.ndarray) -> Any:
        """``empty_index`` (trained IVF, no vectors) with every row of ``vectors`` added, by shards."""
        import faiss

        with self._cluster() as ray:
            fill = ray.remote(num_cpus=1)(_fill_ivf_shard)
            empty = ray.put(faiss.serialize_index(empty_index))
            step = self.ivf_shard_vectors
            pending = [
                fill.remote(empty, ray.put(np.ascontiguousarray(vectors[start : start + step])), start)
                for start in range(0, len(vectors), step)
            ]
            for serialized in ray.get(pending):
                empty_index.merge_from(faiss.deserialize_index(serialized), 0)
        return empty_index


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fails fast on an address nothing listens at: Ray itself retries for minutes.

    Raises:
        ConnectionError: the host's port does not accept a TCP connection within ``timeout_s``.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"ray://{address}")
    host, port = parts.hostname, parts.port
    if host is None or port is None:
        raise ConnectionError(f"'{address}' is not a host:port (or ray://host:port) address")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing accepts connections at {host}:{port} ({exc})") from None


def _progress(total: int, show: bool) -> Callable[[int | None], None]:
    """An update function for a progress bar of ``total`` rows (``None`` closes it)."""
    if not show:
        return lambda _rows: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="encoding on Ray", unit="products", unit_scale=True)

    def update(rows: int | None) -> None:
        if rows is None:
            bar.close()
        else:
            bar.update(rows)

    return update
