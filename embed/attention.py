"""Export-time rewrite of onnxruntime's fused ``Attention`` into a projection plus ONNX ``Attention``.

onnxruntime's transformer optimiser fuses each BERT self-attention block into one
``com.microsoft.Attention`` node, which the int8 quantiser turns into ``QAttention``. Both CPU
kernels compute the Q/K/V projection as one small GEMM per sequence, head and matrix (over a
thousand tiny GEMMs per layer for a batch of titles), and then the attention itself per sequence
and head; on all-MiniLM-L6-v2 that is a large share of the int8 model's time on product titles.

The rewrite keeps the fused block's weights and mathematics but splits the work:

* the projection becomes ``MatMul(x, W_qkv) + bias`` over all tokens of the batch at once, which
  the quantiser turns into one ``DynamicQuantizeMatMul`` (per-channel weights, as for every other
  matmul), followed by a ``Split`` into Q, K and V;
* the attention becomes the standard ONNX ``Attention`` (opset 23), whose CPU kernel is several
  times faster, with the padding mask built once from ``attention_mask``.

The vectors are unchanged; bulk encoding and batch-1 queries got faster (measured on real titles,
interleaved with the fused export: ``benchmarks/results/DECISIONS.md``, "Attention split").
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: The first opset with ``Attention``, and the IR version that goes with it.
ATTENTION_OPSET = 23
_ATTENTION_IR_VERSION = 11
#: What onnxruntime's fused kernel adds to the scores of padding keys (its ``mask_filter_value``).
_MASK_FILTER_VALUE = -10000.0
_MASK_INPUT = "attention_mask"
_ADDITIVE_MASK = "attention_split/additive_mask"


def split_fused_attention(model: Any) -> int:
    """Rewrites every plain ``com.microsoft.Attention`` node of ``model`` in place.

    A node is rewritten only if it is the encoder case this module knows: weights and bias are
    initializers with equal Q, K and V sizes, a padding mask, no past state, not unidirectional,
    no attributes but ``num_heads`` (and ``scale``), and the graph has an ``attention_mask``
    input, from which the rewrite builds its own mask. Anything else is left fused. If a node
    changed, the default-domain opset is raised to :data:`ATTENTION_OPSET` (and the IR version
    with it).

    Args:
        model: an ``onnx.ModelProto`` after onnxruntime's BERT fusion.

    Returns:
        The number of attention blocks rewritten.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    if _MASK_INPUT not in {value.name for value in graph.input}:
        return 0
    nodes: list[Any] = []
    rewritten = 0
    for node in graph.node:
        if not _is_plain_encoder_attention(node, initializers):
            nodes.append(node)
            continue
        prefix = f"{node.name or node.output[0]}/split"
        width = numpy_helper.to_array(initializers[node.input[1]]).shape[1] // 3
        sizes = numpy_helper.from_array(np.array([width] * 3, dtype=np.int64), f"{prefix}/sizes")
        graph.initializer.append(sizes)
        q, k, v = (f"{prefix}/{part}" for part in "qkv")
        heads, scale = _attribute(node, "num_heads"), _attribute(node, "scale")
        nodes += [
            helper.make_node("MatMul", [node.input[0], node.input[1]], [f"{prefix}/xw"], name=f"{prefix}/MatMul"),
            helper.make_node("Add", [f"{prefix}/xw", node.input[2]], [f"{prefix}/qkv"], name=f"{prefix}/Add"),
            helper.make_node("Split", [f"{prefix}/qkv", sizes.name], [q, k, v], axis=2, name=f"{prefix}/Split"),
            helper.make_node(
                "Attention",
                [q, k, v, _ADDITIVE_MASK],
                list(node.output[:1]),
                name=f"{prefix}/Attention",
                q_num_heads=heads,
                kv_num_heads=heads,
                **({} if scale is None else {"scale": scale}),
            ),
        ]
        rewritten += 1
    if not rewritten:
        return 0
    del graph.node[:]
    graph.node.extend(_mask_nodes(helper, numpy_helper, TensorProto, graph) + nodes)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, ATTENTION_OPSET)
    model.ir_version = max(model.ir_version, _ATTENTION_IR_VERSION)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten


def runs_on_cpu(model: Any) -> bool:
    """Whether the installed onnxruntime can open ``model`` (opset 23 needs onnxruntime >= 1.23)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:
        logger.info("keeping the fused attention: onnxruntime cannot run the split graph (%s)", error)
        return False
    return True


def _mask_nodes(helper: Any, numpy_helper: Any, tensor_proto: Any, graph: Any) -> list[Any]:
    """``(batch, 1, seq, seq)`` scores offset: 0 for real keys, the filter value for padding.

    ONNX ``Attention`` wants the query axis in the mask, hence a broadcast against zeros.
    """
    p = "attention_split"
    for name, value in ((f"{p}/one", 1.0), (f"{p}/zero", 0.0), (f"{p}/filter", _MASK_FILTER_VALUE)):
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    for name, axes in ((f"{p}/key_axes", [1, 2]), (f"{p}/query_axes", [1, 3])):
        graph.initializer.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name))
    return [
        helper.make_node("Cast", [_MASK_INPUT], [f"{p}/mask"], to=tensor_proto.FLOAT),
        helper.make_node("Sub", [f"{p}/one", f"{p}/mask"], [f"{p}/padding"]),
        helper.make_node("Mul", [f"{p}/padding", f"{p}/filter"], [f"{p}/offset"]),
        helper.make_node("Unsqueeze", [f"{p}/offset", f"{p}/key_axes"], [f"{p}/per_key"]),
        helper.make_node("Mul", [f"{p}/mask", f"{p}/zero"], [f"{p}/zeros"]),
        helper.make_node("Unsqueeze", [f"{p}/zeros", f"{p}/query_axes"], [f"{p}/per_query"]),
        helper.make_node("Add", [f"{p}/per_key", f"{p}/per_query"], [_ADDITIVE_MASK]),
    ]


def _attribute(node: Any, name: str) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _is_plain_encoder_attention(node: Any, initializers: dict[str, Any]) -> bool:
    if node.op_type != "Attention" or node.domain != "com.microsoft":
        return False
    if {attribute.name for attribute in node.attribute} - {"num_heads", "scale"}:
        return False
    # A padding mask is required (the rewrite masks padding keys), past state is not supported.
    if len(node.input) < 4 or not node.input[3] or any(node.input[4:]) or len(node.output) != 1:
        return False
    weights, bias = initializers.get(node.input[1]), initializers.get(node.input[2])
    if weights is None or bias is None or len(weights.dims) != 2:
        return False
    return weights.dims[1] % 3 == 0 and list(bias.dims) == [weights.dims[1]]
