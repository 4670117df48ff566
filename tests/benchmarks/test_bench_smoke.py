"""The latency harness: its pure parts, and one tiny end-to-end run checked for structure.

No timing is asserted anywhere: speed is what ``benchmarks/run.py`` reports, not a test verdict.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.catalogue import PrecomputedEncoder, synthesize, variant_title
from benchmarks.compare import peer_skip_reason
from benchmarks.data import BaseProduct, MissingDataError, load_base_products, load_queries
from benchmarks.loadgen import Outcome, encode_request, percentile, summarize
from benchmarks.measure import cpu_times, exact_top_k, latency_stats, recall_at_k, steal_fraction
from benchmarks.stages import exclusive_stages
from benchmarks.targets import evaluate_targets
from tests.fakes import HashingEncoder


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.95) == 7.0


def test_summarize_counts_errors_and_throughput() -> None:
    outcome = Outcome(latencies_s=[0.001, 0.002, 0.003, 0.004], started=0.0, finished=2.0)
    outcome.statuses.update({200: 3, 500: 1})
    outcome.failures["timeout"] += 1
    summary = summarize(outcome)
    assert summary["requests"] == 5 and summary["ok"] == 3 and summary["errors"] == 2
    assert summary["throughput_rps"] == 1.5
    assert summary["latency_ms"]["p50"] == 2.0 and summary["latency_ms"]["max"] == 4.0


def test_encode_request_is_valid_http() -> None:
    raw = encode_request("POST", "/search", {"query": "sofa", "k": 3}, "127.0.0.1:8000")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /search HTTP/1.1\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"query": "sofa", "k": 3}
    assert encode_request("GET", "/health", None, "h").endswith(b"Content-Length: 0\r\n\r\n")


def test_exact_top_k_matches_a_full_sort_across_chunks() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, 16)).astype(np.float32)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    found = exact_top_k(vectors, queries, 10, chunk=64)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert np.array_equal(found, expected)


def test_recall_at_k() -> None:
    assert recall_at_k([["a", "b"], ["c", "d"]], [["a", "x"], ["c", "d"]], 2) == 0.75


def test_latency_stats_in_milliseconds() -> None:
    stats = latency_stats([0.002] * 99 + [0.1])
    assert stats["p50"] == 2.0 and stats["p99"] == 2.0 and stats["max"] == 100.0 and stats["count"] == 100


def test_steal_fraction_is_the_stolen_share_of_all_cpu_time() -> None:
    assert steal_fraction((1000, 500, 10), (2000, 900, 110)) == 0.1
    assert steal_fraction(None, (2000, 900, 110)) is None
    assert steal_fraction((2000, 900, 110), (2000, 900, 110)) is None  # no time passed
    now = cpu_times()
    assert now is None or (now[0] >= now[1] and now[0] >= now[2])


def test_exclusive_stages_add_up_to_the_total() -> None:
    nested = {
        "encode": 0.004,
        "onnx": 0.003,
        "tokenize": 0.0005,
        "retrieve": 0.002,
        "ann": 0.001,
        "bm25": 0.0005,
        "rerank": 0.001,
        "serialize": 0.0005,
        "filter": 0.0001,
    }
    stages = exclusive_stages(nested, total=0.010)
    assert stages["encode: other"] == pytest.approx(0.0005)
    assert stages["retrieve: fusion"] == pytest.approx(0.0005)
    assert sum(stages.values()) == pytest.approx(0.010)


def test_variant_titles_are_unique() -> None:
    titles = {variant_title("Desk lamp", v) for v in range(500)}
    assert len(titles) == 500
    assert variant_title("Desk lamp", 0) == "Desk lamp"


def test_synthesize_perturbs_real_vectors_and_keeps_rows_aligned() -> None:
    products = [BaseProduct("src", f"product {i}", "brand", "A > B", 10.0 + i) for i in range(7)]
    encoder = HashingEncoder(32)
    base = encoder.encode_documents([p.embedding_text() for p in products])
    catalog, vectors = synthesize(products, base, size=50, sigma=0.05, seed=3)
    assert len(catalog) == 50 and vectors.shape == (50, 32)
    assert len({p.id for p in catalog.products}) == 50
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[:7], base, atol=1e-6)  # variant 0 is the real vector
    cosines = np.sum(vectors[7:] * base[np.arange(7, 50) % 7], axis=1)
    assert np.all(cosines > 0.5) and np.all(cosines < 0.9999)
    documents = PrecomputedEncoder(encoder, [p.embedding_text() for p in catalog.products], vectors)
    assert documents.fingerprint == encoder.fingerprint
    assert np.array_equal(documents.encode_documents([catalog.products[9].embedding_text()])[0], vectors[9])


def test_targets_are_not_met_without_measurements() -> None:
    targets = evaluate_targets({"settings": {"size": 1_000_000}})
    assert len(targets) == 5 and all(t["met"] is None for t in targets)


def test_peer_target_needs_speed_and_recall() -> None:
    def run(aisle_recall: float, peer_p50: float, peer_recall: float) -> bool | None:
        result = {
            "settings": {"size": 1_000_000},
            "http": {
                "one_worker": {
                    "scenarios": {
                        "search": {
                            "runs": [
                                {
                                    "mode": "closed",
                                    "concurrency": 1,
                                    "errors": 0,
                                    "latency_ms": {"p50": 3.0, "p99": 8.0},
                                }
                            ]
                        }
                    }
                }
            },
            "peers": {
                "results": [
                    {"system": "aisle-candidates", "recall_at_10": aisle_recall},
                    {
                        "system": "chromadb",
                        "encoding": "native",
                        "latency_ms": {"p50": peer_p50},
                        "recall_at_10": peer_recall,
                    },
                    {"system": "txtai", "encoding": "native", "latency_ms": {"p50": 50.0}, "recall_at_10": 0.99},
                ]
            },
        }
        targets = evaluate_targets(result)
        assert targets[0]["met"] and targets[1]["met"]
        return targets[3]["met"]

    assert run(0.95, peer_p50=6.0, peer_recall=0.90) is True
    assert run(0.95, peer_p50=5.0, peer_recall=0.90) is False  # only 1.7x faster
    assert run(0.85, peer_p50=9.0, peer_recall=0.90) is False  # faster, but worse recall


def _real_encoder_or_skip() -> None:
    try:
        load_queries()
    except MissingDataError as exc:
        pytest.skip(f"shared evaluation data absent: {exc}")
    try:
        from aisle.embed import create_encoder, prepare_model  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the ONNX encoder (embed.create_encoder) is not available: {exc}")


@pytest.mark.slow
def test_tiny_run_writes_json_plots_and_summary(tmp_path: Path) -> None:
    _real_encoder_or_skip()
    from benchmarks.run import main

    peers = [
        name
        for name, module in (("txtai", "txtai"), ("chromadb", "chromadb"), ("qdrant", "qdrant_client"))
        if importlib.util.find_spec(module)
    ]
    out = tmp_path / "results"
    code = main(
        [
            "--size",
            "2000",
            "--base-limit",
            "300",
            "--query-limit",
            "30",
            "--threads",
            "1",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--name",
            "latency-smoke",
            "--concurrency",
            "1,2",
            "--rates",
            "20",
            "--requests-per-level",
            "25",
            "--seconds-per-level",
            "3",
            "--warmup",
            "2",
            "--peers",
            ",".join(peers) or "qdrant",
            "--peer-encodings",
            "aisle-onnx-int8",
            "--peer-seconds",
            "5",
        ]
    )
    assert code == 0
    result = json.loads((out / "latency-smoke.json").read_text())
    assert result["settings"]["size"] == 2000
    assert result["machine"]["cpu_model"] and result["machine"]["logical_cpus"] >= 1
    assert result["catalogue"]["recipe"]["size"] == 2000
    assert result["encoder"]["fingerprint"].split(":")[0]

    search = result["http"]["one_worker"]["scenarios"]["search"]
    closed = [run for run in search["runs"] if run["mode"] == "closed"]
    assert [run["concurrency"] for run in closed] == [1, 2]
    assert [run["rate_rps"] for run in search["runs"] if run["mode"] == "open"] == [20.0]
    for run in search["runs"]:
        assert run["errors"] == 0 and run["ok"] > 0
        assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p95"] <= run["latency_ms"]["p99"]
        assert run["server_cpu_ms_per_request"] >= 0
    assert search["probe_results"] == 10
    assert "runs" in result["http"]["two_workers"]["scenarios"]["search"]
    for name in ("search_user", "similar", "recommendations", "events"):
        scenario = result["http"]["one_worker"]["scenarios"][name]
        assert "runs" in scenario or scenario["skipped"]  # a missing endpoint says why

    stages = result["stages"]["stages_ms"]
    assert {"retrieve: ANN", "rerank", "serialize", "other"} <= set(stages)
    total = sum(stage["mean"] for stage in stages.values())
    assert total == pytest.approx(result["stages"]["total_ms"]["mean"], rel=0.05)
    assert set(result["stages"]["stages_cpu_ms"]) == set(stages)

    systems = {entry["system"]: entry for entry in result["peers"]["results"]}
    assert systems["aisle"]["recall_at_10"] > 0.5
    for name in peers:
        entry = systems[name]
        assert "error" not in entry, entry.get("error")
        assert 0.0 <= entry["recall_at_10"] <= 1.0 and entry["latency_ms"]["count"] > 0
        assert entry["cpu_ms"]["count"] == entry["latency_ms"]["count"]

    assert len(result["targets"]) == 5
    for plot in result["plots"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"latency-smoke-concurrency.png", "latency-smoke-peers.png", "latency-smoke-stages.png"} <= set(
        result["plots"]
    )
    summary = (out / "SUMMARY.md").read_text()
    assert "latency-smoke.json" in summary and result["machine"]["cpu_model"] in summary
    assert "| POST /search | 1 concurrent |" in summary


def test_base_products_cover_every_source() -> None:
    try:
        products = load_base_products(limit=40)
    except MissingDataError as exc:
        pytest.skip(f"shared evaluation data absent: {exc}")
    assert {p.source for p in products} == {"amazon_google", "amazon_scientific", "esci", "fashion"}
    assert len({p.embedding_text() for p in products}) == 40
    assert len(load_queries()) == 480


@pytest.mark.parametrize(
    ("steals", "cycle", "chosen", "disturbed"),
    [
        ([0.01], True, 0.01, []),  # quiet: run once
        ([0.12, 0.002], True, 0.002, [0.12]),  # disturbed, then quiet
        ([0.2, 0.09, 0.3], True, 0.09, [0.2, 0.3]),  # never quiet: the least disturbed of 1 + 2 retries
        ([0.2], False, 0.2, []),  # a level that consumes its plan (events) is never repeated
    ],
)
def test_a_level_disturbed_by_host_steal_is_run_again(
    monkeypatch: pytest.MonkeyPatch, steals: list[float], cycle: bool, chosen: float, disturbed: list[float]
) -> None:
    from benchmarks import http_bench

    remaining = list(steals)
    monkeypatch.setattr(
        http_bench,
        "run_loadgen",
        lambda *args, **kwargs: {
            "host_steal_fraction": remaining.pop(0),
            "throughput_rps": 1.0,
            "latency_ms": {"p50": 1.0},
        },
    )
    levels = http_bench.LoadLevels(max_steal=0.05, steal_retries=2)
    result = http_bench.run_level(None, Path("plan"), mode="closed", level=1, levels=levels, cycle=cycle, cpus=None)  # type: ignore[arg-type]
    assert result["host_steal_fraction"] == chosen and not remaining
    assert [attempt["host_steal_fraction"] for attempt in result.get("disturbed_attempts", [])] == disturbed


def test_qdrant_local_mode_is_skipped_with_its_reason_on_large_catalogues() -> None:
    assert peer_skip_reason("qdrant", 100_000, None) is None
    assert "out of memory" in peer_skip_reason("qdrant", 1_000_000, None)
    assert peer_skip_reason("txtai", 1_000_000, None) is None
    assert "--max-peer-items 5000" in peer_skip_reason("txtai", 10_000, 5000)
