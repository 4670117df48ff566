"""Search relevance on the Amazon-Google dev set: dense only, BM25 only and hybrid.

Usage::

    python -m benchmarks.eval_search_ag [--out benchmarks/results/search_ag.json] [--no-tune]

The corpus file (``corpus.csv``: product_id, title, manufacturer, price) is loaded as a shop's
export would be, with ``--map id=product_id --map brand=manufacturer``, and indexed by
``aisle.index.build.build_version`` with the real encoder (``aisle.embed.create_encoder``: the bundled
MiniLM, ONNX int8). Every query (a listing title of the same product in another shop) runs
through the service's own ``Engine.search`` (hybrid candidates → reranker, default search
rules), in each retrieval mode, and once more through HTTP (``POST /search`` on the app) to
check that the API returns exactly the engine's results.

The same runs on the typo queries (``queries_typo.csv``: one typo each) and, for both, with the
listing's manufacturer appended to the query (``query_sets``), with typo tolerance off and with
the dense retriever given the query as typed, to show what each part contributes.

Metrics over the labelled products (``qrels.csv``): MRR@10, recall@10, and hit@10 (the share of
queries with a labelled product in the top 10). The fusion weights are tuned on half of the
queries (even positions in query-id order) and reported on the other half and on all; the
service defaults (``aisle.service.settings``) are evaluated as they are, next to the tuned values.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.base import Encoder, ForwardingEncoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.index.loaded import LoadedIndex
from aisle.index.storage import atomic_write_json
from aisle.service.engine import Engine
from aisle.service.ranking.hybrid import RETRIEVALS, FusionParams
from benchmarks.data import shared_data_dir

REPO = Path(__file__).resolve().parent.parent
COLUMN_MAP = {"id": "product_id", "brand": "manufacturer"}
K = 10


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    relevant: frozenset[str]


#: The query sets reported: (file, whether the listing's manufacturer is appended to its title).
QUERY_SETS = {
    "clean": ("queries.csv", False),
    "typo": ("queries_typo.csv", False),
    "clean+manufacturer": ("queries.csv", True),
    "typo+manufacturer": ("queries_typo.csv", True),
}


def load_queries(folder: Path, file: str = "queries.csv", with_manufacturer: bool = False) -> list[Query]:
    """Labelled queries in query-id order (queries without a label are left out).

    ``queries_typo.csv`` holds the same queries with one typo each; ``with_manufacturer`` appends
    the other shop's manufacturer field to the title, as a shopper typing a brand would.
    """
    relevant: dict[str, set[str]] = defaultdict(set)
    with open(folder / "qrels.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if float(row.get("gain") or 1) > 0:
                relevant[row["query_id"]].add(row["product_id"])
    with open(folder / file, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["query_id"] in relevant]
    rows.sort(key=lambda row: int(row["query_id"]) if row["query_id"].isdigit() else row["query_id"])
    return [
        Query(
            row["query_id"],
            f"{row['query']} {row.get('manufacturer') or ''}".strip() if with_manufacturer else row["query"],
            frozenset(relevant[row["query_id"]]),
        )
        for row in rows
    ]


def query_set_report(folder: Path, engine: Engine, fusion: FusionParams) -> dict[str, Any]:
    """Hybrid, BM25 and dense MRR@10 on the clean and the typo queries, title alone and with the
    manufacturer; then the typo queries with typo tolerance off, and with the dense retriever
    given the query as typed (not its confident correction)."""
    report: dict[str, Any] = {}
    for name, (file, with_manufacturer) in QUERY_SETS.items():
        if not (folder / file).is_file():
            continue
        queries = load_queries(folder, file, with_manufacturer)
        report[name] = {mode: metrics(queries, rank_all(engine, queries, mode, fusion)) for mode in RETRIEVALS}
        if name.startswith("typo"):
            lexical, encode_corrected = engine.index.lexical, engine.encode_corrected
            try:
                lexical.typo_tolerance = False
                report[name]["hybrid, typo tolerance off"] = metrics(
                    queries, rank_all(engine, queries, "hybrid", fusion)
                )
                lexical.typo_tolerance, engine.encode_corrected = True, False
                report[name]["hybrid, dense encodes the query as typed"] = metrics(
                    queries, rank_all(engine, queries, "hybrid", fusion)
                )
            finally:
                lexical.typo_tolerance, engine.encode_corrected = True, encode_corrected
    for suffix in ("", "+manufacturer"):
        clean, typo = report.get("clean" + suffix), report.get("typo" + suffix)
        if clean and typo:
            gap = round(clean["hybrid"]["mrr@10"] - typo["hybrid"]["mrr@10"], 4)
            report[f"typo_gap{suffix or ' (title only)'}"] = {"mrr@10": gap, "within_0.02": gap <= 0.02}
    return report


def split(queries: Sequence[Query]) -> tuple[list[Query], list[Query]]:
    """(tune, holdout): even and odd positions in query-id order."""
    return list(queries[0::2]), list(queries[1::2])


def metrics(queries: Sequence[Query], ranked: Sequence[Sequence[str]]) -> dict[str, float]:
    """MRR@10, recall@10 and hit@10 of ranked id lists against the labels."""
    mrr = recall = hits = 0.0
    for query, ids in zip(queries, ranked):
        top = list(ids)[:K]
        first = next((n for n, item in enumerate(top) if item in query.relevant), None)
        mrr += 0.0 if first is None else 1.0 / (first + 1)
        found = len(query.relevant & set(top))
        recall += found / len(query.relevant)
        hits += found > 0
    count = max(len(queries), 1)
    return {
        "mrr@10": round(mrr / count, 4),
        "recall@10": round(recall / count, 4),
        "hit@10": round(hits / count, 4),
        "queries": len(queries),
    }


class CachingEncoder(ForwardingEncoder):
    """The real encoder, remembering query vectors so that tuning re-ranks without re-encoding."""

    def __init__(self, inner: Encoder) -> None:
        super().__init__(inner)
        self._queries: dict[str, np.ndarray] = {}

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in texts if text not in self._queries]
        if missing:
            for text, vector in zip(missing, self.inner.encode_queries(missing)):
                self._queries[text] = vector
        return np.stack([self._queries[text] for text in texts])


def real_encoder() -> Encoder:
    """The bundled MiniLM (ONNX int8), exported on first use into ``AISLE_CACHE_DIR``."""
    from aisle.embed import create_encoder, prepare_model
    from aisle.embed.config import EncoderConfig

    config = EncoderConfig()
    prepare_model(config)
    return create_encoder(config)


def build_engine(folder: Path, encoder: Encoder, index_root: Path, candidates: int = 200) -> Engine:
    """Indexes ``folder/corpus.csv`` as ``aisle build`` would and opens an engine on it."""
    catalog = load_catalog(folder / "corpus.csv", COLUMN_MAP)
    report = build_version(catalog, index_root, encoder, BuildOptions(show_progress=False))
    return Engine(LoadedIndex.load(report.path), encoder, candidates)


def rank_all(engine: Engine, queries: Sequence[Query], retrieval: str, fusion: FusionParams) -> list[list[str]]:
    ids = engine.index.items.ids
    return [
        [
            ids[hit.row]
            for hit in engine.search(
                query.text,
                K,
                retrieval=retrieval,
                fusion=fusion,  # type: ignore[arg-type]
                request_id=f"eval-{query.id}",
            )
        ]
        for query in queries
    ]


def tune(engine: Engine, queries: Sequence[Query]) -> tuple[FusionParams, list[dict[str, Any]]]:
    """The fusion with the best MRR@10 on ``queries``: weighted (dense weight 0.05…0.95) or RRF."""
    grid = [FusionParams("weighted", round(float(w), 2), round(1 - float(w), 2)) for w in np.arange(0.05, 0.96, 0.05)]
    grid += [FusionParams("rrf", dense, 1.0, k) for k in (10, 30, 60) for dense in (0.5, 1.0)]
    trials = []
    for fusion in grid:
        trials.append({"fusion": asdict(fusion), **metrics(queries, rank_all(engine, queries, "hybrid", fusion))})
    best = max(range(len(grid)), key=lambda n: (trials[n]["mrr@10"], trials[n]["recall@10"]))
    return grid[best], trials


def through_http(index_root: Path, encoder: Encoder, queries: Sequence[Query], fusion: FusionParams) -> list[list[str]]:
    """The ids ``POST /search`` returns for every query, from an app serving ``index_root``."""
    from fastapi.testclient import TestClient

    from aisle.service.app import create_app
    from aisle.service.settings import ServiceSettings

    settings = ServiceSettings(
        index_dir=index_root,
        data_dir=index_root.parent / "data",
        watch_interval_s=0,
        fusion_method=fusion.method,
        fusion_dense_weight=fusion.dense_weight,
        fusion_lexical_weight=fusion.lexical_weight,
        fusion_rrf_k=fusion.rrf_k,
    )
    ranked = []
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        for query in queries:
            response = client.post(
                "/search", json={"query": query.text, "k": K}, headers={"X-Request-ID": f"eval-{query.id}"}
            )
            response.raise_for_status()
            ranked.append([result["id"] for result in response.json()["results"]])
    return ranked


def evaluate(
    folder: Path, encoder: Encoder, work: Path, do_tune: bool = True, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Everything the report holds (see the module docstring)."""
    from aisle.service.settings import ServiceSettings

    encoder = CachingEncoder(encoder)
    queries = load_queries(folder)
    tune_half, holdout = split(queries)
    started = time.perf_counter()
    engine = build_engine(folder, encoder, work / "index")
    build_s = time.perf_counter() - started
    defaults = ServiceSettings.model_fields
    default_fusion = FusionParams(
        defaults["fusion_method"].default,
        defaults["fusion_dense_weight"].default,
        defaults["fusion_lexical_weight"].default,
        defaults["fusion_rrf_k"].default,
    )
    progress(f"indexed {len(engine.index)} products in {build_s:.1f} s; {len(queries)} queries")
    tuned, trials = tune(engine, tune_half) if do_tune else (default_fusion, [])
    progress(f"tuned on {len(tune_half)} queries: {tuned}")

    modes: dict[str, dict[str, Any]] = {}
    for retrieval in RETRIEVALS:
        fusions = {"defaults": default_fusion, "tuned": tuned} if retrieval == "hybrid" else {"": default_fusion}
        for label, fusion in fusions.items():
            name = f"{retrieval} ({label})" if label else retrieval
            ranked = rank_all(engine, queries, retrieval, fusion)
            by_id = dict(zip((q.id for q in queries), ranked))
            modes[name] = {
                "holdout": metrics(holdout, [by_id[q.id] for q in holdout]),
                "tune": metrics(tune_half, [by_id[q.id] for q in tune_half]),
                "all": metrics(queries, ranked),
            }
            progress(f"{name}: {modes[name]['all']}")
    query_sets = query_set_report(folder, engine, default_fusion)
    for name, report in query_sets.items():
        progress(f"{name}: {report}")
    started = time.perf_counter()
    engine_ranked = rank_all(engine, queries, "hybrid", default_fusion)
    http_ranked = through_http(work / "index", encoder, queries, default_fusion)
    identical = sum(a == b for a, b in zip(engine_ranked, http_ranked))
    http_seconds = round(time.perf_counter() - started, 2)
    typo_queries = load_queries(folder, "queries_typo.csv") if (folder / "queries_typo.csv").is_file() else []
    typo_http = through_http(work / "index", encoder, typo_queries, default_fusion) if typo_queries else []
    return {
        "dataset": {
            "folder": str(folder),
            "products": len(engine.index),
            "queries": len(queries),
            "labels": sum(len(q.relevant) for q in queries),
            "split": "tune = even positions in query-id order, holdout = odd positions",
        },
        "encoder": {"name": encoder.name, "fingerprint": encoder.fingerprint},
        "index_build_s": round(build_s, 2),
        "service_default_fusion": asdict(default_fusion),
        "tuned_fusion": asdict(tuned),
        "modes": modes,
        "hybrid_beats_both": all(
            modes["hybrid (defaults)"][part]["mrr@10"]
            > max(modes["dense"][part]["mrr@10"], modes["lexical"][part]["mrr@10"])
            for part in ("holdout", "all")
        ),
        "http": {
            "identical_to_engine": identical,
            "queries": len(queries),
            "hit@10": metrics(queries, http_ranked)["hit@10"],
            "seconds": http_seconds,
            "typo_queries": metrics(typo_queries, typo_http) if typo_queries else None,
        },
        "query_sets": query_sets,
        "tuning_trials": trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the amazon_google folder (default: shared dev data)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_ag.json")
    parser.add_argument("--no-tune", action="store_true", help="evaluate the service defaults only")
    args = parser.parse_args()
    folder = args.data or shared_data_dir() / "dev" / "search" / "amazon_google"
    with tempfile.TemporaryDirectory(prefix="aisle-eval-ag-") as work:
        report = evaluate(folder, real_encoder(), Path(work), do_tune=not args.no_tune)
    report["command"] = "python -m benchmarks.eval_search_ag" + (" --no-tune" if args.no_tune else "")
    from benchmarks.machine import describe_machine

    report["machine"] = describe_machine(REPO)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(
        json.dumps(
            {key: report[key] for key in ("modes", "hybrid_beats_both", "http", "tuned_fusion", "query_sets")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
