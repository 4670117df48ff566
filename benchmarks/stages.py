"""Where the time of one ``/search`` goes, measured in-process on the serving objects.

The query path is timed as it runs, not re-implemented: the engine's own collaborators are
wrapped with timers for the duration of the measurement (the tokenizer and the onnxruntime
session inside the encoder, the row selection, the FAISS and BM25 indexes, candidate fusion and
the reranker), then ``Engine.search`` is called on every query, and the response is built and
serialized the way the HTTP layer does (result objects, the response model, JSON). Time not
covered by any wrapped part is reported as ``other``, so the stages always add up to the whole.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from benchmarks.measure import latency_stats

#: Stage names in display order; a stage that could not be instrumented is left out.
STAGE_ORDER = (
    "tokenize",
    "encode: onnx run",
    "encode: other",
    "filter",
    "retrieve: ANN",
    "retrieve: BM25",
    "retrieve: fusion",
    "rerank",
    "serialize",
    "other",
)


class StageClock:
    """Accumulates wall and CPU seconds per stage; nested calls of one stage count once.

    CPU time (``time.process_time``) is kept beside wall time because on a machine shared with
    other work the wall time of a stage also holds the time spent waiting for a core.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self._depth: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu_seconds.clear()

    def wrap(self, function: Callable, stage: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[stage] += 1
            tick, cpu_tick = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[stage] -= 1
                if self._depth[stage] == 0:
                    self.seconds[stage] += time.perf_counter() - tick
                    self.cpu_seconds[stage] += time.process_time() - cpu_tick

        return timed


class _TimedProxy:
    """Stands in for an object whose attributes cannot be replaced (a Rust tokenizer)."""

    def __init__(self, target: Any, methods: dict[str, Callable]) -> None:
        self._target = target
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        return self._methods.get(name) or getattr(self._target, name)


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    had_own = name in getattr(owner, "__dict__", {})
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)  # back to the class attribute


def _find(obj: Any, names: Sequence[str], has: str) -> tuple[Any, str] | None:
    """The first attribute of ``obj`` among ``names`` (also one level down) having method ``has``."""
    for name in names:
        value = getattr(obj, name, None)
        if value is not None and hasattr(value, has):
            return obj, name
    for inner in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if hasattr(inner, "__dict__") and not isinstance(inner, type):
            for name in names:
                value = getattr(inner, name, None)
                if value is not None and hasattr(value, has):
                    return inner, name
    return None


@contextmanager
def instrumented(engine: Any, clock: StageClock) -> Iterator[list[str]]:
    """Wraps the engine's collaborators with ``clock``; yields what could be instrumented."""
    import aisle.service.engine as engine_module

    found: list[str] = []
    with ExitStack() as stack:
        encoder = engine.encoder
        tokenizer = _find(encoder, ("tokenizer", "_tokenizer"), "encode_batch")
        if tokenizer:
            owner, name = tokenizer
            target = getattr(owner, name)
            methods = {m: clock.wrap(getattr(target, m), "tokenize") for m in ("encode", "encode_batch")}
            stack.enter_context(_patched(owner, name, _TimedProxy(target, methods)))
            found.append("tokenize")
        session = _find(encoder, ("session", "_session"), "run")
        if session:
            owner, name = session
            target = getattr(owner, name)
            stack.enter_context(_patched(owner, name, _TimedProxy(target, {"run": clock.wrap(target.run, "onnx")})))
            found.append("encode: onnx run")
        stack.enter_context(_patched(encoder, "encode_queries", clock.wrap(encoder.encode_queries, "encode")))
        ann = engine.index.text.ann
        stack.enter_context(_patched(ann, "search", clock.wrap(ann.search, "ann")))
        lexical = engine.index.lexical
        for method in ("match", "top", "above", "scores_of", "search", "scores"):
            if hasattr(lexical, method):
                stack.enter_context(_patched(lexical, method, clock.wrap(getattr(lexical, method), "bm25")))
        from aisle.service.ranking import listing as listing_module

        for module, name, stage in (
            (engine_module, "select_rows", "filter"),
            (engine_module, "TextMatches", "retrieve"),
            (listing_module, "rerank", "rerank"),
        ):
            if hasattr(module, name):
                stack.enter_context(_patched(module, name, clock.wrap(getattr(module, name), stage)))
                found.append(stage)
        yield found


def _serialize(engine: Any, hits: list) -> bytes:
    """The HTTP layer's work after ranking: result objects and JSON bytes, as the routes build them."""
    from aisle.service.routers.responses import ranked_body

    return ranked_body(engine, hits, "0" * 32, 0.0)


def exclusive_stages(seconds: dict[str, float], total: float) -> dict[str, float]:
    """Nested timings → exclusive ones that add up to ``total``."""
    encode, onnx, tokenize = seconds.get("encode", 0.0), seconds.get("onnx", 0.0), seconds.get("tokenize", 0.0)
    retrieve, ann, bm25 = seconds.get("retrieve", 0.0), seconds.get("ann", 0.0), seconds.get("bm25", 0.0)
    stages = {
        "tokenize": tokenize,
        "encode: onnx run": onnx,
        "encode: other": max(encode - onnx - tokenize, 0.0),
        "filter": seconds.get("filter", 0.0),
        "retrieve: ANN": ann,
        "retrieve: BM25": bm25,
        "retrieve: fusion": max(retrieve - ann - bm25, 0.0),
        "rerank": seconds.get("rerank", 0.0),
        "serialize": seconds.get("serialize", 0.0),
    }
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return stages


def measure_stages(engine: Any, queries: Sequence[str], k: int = 10, warmup: int = 20) -> dict[str, Any]:
    """Per-stage latency statistics of ``engine.search`` + serialization over ``queries``."""
    clock = StageClock()
    per_stage: dict[str, list[float]] = defaultdict(list)
    per_stage_cpu: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    cpu_totals: list[float] = []
    result_sizes: list[int] = []
    with instrumented(engine, clock) as found:
        for query in list(queries)[:warmup]:
            _serialize(engine, engine.search(query, k))
        for query in queries:
            clock.reset()
            tick, cpu_tick = time.perf_counter(), time.process_time()
            hits = engine.search(query, k)
            serialize_tick, serialize_cpu = time.perf_counter(), time.process_time()
            body = _serialize(engine, hits)
            done, cpu_done = time.perf_counter(), time.process_time()
            clock.seconds["serialize"] += done - serialize_tick
            clock.cpu_seconds["serialize"] += cpu_done - serialize_cpu
            totals.append(done - tick)
            cpu_totals.append(cpu_done - cpu_tick)
            result_sizes.append(len(body))
            for stage, value in exclusive_stages(clock.seconds, done - tick).items():
                per_stage[stage].append(value)
            for stage, value in exclusive_stages(clock.cpu_seconds, cpu_done - cpu_tick).items():
                per_stage_cpu[stage].append(value)
    stages = {name: latency_stats(per_stage[name]) for name in STAGE_ORDER if any(per_stage[name])}
    stages_cpu = {name: latency_stats(per_stage_cpu[name]) for name in stages}
    notes = []
    if "tokenize" not in found:
        notes.append("the encoder's tokenizer was not found: tokenization is inside 'encode: other'")
    if "encode: onnx run" not in found:
        notes.append("the encoder's onnxruntime session was not found: the model run is inside 'encode: other'")
    notes.append(f"response body: mean {sum(result_sizes) / max(len(result_sizes), 1):.0f} bytes for k={k}")
    return {
        "queries": len(queries),
        "k": k,
        "instrumented": found,
        "total_ms": latency_stats(totals),
        "total_cpu_ms": latency_stats(cpu_totals),
        "stages_ms": stages,
        "stages_cpu_ms": stages_cpu,
        "notes": notes,
    }
