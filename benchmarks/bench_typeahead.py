"""Typeahead, the query cache, and plain search before and after them: one run, JSON results.

    python -m benchmarks.bench_typeahead --sizes 100000,1000000 --out benchmarks/results/typeahead.json

For each catalogue size (ascending, so 1M comes last; built by ``benchmarks.catalogue`` from
real listings, as ``benchmarks.run`` builds them):

1. in process, pinned to one core: ``/suggest``'s whole work (``suggest_body``: prefix BM25,
   personal blend, rules, completions, highlighting) over every prefix a shopper types on the
   way to each of the 480 real WANDS queries;
2. in process: ``Engine.search`` over a Zipf-shaped stream of the WANDS queries (popular
   queries repeat, as in a shop's search bar) with the query cache on and off, and over the
   unique queries (each once: every lookup misses): hit rate and latency;
3. over HTTP, the server pinned to one core and the load generator on the other: ``GET
   /suggest`` on the same prefixes and plain ``POST /search`` on the WANDS queries; at the
   first size also ``POST /search`` served by the code before this change (``--base``, a git
   revision, run from an exported copy), alternating rounds with the new code on the same
   index, so that both are measured under the same machine load.

Sizes above ``--flat-above`` items are built with a flat vector index: typeahead never reads the
vector index, and a flat one builds in seconds rather than many minutes. A flat index makes a
search scan every vector, so the query cache and ``/search`` are measured on the other sizes only.
The JSON file is written after each size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aisle.index.storage import atomic_write_json
from benchmarks.data import REPO_ROOT, load_base_products, load_queries
from benchmarks.http_bench import LoadLevels, run_loadgen
from benchmarks.machine import describe_machine
from benchmarks.measure import LoadMonitor, latency_stats, pinned
from benchmarks.pipeline import cpu_plan, make_encoder, prepare_catalogue
from benchmarks.server import ServerConfig, running_server

log = logging.getLogger("benchmarks.bench_typeahead")

#: Zipf exponent of the repeated-query stream (web and shop query logs are close to 1).
ZIPF_EXPONENT = 1.0


def typed_prefixes(queries: Sequence[str], limit: int) -> list[str]:
    """What a shopper's search box holds after each keystroke on the way to each query (from two
    characters), in typing order, at most ``limit`` of them."""
    prefixes = [query[:end] for query in queries for end in range(2, len(query) + 1)]
    return prefixes[:limit]


def zipf_stream(queries: Sequence[str], length: int, seed: int = 0) -> list[str]:
    """``length`` queries drawn with probability ∝ 1/rank (the popularity order shuffled)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(queries))
    weights = 1.0 / np.arange(1, len(queries) + 1) ** ZIPF_EXPONENT
    draws = rng.choice(len(queries), size=length, p=weights / weights.sum())
    return [queries[order[draw]] for draw in draws]


def with_typo(query: str) -> str:
    """``query`` with one typo, as ``queries_typo.csv`` has them: the two middle letters of its
    longest word of five letters or more swapped (the query itself when it has no such word)."""
    words = query.split()
    long_words = [n for n, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not long_words:
        return query
    at = max(long_words, key=lambda n: len(words[n]))
    word, middle = words[at], len(words[at]) // 2
    words[at] = word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]
    return " ".join(words)


def spelling_figures(lexical: Any, queries: Sequence[str]) -> dict[str, Any]:
    """The vocabulary's size and the cost of analysing a query (corrections included), uncached."""
    vocabulary = lexical.vocabulary
    typos = [with_typo(query) for query in queries]
    report: dict[str, Any] = {
        "vocabulary_words": len(vocabulary),
        "deletion_index_entries": int(len(vocabulary._deletes)),
        "deletion_index_mib": round((vocabulary._deletes.nbytes + vocabulary._targets.nbytes) / 2**20, 1),
        "queries_with_a_typo": sum(typo != query for typo, query in zip(typos, queries)),
        "corrected": sum(lexical.analyze(typo).corrected is not None for typo in typos if typo not in queries),
    }
    for label, inputs in (("analyze_clean_uncached", queries), ("analyze_typo_uncached", typos)):
        report[label] = time_calls(lambda q: lexical._analyze(q, False, True), inputs)
    return report


def vocabulary_scale(words: int, seed: int = 0) -> dict[str, Any]:
    """Spelling correction on a vocabulary of ``words`` words (a real shop of a million products
    has far more distinct words than the benchmark catalogue, whose variants share theirs): the
    benchmark catalogue's words, then compounds of two of them ("sofatable"), as long shop
    vocabularies are full of brand names and run-together words. Times the build and lookups of
    typed words with one typo."""
    from aisle.index.lexical import LexicalIndex
    from aisle.index.vocabulary import Vocabulary, allowed_edits

    base = LexicalIndex.build([f"{p.title} {p.brand or ''} {p.category or ''}" for p in load_base_products()])
    real = [word for word in base.vocabulary.words if word.isalpha() and len(word) >= 3]
    rng = np.random.default_rng(seed)
    frequencies = {word: int(base.vocabulary.frequency(word)) for word in real}
    while len(frequencies) < words:
        first, second = rng.choice(len(real), 2)
        frequencies.setdefault(real[first] + real[second], int(rng.integers(1, 50)))
    tick = time.perf_counter()
    vocabulary = Vocabulary.build(frequencies)
    build_s = time.perf_counter() - tick
    meant = [str(word) for word in rng.choice(list(frequencies), 2000) if allowed_edits(str(word))]
    typed = [with_typo(word) for word in meant]
    corrections = [vocabulary.correct(word) for word in typed]
    return {
        "vocabulary_words": len(vocabulary),
        "deletion_index_entries": int(len(vocabulary._deletes)),
        "deletion_index_mib": round((vocabulary._deletes.nbytes + vocabulary._targets.nbytes) / 2**20, 1),
        "build_seconds": round(build_s, 1),
        "correct_one_typo": time_calls(vocabulary.correct, typed),
        # Compounds of short words may sit one edit from several words: not every typo is undone.
        "corrected_to_the_word_meant": round(
            sum(c is not None and c.word == word for c, word in zip(corrections, meant)) / max(len(meant), 1), 3
        ),
    }


def time_calls(call: Callable[[str], Any], inputs: Sequence[str], warmup: int = 20) -> dict[str, Any]:
    """Wall-clock latency of ``call`` over ``inputs``, and the thread's CPU time per call: on a
    loaded machine the wall clock's tail is mostly time spent descheduled, the CPU time is not."""
    for text in inputs[:warmup]:
        call(text)
    seconds, cpu_seconds = [], []
    for text in inputs:
        tick, cpu_tick = time.perf_counter(), time.thread_time()
        call(text)
        seconds.append(time.perf_counter() - tick)
        cpu_seconds.append(time.thread_time() - cpu_tick)
    cpu = latency_stats(cpu_seconds)
    return {**latency_stats(seconds), "cpu_ms": {key: cpu[key] for key in ("p50", "p95", "p99", "mean")}}


def in_process(
    index_root: Path,
    encoder: Any,
    queries: Sequence[str],
    prefixes: Sequence[str],
    stream_length: int,
    measure_cache: bool,
) -> dict:
    """Typeahead and cache figures measured in this process (pinned to the server's core)."""
    from aisle.service.app import create_holder
    from aisle.service.ranking.rules import RuleBook
    from aisle.service.routers.suggest import suggest_body
    from aisle.service.settings import ServiceSettings

    settings = ServiceSettings(index_dir=index_root, threads=1, verify_checksums=False)
    holder = create_holder(settings, lambda _settings: encoder)
    engine = holder.engine
    rules = RuleBook().for_surface("search")
    report: dict[str, Any] = {"items": len(engine.index)}
    with pinned(cpu_plan()["inprocess"]):
        # Cache off first (every prefix computed), then on: typed prefixes repeat ("so", "sof").
        for label, capacity in (("suggest_cache_off", 0), ("suggest", settings.query_cache_size)):
            engine.suggestions = type(engine.suggestions)(capacity)
            engine.index.lexical._analyze_cached.cache_clear()
            engine.index.lexical._spans_cached.cache_clear()
            report[label] = time_calls(lambda q: suggest_body(engine, None, q, 5, rules=rules), prefixes)
            report[label].update(requests=len(prefixes), cache=engine.suggestions.stats())
        report["spelling"] = spelling_figures(engine.index.lexical, queries)
        if not measure_cache:
            return report
        stream = zipf_stream(queries, stream_length)
        cache = {"zipf_stream": {"length": len(stream), "distinct": len(set(stream)), "exponent": ZIPF_EXPONENT}}
        for label, capacity, inputs in (
            ("unique_queries_cache_on", settings.query_cache_size, list(queries)),
            ("zipf_cache_off", 0, stream),
            ("zipf_cache_on", settings.query_cache_size, stream),
        ):
            engine.query_vectors = type(engine.query_vectors)(capacity)
            engine.index.lexical._analyze_cached.cache_clear()
            engine.index.lexical._spans_cached.cache_clear()
            cache[label] = {
                **time_calls(lambda q: engine.search(q, 10), inputs, warmup=0),
                "cache": engine.query_vectors.stats(),
            }
        report["query_cache"] = cache
    return report


def export_revision(revision: str, work: Path) -> Path:
    """An importable copy of the code at ``revision``: ``PYTHONPATH`` for ``python -m aisle``.

    The repository's folders map to ``aisle.*`` through setuptools' package-dir; the copy lays
    them out as that mapping does (``core/`` is ``aisle``, ``index/`` is ``aisle/index``, ...).
    """
    source = work / f"src-{revision}"
    package_root = work / f"pkg-{revision}"
    if not package_root.exists():
        source.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", revision], cwd=REPO_ROOT, capture_output=True, check=True).stdout
        archive_path = work / f"{revision}.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(source, filter="data")
        shutil.copytree(source / "core", package_root / "aisle")
        for folder in ("embed", "index", "service", "training"):
            (package_root / "aisle" / folder).symlink_to(source / folder)
        (package_root / "benchmarks").symlink_to(source / "benchmarks")
        _write_entry_points(source / "pyproject.toml", package_root / "aisle_search-0.0.0.dist-info")
    return package_root


def _write_entry_points(pyproject: Path, dist_info: Path) -> None:
    """The revision's own entry points (``aisle`` finds its subcommands there), in a dist-info
    that ``importlib.metadata`` finds before the installed one (it comes first on the path)."""
    import tomllib

    entry_points = tomllib.loads(pyproject.read_text())["project"].get("entry-points", {})
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: aisle-search\nVersion: 0.0.0\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
        lines.append("")
    (dist_info / "entry_points.txt").write_text("\n".join(lines))


def http_runs(
    index_root: Path,
    plans: dict[str, Path],
    levels: LoadLevels,
    work: Path,
    *,
    base_path: Path | None,
    rounds: int,
) -> dict[str, Any]:
    """Closed-loop latency at concurrency 1 of each plan on the new code and, for ``search``,
    on the base code: rounds alternate between the two servers."""
    cpus = cpu_plan()
    # (code, environment): the plans cycle over the WANDS queries and typed prefixes, so the new
    # code is measured with its query caches off as well (every search encoded, every prefix
    # computed, as the base code does).
    servers: dict[str, tuple[Path | None, dict[str, str]]] = {
        "new code": (None, {}),
        "new code, query cache off": (None, {"AISLE_QUERY_CACHE_SIZE": "0"}),
    }
    if base_path is not None:
        servers["base code"] = (base_path, {})
    results: dict[str, dict[str, list]] = {}
    for round_number in range(rounds):
        for label, (code_path, environment) in servers.items():
            if label == "base code" and "search" not in plans:
                continue
            config = ServerConfig(
                index_root=index_root,
                data_dir=Path(tempfile.mkdtemp(dir=work)),
                cpus=(0,),
                code_path=code_path,
                environment=tuple(environment.items()),
            )
            with running_server(config, work / f"server-{round_number}-{len(results)}.log") as server:
                for plan_name, plan in plans.items():
                    if label == "base code" and plan_name != "search":
                        continue
                    outcome = run_loadgen(
                        server, plan, mode="closed", level=1, levels=levels, cycle=True, cpus=cpus["client"]
                    )
                    results.setdefault(f"{plan_name} ({label})", {}).setdefault("runs", []).append(
                        {
                            **outcome["latency_ms"],
                            "server_cpu_ms_per_request": outcome.get("server_cpu_ms_per_request"),
                            "errors": sum(outcome["failures"].values()),
                            "load": os.getloadavg(),
                        }
                    )
    for entry in results.values():
        runs = entry["runs"]
        entry["p50_ms_median"] = round(statistics.median(run["p50"] for run in runs), 3)
        entry["p99_ms_median"] = round(statistics.median(run["p99"] for run in runs), 3)
    return results


def write_plan(path: Path, requests: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(request) + "\n" for request in requests), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "typeahead.json")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".cache" / "aisle-bench")
    parser.add_argument("--base", default=None, help="git revision whose /search is measured beside the new code")
    parser.add_argument("--flat-above", type=int, default=200_000)
    parser.add_argument("--prefixes", type=int, default=3000, help="typed prefixes timed in process")
    parser.add_argument("--stream", type=int, default=3000, help="length of the Zipf query stream")
    parser.add_argument("--requests", type=int, default=1500, help="HTTP requests per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating HTTP rounds (base, new, ...)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--vocabulary-scale", type=int, default=0, help="only time spelling correction on a vocabulary this large"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.vocabulary_scale:
        with pinned(cpu_plan()["inprocess"]):
            scale = vocabulary_scale(args.vocabulary_scale)
        scale.update(
            command="python -m benchmarks.bench_typeahead " + " ".join(argv if argv is not None else sys.argv[1:]),
            machine=describe_machine(REPO_ROOT),
            load=os.getloadavg(),
        )
        atomic_write_json(args.out, scale)
        print(json.dumps({key: value for key, value in scale.items() if key != "machine"}, indent=2))
        return 0
    monitor = LoadMonitor()
    started = time.perf_counter()
    queries = load_queries()
    prefixes = typed_prefixes(queries, args.prefixes)
    products = load_base_products()
    encoder = make_encoder(1)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.bench_typeahead " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(REPO_ROOT),
        "load_before": os.getloadavg(),
        "queries": {"wands": len(queries), "typed_prefixes": len(prefixes)},
        "sizes": {},
    }
    levels = LoadLevels(
        concurrency=(1,),
        rates=(),
        max_requests=args.requests,
        max_seconds=60,
        warmup=50,
        max_steal=None,
        steal_retries=0,
    )
    sizes = sorted(int(size) for size in args.sizes.split(",") if size.strip())
    for number, size in enumerate(sizes):
        index_type = "flat" if size > args.flat_above else None
        catalogue_args = argparse.Namespace(
            size=size, sigma=0.025, seed=0, index_type=index_type, work_dir=args.work_dir, query_limit=None
        )
        index_root, catalogue = prepare_catalogue(catalogue_args, encoder, products)
        log.info("catalogue %d ready: %s", size, catalogue["version"])
        entry: dict[str, Any] = {"catalogue": catalogue, "load": os.getloadavg()}
        # Searches on a flat index scan every vector: the cache and /search are measured on the
        # sizes with a graph index only.
        graph_index = index_type is None
        entry["in_process"] = in_process(index_root, encoder, queries, prefixes, args.stream, graph_index)
        log.info("in process %d: %s", size, json.dumps(entry["in_process"])[:400])
        if not args.skip_http:
            with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
                work = Path(scratch)
                plans: dict[str, Path] = {
                    "suggest": write_plan(
                        work / "suggest.jsonl",
                        [
                            {"method": "GET", "path": "/suggest?" + _query_string(prefix), "body": None}
                            for prefix in prefixes
                        ],
                    ),
                    "search": write_plan(
                        work / "search.jsonl",
                        [{"method": "POST", "path": "/search", "body": {"query": q, "k": 10}} for q in queries],
                    ),
                }
                if not graph_index:
                    del plans["search"]
                base = export_revision(args.base, args.work_dir) if args.base and number == 0 else None
                entry["http"] = http_runs(index_root, plans, levels, work, base_path=base, rounds=args.rounds)
            log.info("http %d: %s", size, json.dumps(entry["http"])[:600])
        entry["load_after"] = os.getloadavg()
        result["sizes"][str(size)] = entry
        atomic_write_json(args.out, result)  # each size as it is done: a long run keeps its first part
    result["machine_load"] = monitor.report()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(args.out)
    return 0


def _query_string(prefix: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": prefix, "k": 5})


if __name__ == "__main__":
    sys.exit(main())
