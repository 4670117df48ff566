"""Export-time ONNX helpers: torch → ONNX, CPU graph fusion, tokenizer files.

Only the export step uses this module; serving never imports it. torch and onnx are imported
inside the functions, so that a missing ``aisle-search[export]`` extra produces a clear message.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aisle.embed.artifacts import TORCH_INSTALL_HINT
from aisle.embed.attention import runs_on_cpu, split_fused_attention

logger = logging.getLogger(__name__)

#: Opset 17 has LayerNormalization as one op, which onnxruntime runs as a single kernel.
ONNX_OPSET = 17


def import_torch() -> Any:
    """Imports torch or raises an ``ImportError`` that says how to get it."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"exporting a model to ONNX needs torch: {TORCH_INSTALL_HINT}") from error
    return torch


def import_onnx() -> Any:
    """Imports onnx (needed by the exporter and the quantiser) with an install hint."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"exporting or quantising a model needs onnx: {TORCH_INSTALL_HINT}") from error
    return onnx


def export_to_onnx(
    module: Any,
    example_inputs: Mapping[str, Any],
    output_names: Sequence[str],
    path: Path,
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> None:
    """Traces ``module`` with the TorchScript exporter and writes an ONNX file.

    The legacy exporter (``dynamo=False``) is used on purpose: it is fast, handles Hugging Face
    models without ``torch.export`` graph breaks and produces the attention pattern that
    onnxruntime's fusion recognises. The example inputs must contain padding, otherwise the
    tracer may bake "no mask needed" into the graph.

    Args:
        module: a ``torch.nn.Module`` taking the inputs positionally, in ``example_inputs`` order.
        example_inputs: input name → example tensor.
        output_names: names of the module's outputs.
        path: destination ``.onnx`` file.
        dynamic_axes: input/output name → {axis: symbolic name}.
    """
    torch = import_torch()
    import_onnx()
    module.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about Python branches are expected for HF models (shape checks).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(example_inputs.values()),
            str(path),
            input_names=list(example_inputs),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def save_fast_tokenizer(tokenizer: Any, path: Path) -> None:
    """Writes a transformers fast tokenizer as ``tokenizer.json``, without baked-in padding.

    Source files often pad every input to a fixed length; the runtime pads per batch instead.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(path))


def fuse_for_cpu(source: Path, destination: Path, *, model_type: str, num_heads: int, hidden_size: int) -> bool:
    """Fuses attention, layer-norm and GELU subgraphs with onnxruntime's transformer optimizer.

    A fused MiniLM graph has a tenth of the nodes; for a short query the per-node overhead is a
    large share of the work, so batch-1 queries get faster (``benchmarks/results/DECISIONS.md``, "Graph fusion"). Fusion
    only matches known patterns, so callers must check the result numerically and keep the
    unfused graph if it disagrees.

    Two fusions are left out, because onnxruntime 1.31's fused CPU kernels are slower than the
    nodes they replace (:func:`embed.runtime.make_session` keeps the runtime from re-fusing them):

    * residual additions stay ``Add`` + ``LayerNormalization``: the ``SkipLayerNormalization``
      kernel is several times slower and slowed bulk encoding;
    * the feed-forward bias stays an ``Add`` before ``Gelu``: ``BiasGelu`` is slower per element
      than ``Gelu``, and the int8 session folds the ``Add`` into the preceding quantised matmul as
      its bias anyway. Same exact (erf) GELU.

    Both measured: ``benchmarks/results/DECISIONS.md``, "Graph fusion".

    The fused attention blocks are then split again into one Q/K/V projection and ONNX
    ``Attention`` (:mod:`embed.attention`), when the installed onnxruntime can run that graph.

    Returns:
        ``True`` if at least one attention block was fused and ``destination`` was written.
    """
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:  # pragma: no cover - part of the onnxruntime wheel
        return False
    options = FusionOptions(model_type)
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_bias_gelu = False
    previous = logging.getLogger("onnxruntime.transformers").level
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            str(source),
            model_type=model_type,
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,  # python fusions only; runtime optimisations happen at session load
            use_gpu=False,
            optimization_options=options,
        )
    except Exception as error:
        logger.info("graph fusion skipped (%s): %s", type(error).__name__, error)
        return False
    finally:
        logging.getLogger("onnxruntime.transformers").setLevel(previous)
    fused_ops = {node.op_type for node in optimized.model.graph.node}
    if not fused_ops & {"Attention", "MultiHeadAttention"}:
        return False
    split = type(optimized.model)()
    split.CopyFrom(optimized.model)
    if split_fused_attention(split) and runs_on_cpu(split):
        optimized.model.CopyFrom(split)
    optimized.save_model_to_file(str(destination))
    return True
