"""Dynamic int8 quantisation of an fp32 ONNX transformer, with activation-outlier splitting.

``quantize_int8`` wraps ``onnxruntime.quantization.quantize_dynamic`` (per-channel int8 weights,
activations quantised per tensor at run time). Dynamic quantisation gives each activation tensor
one scale, so a single outlier channel coarsens every other channel's grid. Transformer
feed-forward blocks have exactly that: in all-MiniLM-L6-v2 one or two of the 1,536 GELU outputs
reach 14-25 while the 99th percentile of the others is ~4, i.e. a 4-6x coarser grid for the
down-projection's input. Measured on 1,200 real product titles, all-int8 gives mean cosine
0.992 to fp32 and top-10 neighbour overlap 0.89.

The fix is the decomposition of LLM.int8(), done once at export time: a few calibration inputs
find the outlier channels (max |activation| > 2x the 99th percentile of the channel maxima, at
most 8 per layer). Those channels leave the quantised matmul and are computed in fp32 by a
side path of ``k`` channels (a ``k × hidden`` matmul, negligible cost):

* fused pattern ``MatMul(W1) → BiasGelu/Gelu/FastGelu/QuickGelu → MatMul(W2)``: the channels are
  silenced in W1 (zero weights, bias -50, so the activation outputs 0), and the side path
  recomputes them from the block input: zero extra work on the main path;
* any other activation graph: the activation is multiplied by a 0/1 mask before quantisation
  and the outlier columns are gathered for the side path.

Result on the same titles: mean cosine 0.9945, overlap 0.92, at all-int8 speed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.onnx_tools import import_onnx

logger = logging.getLogger(__name__)

_FUSED_ACTIVATIONS = frozenset({"BiasGelu", "Gelu", "FastGelu", "QuickGelu"})
_OUTLIER_RATIO = 2.0
_MAX_OUTLIERS = 8
#: Pre-activation given to a silenced channel: GELU(-50) = -50 * Phi(-50) == 0 in float32.
_SILENCED_BIAS = -50.0


@dataclass
class _FeedForward:
    """One feed-forward block: ``down(activation(up(hidden) [+ bias]))``."""

    down: Any
    activation: Any | None  # the activation node, when it is a single (fused) node
    up: Any | None  # the up-projection MatMul, when it can be silenced
    bias_add: Any | None  # an Add(bias) between ``up`` and the activation, if any
    bias: str | None  # the bias initializer's name (BiasGelu/FastGelu input or Add input)


def quantize_int8(
    source: Path, destination: Path, calibration: Sequence[Mapping[str, np.ndarray]] | None = None
) -> dict[str, Any]:
    """Quantises ``source`` to ``destination``; returns a description for the export manifest.

    * Per-channel weight scales: per-tensor scales lose much of MiniLM's agreement with fp32,
      because a few output channels have much larger weights.
    * ``reduce_range`` (7-bit weights): on CPUs without VNNI, onnxruntime's u8×s8 kernels sum
      pairs of products in int16 and can saturate with 8-bit weights; 7 bits make every CPU
      compute the same thing, at a negligible cost in cosine (``benchmarks/results/DECISIONS.md``).
    * Embedding tables (``Gather``) stay float: quantising them saves memory, not time.

    Args:
        source: fp32 ONNX model.
        destination: where to write the int8 model.
        calibration: a few input feeds (one dict per run) used to find activation outliers;
            ``None`` skips outlier splitting.

    Returns:
        The settings and the outlier channels, for ``aisle_model.json``.
    """
    onnx = import_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    outliers: dict[str, list[int]] = {}
    keep_float: list[str] = []
    if calibration:
        outliers = _find_outliers(model, _feed_forwards(model), calibration)
        keep_float = _split_outliers(model, outliers)
    # "Attention" means onnxruntime's fused com.microsoft op (→ QAttention) to the quantiser, which
    # would misread ONNX's own Attention (see embed.attention): only the fused one is listed.
    op_types = ["MatMul"]
    if any(node.op_type == "Attention" and node.domain == "com.microsoft" for node in model.graph.node):
        op_types.append("Attention")
    staged_source = destination.with_name(destination.name + ".fp32-split.onnx")
    onnx.save(model, str(staged_source))
    # The quantiser logs one line per tensor on the root logger; keep build logs readable.
    root = logging.getLogger()
    previous = root.level
    root.setLevel(max(previous, logging.ERROR))
    try:
        quantize_dynamic(
            str(staged_source),
            str(destination),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=op_types,
            nodes_to_exclude=keep_float,
            # Fused contrib ops (Attention, EmbedLayerNormalization) defeat ONNX shape inference.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(previous)
        staged_source.unlink(missing_ok=True)
    return {
        "method": "onnxruntime.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": True,
        "op_types": op_types,
        "fp32_outlier_channels": outliers,
    }


def _feed_forwards(model: Any) -> list[_FeedForward]:
    """Finds ``MatMul`` nodes whose input is a GELU-like activation (feed-forward outputs)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    initializers = {init.name for init in model.graph.initializer}
    blocks = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers:
            continue
        activation = producers.get(node.input[0])
        if activation is None:
            continue
        if activation.op_type in _FUSED_ACTIVATIONS and consumers.get(activation.output[0]) == 1:
            blocks.append(_silenceable(activation, node, producers, consumers, initializers))
        elif _is_unfused_activation(activation, producers):
            blocks.append(_FeedForward(node, None, None, None, None))
    return blocks


def _silenceable(activation: Any, down: Any, producers: dict, consumers: dict, initializers: set) -> _FeedForward:
    """Describes a fused block, with ``up``/``bias`` set only if W1 can be edited safely."""
    bias = activation.input[1] if len(activation.input) > 1 and activation.input[1] in initializers else None
    before = producers.get(activation.input[0])
    bias_add = None
    if bias is None and before is not None and before.op_type == "Add" and consumers.get(before.output[0]) == 1:
        bias_add = before
        bias = next((name for name in before.input if name in initializers), None)
        before = next((producers.get(name) for name in before.input if name not in initializers), None)
    up_ok = (
        before is not None
        and before.op_type == "MatMul"
        and before.input[1] in initializers
        and consumers.get(before.output[0]) == 1
        and bias is not None
    )
    return _FeedForward(down, activation, before if up_ok else None, bias_add, bias if up_ok else None)


def _is_unfused_activation(node: Any, producers: dict) -> bool:
    """An element-wise tail (Mul/Add) with Erf/Tanh/Sigmoid within three steps: a GELU graph."""
    frontier, seen = [node], 0
    while frontier and seen < 12:
        current = frontier.pop()
        seen += 1
        if current.op_type in {"Erf", "Tanh", "Sigmoid"}:
            return True
        if current.op_type in {"Mul", "Add", "Div"}:
            frontier.extend(producers[name] for name in current.input if name in producers)
    return False


def _find_outliers(
    model: Any, blocks: list[_FeedForward], calibration: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, list[int]]:
    """Runs the fp32 model on the calibration feeds and picks each block's outlier channels."""
    onnx = import_onnx()
    import onnxruntime as ort

    if not blocks:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    watched = [block.down.input[0] for block in blocks]
    for name in watched:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    maxima: list[np.ndarray | None] = [None] * len(watched)
    for feeds in calibration:
        for index, values in enumerate(session.run(watched, dict(feeds))):
            channel_max = np.abs(values.reshape(-1, values.shape[-1])).max(axis=0)
            previous = maxima[index]
            maxima[index] = channel_max if previous is None else np.maximum(previous, channel_max)
    outliers = {}
    for block, channel_max in zip(blocks, maxima, strict=True):
        assert channel_max is not None
        limit = max(1, min(_MAX_OUTLIERS, len(channel_max) // 64))
        ranked = np.argsort(-channel_max)[:limit]
        chosen = ranked[channel_max[ranked] > _OUTLIER_RATIO * np.percentile(channel_max, 99)]
        if len(chosen):
            outliers[block.down.name] = sorted(int(channel) for channel in chosen)
    return outliers


class _GraphEditor:
    """Small helpers to add constants and nodes to an ONNX graph and read/replace weights."""

    def __init__(self, model: Any) -> None:
        from onnx import helper, numpy_helper

        self.model, self.helper, self.numpy_helper = model, helper, numpy_helper
        self.initializers = {init.name: init for init in model.graph.initializer}

    def weight(self, name: str) -> np.ndarray:
        return self.numpy_helper.to_array(self.initializers[name]).copy()

    def replace(self, name: str, array: np.ndarray) -> None:
        self.initializers[name].CopyFrom(self.numpy_helper.from_array(array, name))

    def constant(self, name: str, array: np.ndarray) -> str:
        self.model.graph.initializer.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, name: str, **attributes: Any) -> Any:
        return self.helper.make_node(op_type, inputs, [output], name=name, **attributes)


def _split_outliers(model: Any, outliers: dict[str, list[int]]) -> list[str]:
    """Rewrites each block that has outliers; returns the side-path MatMuls to keep in fp32.

    ``down(x)`` becomes ``down(x without outliers) + x[:, outliers] @ W2[outliers]``.
    """
    import_onnx()
    graph = _GraphEditor(model)
    blocks = {block.down.name: block for block in _feed_forwards(model)}
    before: dict[str, list[Any]] = {}
    after: dict[str, list[Any]] = {}
    keep_float: list[str] = []
    for down_name, channels in outliers.items():
        block, index = blocks[down_name], np.asarray(channels, dtype=np.int64)
        prefix = f"{down_name}/outliers"
        activation_out, w2_name = block.down.input
        if block.up is not None and block.activation is not None:
            side_nodes, main_input = _silence_channels(graph, block, index, prefix), activation_out
            keep_float.append(f"{prefix}/up")
        else:
            width = graph.weight(w2_name).shape[0]
            side_nodes, main_input = _mask_channels(graph, activation_out, index, width, prefix), f"{prefix}/inliers"
        side_w2 = graph.constant(f"{prefix}/w2", graph.weight(w2_name)[index])
        side_nodes.append(graph.node("MatMul", [f"{prefix}/x", side_w2], f"{prefix}/y", f"{prefix}/down"))
        keep_float.append(f"{prefix}/down")
        output = block.down.output[0]
        block.down.input[0] = main_input
        block.down.output[0] = f"{prefix}/main"
        before[down_name] = side_nodes
        after[down_name] = [graph.node("Add", [f"{prefix}/main", f"{prefix}/y"], output, f"{prefix}/sum")]
    ordered = []
    for node in model.graph.node:  # keep the node list topologically sorted
        ordered.extend([*before.get(node.name, []), node, *after.get(node.name, [])])
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return keep_float


def _silence_channels(graph: _GraphEditor, block: _FeedForward, index: np.ndarray, prefix: str) -> list[Any]:
    """Zeroes the outlier channels in W1 (their activation becomes 0) and recomputes them aside."""
    assert block.up is not None and block.activation is not None and block.bias is not None
    hidden, w1_name = block.up.input
    w1, bias = graph.weight(w1_name), graph.weight(block.bias)
    side_w1, side_bias = w1[:, index], bias[index]
    w1[:, index], bias[index] = 0.0, _SILENCED_BIAS
    graph.replace(w1_name, w1)
    graph.replace(block.bias, bias)
    nodes = [graph.node("MatMul", [hidden, graph.constant(f"{prefix}/w1", side_w1)], f"{prefix}/z", f"{prefix}/up")]
    side_bias_name = graph.constant(f"{prefix}/b1", side_bias)
    if block.bias_add is not None:  # MatMul → Add(bias) → activation
        nodes.append(graph.node("Add", [f"{prefix}/z", side_bias_name], f"{prefix}/zb", f"{prefix}/bias"))
        activation_inputs = [f"{prefix}/zb"]
    else:  # BiasGelu / FastGelu take the bias as their second input
        activation_inputs = [f"{prefix}/z", side_bias_name]
    clone = graph.node(
        block.activation.op_type, activation_inputs, f"{prefix}/x", f"{prefix}/act", domain=block.activation.domain
    )
    clone.attribute.extend(block.activation.attribute)
    return [*nodes, clone]


def _mask_channels(graph: _GraphEditor, activation_out: str, index: np.ndarray, width: int, prefix: str) -> list[Any]:
    """Multiplies the outlier channels by 0 before quantisation and gathers them aside."""
    mask = np.ones(width, dtype=np.float32)
    mask[index] = 0.0
    mask_name = graph.constant(f"{prefix}/mask", mask)
    index_name = graph.constant(f"{prefix}/index", index)
    return [
        graph.node("Mul", [activation_out, mask_name], f"{prefix}/inliers", f"{prefix}/mask"),
        graph.node("Gather", [activation_out, index_name], f"{prefix}/x", f"{prefix}/gather", axis=-1),
    ]
