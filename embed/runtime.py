"""onnxruntime sessions and tokenizers tuned for small-batch CPU serving (no torch)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
from tokenizers import Tokenizer

#: Runtime fusions left out: onnxruntime's ``SkipLayerNormalization`` and ``BiasGelu`` CPU kernels
#: are slower than the nodes they would replace (see ``aisle.embed.onnx_tools.fuse_for_cpu``).
UNFUSED_PATTERNS = ["SkipLayerNormFusion", "BiasGeluFusion"]


def make_session(model_path: Path, threads: int) -> ort.InferenceSession:
    """Opens an ONNX model for CPU inference.

    One intra-op thread per worker process is the fastest setup for serving: queries are tiny,
    so thread hand-offs cost more than they save, and scaling comes from running more workers.
    Sequential execution and a single inter-op thread avoid a second thread pool.

    Args:
        model_path: the ``.onnx`` file.
        threads: intra-op threads (``>= 1``).

    Returns:
        A ready session on the CPU execution provider.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(model_path), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED_PATTERNS
    )


def load_tokenizer(tokenizer_path: Path, *, max_length: int) -> Tokenizer:
    """Loads a fast tokenizer that truncates at ``max_length`` and never pads.

    Hugging Face ``tokenizer.json`` files often carry a fixed padding length (all-MiniLM-L6-v2
    pads every input to 128 tokens) and a truncation length that differs from the model's
    ``max_seq_length`` (128 vs 256). Both are reset here. Callers pad each batch to its own
    longest row only (dynamic padding): a short query then costs a small fraction of a padded one
    (``benchmarks/results/DECISIONS.md``, "Dynamic padding").

    Args:
        tokenizer_path: ``tokenizer.json``.
        max_length: truncation length including special tokens.

    Returns:
        The configured tokenizer.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer
