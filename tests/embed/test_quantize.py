"""int8 quantisation with activation-outlier splitting, on small synthetic feed-forward graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.embed.artifacts import cosine_rows
from aisle.embed.quantize import quantize_int8
from aisle.embed.runtime import make_session

onnx = pytest.importorskip("onnx", reason="quantisation needs onnx (pip install 'aisle-search[export]')")
from onnx import TensorProto, helper, numpy_helper

HIDDEN, INNER, OUTLIERS = 64, 256, (7, 100)


def _feed_forward(path: Path, *, fused: bool) -> None:
    """``x → MatMul(W1) → GELU (+bias) → MatMul(W2)`` where two GELU channels reach ~40.

    ``fused`` uses onnxruntime's BiasGelu (the pattern of an optimised BERT); otherwise GELU is
    spelled out with Erf, as the TorchScript exporter writes it.
    """
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (HIDDEN, INNER)).astype(np.float32)
    bias = rng.normal(0, 0.1, INNER).astype(np.float32)
    w1[:, list(OUTLIERS)] *= 8.0  # a few channels with a huge range, as in real transformers
    w2 = rng.normal(0, 0.1, (INNER, HIDDEN)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(bias, "b1"), numpy_helper.from_array(w2, "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["z"], name="up")]
    if fused:
        nodes.append(helper.make_node("BiasGelu", ["z", "b1"], ["g"], name="gelu", domain="com.microsoft"))
    else:
        constants = {"sqrt2": 2**0.5, "one": 1.0, "half": 0.5}
        inits += [numpy_helper.from_array(np.array(value, np.float32), name) for name, value in constants.items()]
        nodes += [
            helper.make_node("Add", ["z", "b1"], ["zb"], name="bias"),
            helper.make_node("Div", ["zb", "sqrt2"], ["zs"], name="div"),
            helper.make_node("Erf", ["zs"], ["e"], name="erf"),
            helper.make_node("Add", ["e", "one"], ["e1"], name="add1"),
            helper.make_node("Mul", ["zb", "e1"], ["m"], name="mul"),
            helper.make_node("Mul", ["m", "half"], ["g"], name="gelu"),
        ]
    nodes.append(helper.make_node("MatMul", ["g", "w2"], ["y"], name="down"))
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", HIDDEN])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    # IR version 8 (onnx 1.10+): readable by every onnxruntime release the project supports.
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))


@pytest.mark.parametrize("fused", [True, False], ids=["fused-bias-gelu", "erf-gelu"])
def test_outlier_channels_are_found_and_kept_in_float(tmp_path: Path, fused: bool) -> None:
    source = tmp_path / "fp32.onnx"
    _feed_forward(source, fused=fused)
    rng = np.random.default_rng(1)
    calibration = [{"x": rng.normal(0, 1, (4, HIDDEN)).astype(np.float32)} for _ in range(4)]
    inputs = {"x": rng.normal(0, 1, (256, HIDDEN)).astype(np.float32)}
    expected = make_session(source, 1).run(None, inputs)[0]

    settings = quantize_int8(source, tmp_path / "split.onnx", calibration)
    assert settings["fp32_outlier_channels"] == {"down": list(OUTLIERS)}
    quantize_int8(source, tmp_path / "plain.onnx", calibration=None)
    split = make_session(tmp_path / "split.onnx", 1).run(None, inputs)[0]
    plain = make_session(tmp_path / "plain.onnx", 1).run(None, inputs)[0]

    split_error = np.abs(split - expected).mean()
    plain_error = np.abs(plain - expected).mean()
    assert cosine_rows(split, expected).min() > 0.999 > cosine_rows(plain, expected).min()
    assert split_error < 0.6 * plain_error, (split_error, plain_error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "plain.onnx", "split.onnx"]


def test_model_without_outliers_is_left_alone(tmp_path: Path) -> None:
    source = tmp_path / "fp32.onnx"
    _feed_forward(source, fused=True)
    model = onnx.load(str(source))
    for init in model.graph.initializer:  # undo the planted outliers: a flat activation range
        if init.name == "w1":
            w1 = numpy_helper.to_array(init).copy()
            w1[:, list(OUTLIERS)] /= 8.0
            init.CopyFrom(numpy_helper.from_array(w1, "w1"))
    onnx.save(model, str(source))
    calibration = [{"x": np.random.default_rng(2).normal(0, 1, (8, HIDDEN)).astype(np.float32)}]
    assert quantize_int8(source, tmp_path / "int8.onnx", calibration)["fp32_outlier_channels"] == {}
