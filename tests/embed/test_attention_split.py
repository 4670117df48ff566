"""onnxruntime's fused Attention → one projection + ONNX Attention: same numbers, checked three ways.

The graphs are built here with ``onnx.helper`` (no torch): a fused ``com.microsoft.Attention``
block over right-padded batches, its rewrite, and a NumPy reference of multi-head attention.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from aisle.embed.attention import ATTENTION_OPSET, runs_on_cpu, split_fused_attention

onnx = pytest.importorskip("onnx", reason="the export extra (aisle-search[export]) is not installed")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

HIDDEN, HEADS = 8, 2


def _fused_attention_model(rng: np.random.Generator, *, mask_input: str = "attention_mask", **attributes: int):
    """x (batch, seq, 8) and a 0/1 mask → one fused Attention whose mask is the row lengths."""
    weights = rng.normal(size=(HIDDEN, 3 * HIDDEN)).astype(np.float32)
    bias = rng.normal(size=3 * HIDDEN).astype(np.float32)
    nodes = [
        helper.make_node("Cast", [mask_input], ["mask32"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["mask32", "axis1"], ["lengths"], keepdims=0),
        helper.make_node(
            "Attention", ["x", "w", "b", "lengths"], ["y"], domain="com.microsoft", num_heads=HEADS, **attributes
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "fused",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
            helper.make_tensor_value_info(mask_input, TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    # IR 8, what torch's exporter writes for opset 17 (onnx's newest may be beyond onnxruntime's).
    return helper.make_model(graph, opset_imports=opsets, ir_version=8), weights, bias


def _padded_batch(rng: np.random.Generator, lengths: list[int]) -> dict[str, np.ndarray]:
    width = max(lengths)
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths], dtype=np.int64)
    return {"x": rng.normal(size=(len(lengths), width, HIDDEN)).astype(np.float32), "attention_mask": mask}


def _reference(x: np.ndarray, mask: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Multi-head attention in NumPy: padding keys get no weight."""
    batch, seq, _ = x.shape
    head = HIDDEN // HEADS
    q, k, v = np.split(x @ weights + bias, 3, axis=-1)
    per_head = [t.reshape(batch, seq, HEADS, head).transpose(0, 2, 1, 3) for t in (q, k, v)]
    scores = per_head[0] @ per_head[1].transpose(0, 1, 3, 2) / np.sqrt(head)
    scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)
    probabilities = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return (probabilities @ per_head[2]).transpose(0, 2, 1, 3).reshape(batch, seq, HIDDEN)


def _run(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_split_graph_matches_the_fused_kernel_and_numpy() -> None:
    rng = np.random.default_rng(0)
    fused, weights, bias = _fused_attention_model(rng)
    split = onnx.ModelProto()
    split.CopyFrom(fused)
    assert split_fused_attention(split) == 1
    if not runs_on_cpu(split):
        pytest.skip(f"onnxruntime {ort.__version__} cannot run ONNX Attention (opset {ATTENTION_OPSET})")
    operators = {(node.domain, node.op_type) for node in split.graph.node}
    assert ("com.microsoft", "Attention") not in operators and ("", "Attention") in operators
    assert max(o.version for o in split.opset_import if o.domain in ("", "ai.onnx")) >= ATTENTION_OPSET
    for lengths in ([5, 5, 5], [7, 3, 1], [1]):
        feeds = _padded_batch(rng, lengths)
        expected = _reference(feeds["x"], feeds["attention_mask"], weights, bias)
        np.testing.assert_allclose(_run(split, feeds), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_run(split, feeds), _run(fused, feeds), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("attributes", "mask_input"),
    [({"unidirectional": 1}, "attention_mask"), ({}, "input_mask"), ({}, None)],
    ids=["causal", "no-attention_mask-input", "no-padding-mask"],
)
def test_blocks_outside_the_known_case_stay_fused(attributes: dict[str, int], mask_input: str | None) -> None:
    model, _, _ = _fused_attention_model(
        np.random.default_rng(1), mask_input=mask_input or "attention_mask", **attributes
    )
    if mask_input is None:  # the fused block attends to padding too: not what the rewrite computes
        del model.graph.node[-1].input[3:]
    before = model.SerializeToString()
    assert split_fused_attention(model) == 0
    assert model.SerializeToString() == before


def test_int8_quantisation_of_the_split_graph_keeps_onnx_attention(tmp_path) -> None:
    from aisle.embed.quantize import quantize_int8

    rng = np.random.default_rng(2)
    model, _, _ = _fused_attention_model(rng)
    split_fused_attention(model)
    if not runs_on_cpu(model):
        pytest.skip(f"onnxruntime {ort.__version__} cannot run ONNX Attention (opset {ATTENTION_OPSET})")
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    settings = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    assert settings["op_types"] == ["MatMul"], "ONNX Attention must not be handed to the QAttention quantiser"
    quantised = onnx.load(str(tmp_path / "int8.onnx"))
    assert "QAttention" not in {node.op_type for node in quantised.graph.node}
    feeds = _padded_batch(rng, [6, 4, 2])
    exact, approximate = _run(model, feeds), _run(quantised, feeds)
    cosines = (exact * approximate).sum(-1) / (np.linalg.norm(exact, axis=-1) * np.linalg.norm(approximate, axis=-1))
    assert cosines.min() > 0.99
