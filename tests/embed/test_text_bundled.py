"""The bundled all-MiniLM-L6-v2 on onnxruntime: golden vectors, parity, padding, truncation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aisle.embed import EncoderConfig, create_encoder
from aisle.embed.onnx_text import OnnxTextEncoder
from tests.embed.conftest import require_export_stack

GOLDEN_TEXTS = ("wireless mouse", "Stainless steel 12-cup coffee maker", "Organic cotton T-shirt, navy, XL")

# First five dimensions, computed once from the exports and pinned. They change if pooling
# (mean vs CLS), normalisation, tokenisation (case, special tokens) or the export recipe changes.
# Tolerances: fp32 2e-5 (kernel differences between CPUs); int8 3e-3 (an activation value on a
# rounding boundary may land on the other int8 step on another CPU), still far below the
# 0.01-0.1 shifts a pooling, tokenisation or quantisation change causes.
GOLDEN_FP32 = {  # equal to sentence-transformers' output to 6 decimals
    "wireless mouse": [-0.080005, 0.011358, 0.016305, -0.05963, 0.028517],
    "Stainless steel 12-cup coffee maker": [-0.063258, 0.047206, -0.016701, 0.052089, -0.023916],
    "Organic cotton T-shirt, navy, XL": [-0.020399, 0.030674, 0.030243, -0.008899, 0.099024],
}
GOLDEN_INT8 = {
    "wireless mouse": [-0.076337, 0.022004, 0.019722, -0.065205, 0.028023],
    "Stainless steel 12-cup coffee maker": [-0.072717, 0.044754, -0.019698, 0.057136, -0.023268],
    "Organic cotton T-shirt, navy, XL": [-0.026561, 0.028722, 0.031784, -0.008629, 0.098455],
}


@pytest.fixture(scope="module")
def fp32(bundled_exports: dict[str, EncoderConfig]) -> OnnxTextEncoder:
    encoder = create_encoder(bundled_exports["onnx-fp32"])
    assert isinstance(encoder, OnnxTextEncoder)
    return encoder


@pytest.fixture(scope="module")
def int8(bundled_exports: dict[str, EncoderConfig]) -> OnnxTextEncoder:
    encoder = create_encoder(bundled_exports["onnx-int8"])
    assert isinstance(encoder, OnnxTextEncoder)
    return encoder


@pytest.mark.parametrize("backend", ["onnx-fp32", "onnx-int8"])
def test_golden_vectors(backend: str, fp32: OnnxTextEncoder, int8: OnnxTextEncoder) -> None:
    encoder, golden, tolerance = (fp32, GOLDEN_FP32, 2e-5) if backend == "onnx-fp32" else (int8, GOLDEN_INT8, 3e-3)
    vectors = encoder.encode_queries(list(GOLDEN_TEXTS))
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, row in zip(GOLDEN_TEXTS, vectors, strict=True):
        np.testing.assert_allclose(row[:5], golden[text], atol=tolerance, err_msg=text)


@pytest.mark.parametrize("backend", ["onnx-fp32", "onnx-int8"])
def test_slow_fused_kernels_stay_out_of_the_graph(
    backend: str, fp32: OnnxTextEncoder, int8: OnnxTextEncoder, tmp_path: Any
) -> None:
    """onnxruntime's SkipLayerNormalization and BiasGelu CPU kernels are slower than the nodes they
    fuse; neither the export nor the session optimiser may bring them back (e.g. after an upgrade)."""
    import onnx
    import onnxruntime as ort

    from aisle.embed.runtime import UNFUSED_PATTERNS

    model_path = (fp32 if backend == "onnx-fp32" else int8).model_dir / "model.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model_path), options, ["CPUExecutionProvider"], disabled_optimizers=UNFUSED_PATTERNS)
    for graph in (onnx.load(str(model_path)).graph, onnx.load(options.optimized_model_filepath).graph):
        operators = {node.op_type for node in graph.node}
        assert not operators & {"SkipLayerNormalization", "BiasGelu"}
        assert {"LayerNormalization", "Gelu"} <= operators and operators & {"Attention", "QAttention"}


@pytest.mark.parametrize("backend", ["onnx-fp32", "onnx-int8"])
def test_attention_projection_is_one_matmul(backend: str, fp32: OnnxTextEncoder, int8: OnnxTextEncoder) -> None:
    """The fused (Q)Attention kernels project Q/K/V one head at a time; the export splits them."""
    import onnx
    import onnxruntime as ort

    if tuple(int(part) for part in ort.__version__.split(".")[:2]) < (1, 23):
        pytest.skip(f"onnxruntime {ort.__version__} has no CPU kernel for ONNX Attention; the fused graph stays")
    graph = onnx.load(str((fp32 if backend == "onnx-fp32" else int8).model_dir / "model.onnx")).graph
    operators = {(node.domain, node.op_type) for node in graph.node}
    assert not operators & {("com.microsoft", "Attention"), ("com.microsoft", "QAttention")}
    assert sum(node.op_type == "Attention" and node.domain == "" for node in graph.node) == 6


def test_identity_of_the_two_backends(fp32: OnnxTextEncoder, int8: OnnxTextEncoder) -> None:
    assert fp32.name == int8.name == "all-MiniLM-L6-v2"
    assert fp32.dim == int8.dim == 384
    assert fp32.fingerprint.startswith("onnx-fp32:") and int8.fingerprint.startswith("onnx-int8:")
    assert fp32.fingerprint.split(":")[1] == int8.fingerprint.split(":")[1]
    assert fp32.max_length == 256, "sentence-transformers' max_seq_length, not tokenizer.json's 128"


def test_fp32_matches_sentence_transformers(fp32: OnnxTextEncoder, product_titles: list[str]) -> None:
    require_export_stack()
    reference = create_encoder(EncoderConfig(backend="sentence-transformers"))
    titles = product_titles[:300] + ["x", " ".join(product_titles[:80])]  # one text beyond 256 tokens
    cosines = (fp32.encode_documents(titles) * reference.encode_documents(titles)).sum(axis=1)
    assert cosines.min() >= 0.9999, f"min cosine {cosines.min():.6f}"
    query_cosines = (fp32.encode_queries(titles[:20]) * reference.encode_queries(titles[:20])).sum(axis=1)
    assert query_cosines.min() >= 0.9999
    assert reference.fingerprint.split(":")[1] == fp32.fingerprint.split(":")[1]


def _top10(vectors: np.ndarray) -> np.ndarray:
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    return np.argsort(-similarities, axis=1, kind="stable")[:, :10]


def test_int8_stays_close_to_fp32_on_real_titles(
    fp32: OnnxTextEncoder, int8: OnnxTextEncoder, product_titles: list[str]
) -> None:
    titles = product_titles[:1200]
    exact, quantised = fp32.encode_documents(titles), int8.encode_documents(titles)
    cosines = (exact * quantised).sum(axis=1)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_top10(exact), _top10(quantised), strict=True)])
    assert cosines.mean() >= 0.99, f"mean cosine {cosines.mean():.4f}"
    assert overlap >= 0.9, f"top-10 neighbour overlap {overlap:.4f}"


class _RecordingSession:
    """Wraps an onnxruntime session and records the shape of every ``input_ids`` it receives."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.shapes: list[tuple[int, ...]] = []

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.shapes.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


def test_dynamic_padding_and_truncation(bundled_exports: dict[str, EncoderConfig]) -> None:
    encoder = create_encoder(bundled_exports["onnx-int8"])
    assert isinstance(encoder, OnnxTextEncoder)
    recorder = _RecordingSession(encoder._session)
    encoder._session = recorder  # type: ignore[assignment]
    encoder.encode_queries(["sofa"])
    assert recorder.shapes == [(1, 3)], "[CLS] sofa [SEP]: no padding to 128"
    long_text = "adjustable ergonomic office chair with lumbar support " * 100
    vectors = encoder.encode_documents(["sofa", "red leather sofa", long_text], batch_size=2)
    # Sorted by length: the two short texts share a batch padded to 5 tokens; the long one is cut.
    assert recorder.shapes[1:] == [(2, 5), (1, 256)]
    assert encoder.token_lengths([long_text]) == [256]
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batches_keep_input_order_and_match_single_queries(fp32: OnnxTextEncoder, short_queries: list[str]) -> None:
    queries = short_queries[:40]
    batched = fp32.encode_documents(queries, batch_size=7)
    singles = np.vstack([fp32.encode_queries([query]) for query in queries])
    np.testing.assert_allclose(batched, singles, atol=2e-5)
    assert fp32.encode_documents([]).shape == (0, 384)


def test_prefixes_and_max_length_from_config(bundled_exports: dict[str, EncoderConfig]) -> None:
    base = bundled_exports["onnx-fp32"]
    plain = create_encoder(base)
    prefixed = create_encoder(EncoderConfig(backend="onnx-fp32", cache_dir=base.cache_dir, query_prefix="query: "))
    np.testing.assert_allclose(prefixed.encode_queries(["lamp"]), plain.encode_queries(["query: lamp"]), atol=1e-6)
    np.testing.assert_allclose(prefixed.encode_documents(["lamp"]), plain.encode_documents(["lamp"]), atol=1e-6)
    short = create_encoder(EncoderConfig(backend="onnx-fp32", cache_dir=base.cache_dir, max_length=8))
    assert isinstance(short, OnnxTextEncoder) and short.max_length == 8
    text = "a very long product title about a modern mid century walnut coffee table"
    assert short.token_lengths([text]) == [8]
    truncated_by_hand = plain.encode_queries(["a very long product title about"])
    np.testing.assert_allclose(short.encode_queries([text]), truncated_by_hand, atol=1e-5)


def test_single_string_is_rejected(fp32: OnnxTextEncoder) -> None:
    with pytest.raises(TypeError):
        fp32.encode_queries("sofa")  # type: ignore[arg-type]
