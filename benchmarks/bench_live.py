"""The live catalogue at 100k and 1M items: write-to-visible, write throughput, search under writes,
delta memory and growth, and the cost of folding.

Per size, in one run:

1. The catalogue: real product vectors (``benchmarks.realdata``, the shared data's ~8k listings
   encoded by the real MiniLM) and perturbed copies of them, built by ``build_version`` with the
   index type Aisle picks for the size. Re-used between runs (``--work-dir``).
2. Over HTTP, a real ``aisle serve`` (one worker pinned to one core; the client on the other):
   ``/search`` p50/p99 without writes; upsert-to-visible (PUT of a new product with a unique
   word, then ``/search`` for that word until it is first; the time from sending the PUT);
   sustained PATCHes (price and stock) from concurrent clients for ``--patch-seconds``, with
   ``/search`` p50/p99 measured meanwhile.
3. In process (the same code the server runs): the delta's memory per product (new products,
   with vectors, and price-only patches), and ``Engine.search`` latency as the delta grows,
   with the time each step's snapshot took to build.
4. Folding: ``aisle compact`` (current version + change log → new version), timed.

Figures are measured on a shared, loaded machine: ratios within one run mean more than absolute
values; the load average is recorded beside each section.

    python -m benchmarks.bench_live --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from aisle.embed.base import Encoder, ForwardingEncoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.index.changes import CHANGES_FILE, Change
from aisle.index.live import Delta
from aisle.index.loaded import LoadedIndex
from aisle.index.storage import atomic_write_json
from aisle.index.versions import VersionStore
from benchmarks import realdata
from benchmarks.server import free_port, pinned_command

REPO = Path(__file__).resolve().parents[1]


class PrebuiltDocuments(ForwardingEncoder):
    """Hands a build its precomputed document vectors (all rows in one call), under the real model's name."""

    def __init__(self, inner: Encoder, vectors: np.ndarray) -> None:
        super().__init__(inner)
        self._vectors = vectors

    def encode_documents(self, texts, *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        if len(texts) == len(self._vectors):
            return self._vectors
        return super().encode_documents(texts, batch_size=batch_size, show_progress=show_progress)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2), "n": len(ordered)}


def prepare_index(size: int, work_dir: Path, encoder: Encoder, ef_construction: int) -> Path:
    """The published catalogue of ``size`` items under ``work_dir`` (built once, then re-used)."""
    root = work_dir / f"live-index-{size}"
    marker = root / "bench-live.json"
    recipe = {"size": size, "ef_construction": ef_construction}
    if (root / ".build.lock").is_file():  # another run is building it: wait for that build
        import fcntl

        with (root / ".build.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
        for _ in range(60):
            if marker.is_file():
                break
            time.sleep(1)
    if marker.is_file() and {k: json.loads(marker.read_text()).get(k) for k in recipe} == recipe:
        return root
    shutil.rmtree(root, ignore_errors=True)
    data = realdata.shared_data_dir()
    if data is None:
        sys.exit("shared evaluation data not found (set AISLE_SHARED_DATA)")
    real = realdata.load_real_products(data)
    documents = realdata.encode_cached(encoder, [p.text for p in real], realdata.vector_cache_dir())
    vectors, sources = realdata.perturbed_with_sources(documents, size, 0.7, seed=size)
    products = realdata.products_for_rows(real, sources)
    started = time.perf_counter()
    report = build_version(
        Catalog(products),
        root,
        PrebuiltDocuments(encoder, vectors),
        BuildOptions(show_progress=False, reuse_vectors=False, keep_versions=2, ef_construction=ef_construction),
    )
    atomic_write_json(marker, {**recipe, "version": report.version, "build_seconds": time.perf_counter() - started})
    return root


def reset_log(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"{CHANGES_FILE}{suffix}").unlink(missing_ok=True)


class Server:
    def __init__(self, root: Path, work_dir: Path, cpus: set[int] | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({"AISLE_LOG_LEVEL": "WARNING", "AISLE_WATCH_INTERVAL_S": "0", "OMP_NUM_THREADS": "1"})
        data = work_dir / f"live-data-{self.port}"
        command = [sys.executable, "-m", "aisle", "serve", "--index", str(root), "--data-dir", str(data)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.log = (work_dir / f"live-serve-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            pinned_command(command, cpus), stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def search_latencies(client: httpx.Client, queries: list[str], count: int, stop: threading.Event | None = None):
    times = []
    for n in range(count):
        if stop is not None and stop.is_set():
            break
        tick = time.perf_counter()
        response = client.post("/search", json={"query": queries[n % len(queries)], "k": 10})
        response.raise_for_status()
        times.append(time.perf_counter() - tick)
    return times


def http_section(root: Path, work_dir: Path, args: argparse.Namespace, ids: list[str], queries: list[str]) -> dict:
    usable = sorted(os.sched_getaffinity(0))
    server_cpus = {usable[0]}
    if len(usable) > 1:
        os.sched_setaffinity(0, {usable[1]})
    reset_log(root)
    server = Server(root, work_dir, server_cpus)
    out: dict[str, Any] = {"server_cpus": sorted(server_cpus), "rss_mib_at_start": round(server.rss_mib(), 1)}
    rng = np.random.default_rng(0)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            search_latencies(client, queries, 50)  # warm-up
            cpu_before = _cpu_seconds(server.process.pid)
            plain = search_latencies(client, queries, args.searches)
            out["search_without_writes"] = percentiles(plain)
            out["search_without_writes"]["server_cpu_ms_per_search"] = round(
                (_cpu_seconds(server.process.pid) - cpu_before) / len(plain) * 1000, 2
            )
            out["search_without_writes"]["load_average"] = os.getloadavg()

            acked, visible, visible_on_ack = [], [], 0
            for n in range(args.upserts):
                word = f"zqlive{n}x"
                tick = time.perf_counter()
                response = client.put(
                    f"/items/bench-new-{n}", json={"title": f"{word} walnut desk organiser", "price": 20}
                )
                response.raise_for_status()
                acked.append(time.perf_counter() - tick)
                visible_on_ack += bool(response.json()["visible"])
                while True:
                    results = client.post("/search", json={"query": word, "k": 1}).json()["results"]
                    if results and results[0]["id"] == f"bench-new-{n}":
                        break
                visible.append(time.perf_counter() - tick)
            out["upsert_acknowledged"] = percentiles(acked)
            out["upsert_to_visible"] = percentiles(visible)
            out["upsert_to_visible"]["note"] = "from sending the PUT until a /search for its word ranks it first"
            out["upserts_visible_when_acknowledged"] = visible_on_ack

            stop = threading.Event()
            counts = []

            def patcher(seed: int) -> None:
                local = np.random.default_rng(seed)
                done = 0
                with httpx.Client(base_url=server.url, timeout=30) as writer:
                    while not stop.is_set():
                        item = ids[int(local.integers(len(ids)))]
                        body = {"price": float(local.integers(1, 500)), "in_stock": bool(local.integers(2))}
                        writer.patch(f"/items/{item}", json=body).raise_for_status()
                        done += 1
                counts.append(done)

            threads = [threading.Thread(target=patcher, args=(seed,)) for seed in range(args.patch_clients)]
            cpu_before = _cpu_seconds(server.process.pid)
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # ramp up
            during = search_latencies(client, queries, 10**9, _deadline_event(args.patch_seconds))
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(server.process.pid) - cpu_before
            out["sustained_patches"] = {
                "clients": args.patch_clients,
                "seconds": round(elapsed, 2),
                "patches": sum(counts),
                "patches_per_second": round(sum(counts) / elapsed, 1),
                "server_cpu_share": round(cpu / elapsed, 3),
                # The machine is shared: throughput per CPU-second the server actually got.
                "patches_per_server_cpu_second": round(sum(counts) / cpu, 1) if cpu else None,
                "load_average": os.getloadavg(),
            }
            out["search_during_patches"] = percentiles(during)
            out["rss_mib_after_writes"] = round(server.rss_mib(), 1)
    finally:
        server.stop()
    _ = rng
    return out


def _deadline_event(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def delta_section(root: Path, encoder: Encoder, args: argparse.Namespace, queries: list[str]) -> dict:
    """Memory per delta product and search latency as the delta grows (in process)."""
    from aisle.service.engine import Engine

    base = LoadedIndex.load(VersionStore(root).current_path(), verify_checksums=False)
    ids = base.items.ids
    dim = base.text.vectors.shape[1]
    rng = np.random.default_rng(1)
    delta = Delta(base, lambda texts: encoder.encode_documents(texts))
    query_sample = queries[: args.delta_queries]

    def search_p50(snapshot) -> dict:
        engine = Engine(snapshot, encoder)
        for query in query_sample[:10]:
            engine.search(query, 10)
        times, cpu = [], []
        for query in query_sample:
            tick, cpu_tick = time.perf_counter(), time.thread_time()
            engine.search(query, 10)
            times.append(time.perf_counter() - tick)
            cpu.append(time.thread_time() - cpu_tick)
        # CPU time is what the search costs; wall time on a shared machine mostly measures the wait.
        return {**percentiles(times), "cpu": percentiles(cpu)}

    out: dict[str, Any] = {"steps": []}
    out["steps"].append({"delta_products": 0, **search_p50(delta.snapshot)})
    seq = 0
    total_new = 0
    for target in args.delta_sizes:
        adding = target - total_new
        changes = []
        for n in range(adding):
            seq += 1
            product = Product(id=f"delta-{total_new + n}", title=f"delta product {total_new + n}", price=10.0)
            vector = rng.standard_normal(dim).astype(np.float32)
            vector /= np.linalg.norm(vector)
            changes.append(
                Change(
                    "upsert",
                    product.id,
                    product=product,
                    content_hash=product.content_hash(),
                    vector=vector,
                    model=base.text.fingerprint,
                    seq=seq,
                )
            )
        tick, cpu_tick = time.perf_counter(), time.thread_time()
        snapshot = delta.apply(changes)
        apply_seconds, apply_cpu = time.perf_counter() - tick, time.thread_time() - cpu_tick
        total_new = target
        out["steps"].append(
            {
                "delta_products": target,
                "apply_seconds": round(apply_seconds, 3),
                "apply_cpu_seconds": round(apply_cpu, 3),
                **search_p50(snapshot),
                "load_average": os.getloadavg(),
            }
        )
    # A batch of price-only patches (no vector): the copy-on-write cost per batch.
    patches = [
        Change("patch", ids[int(rng.integers(len(ids)))], fields={"price": 1.0 + n}, seq=seq + 1 + n)
        for n in range(1000)
    ]
    tick = time.thread_time()
    delta.apply(patches)
    out["price_patch_batch_of_1000_apply_cpu_seconds"] = round(time.thread_time() - tick, 4)
    single = [Change("patch", ids[0], fields={"price": 3.0}, seq=seq + 2000)]
    tick = time.thread_time()
    delta.apply(single)
    out["single_patch_apply_cpu_seconds"] = round(time.thread_time() - tick, 4)
    return out


def _memory_section(root: Path, encoder: Encoder, count: int) -> dict:
    base = LoadedIndex.load(VersionStore(root).current_path(), verify_checksums=False)
    return _memory_per_item(base, encoder, base.text.vectors.shape[1], count)


def _memory_per_item(base: LoadedIndex, encoder: Encoder, dim: int, count: int) -> dict:
    """Memory a delta keeps per product: traced allocations still alive after applying ``count``
    changes (the changes themselves dropped), between a tenth of them and all of them."""
    import gc

    results = {}
    for kind in ("new_product_with_vector", "price_patch"):
        delta = Delta(base, lambda texts: encoder.encode_documents(texts))
        delta.apply([])
        rng = np.random.default_rng(2)
        tracemalloc.start()
        kept = []
        for start, stop in [(0, count // 10), (count // 10, count)]:
            changes = []
            for n in range(start, stop):
                if kind == "price_patch":
                    changes.append(Change("patch", base.items.ids[n], fields={"price": 2.0}, seq=n + 1))
                    continue
                product = Product(id=f"mem-{n}", title=f"memory probe product {n}", price=10.0)
                vector = rng.standard_normal(dim).astype(np.float32)
                changes.append(
                    Change(
                        "upsert",
                        product.id,
                        product=product,
                        content_hash=product.content_hash(),
                        vector=vector / np.linalg.norm(vector),
                        model=base.text.fingerprint,
                        seq=n + 1,
                    )
                )
            delta.apply(changes)
            del changes
            gc.collect()
            kept.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        per_item = (kept[1] - kept[0]) / (count - count // 10)
        results[kind] = {
            "bytes_per_item": round(per_item),
            "bytes_besides_items": round(kept[0] - per_item * (count // 10)),
            "items": count,
        }
        del delta
    return results


def fold_section(root: Path, work_dir: Path, encoder: Encoder, changes: int, timeout_s: float) -> dict:
    """``aisle compact`` after ``changes`` logged changes (new products, with vectors, and patches)."""
    from aisle.index.changes import ChangeLog, Existence

    reset_log(root)
    base = LoadedIndex.load(VersionStore(root).current_path(), verify_checksums=False)
    log = ChangeLog(root / CHANGES_FILE)
    log.start()
    rng = np.random.default_rng(3)
    batch = []
    for n in range(changes):
        if n % 2:
            batch.append(Change("patch", base.items.ids[n], fields={"price": 5.0}))
        else:
            product = Product(id=f"fold-{n}", title=f"fold probe {n}")
            vector = rng.standard_normal(base.text.vectors.shape[1]).astype(np.float32)
            batch.append(
                Change(
                    "upsert",
                    product.id,
                    product=product,
                    content_hash=product.content_hash(),
                    vector=vector / np.linalg.norm(vector),
                    model=base.text.fingerprint,
                )
            )
    log.submit(batch, Existence(0, base.items.row_of.__contains__))
    log.close()
    del base
    env = dict(os.environ, AISLE_LOG_LEVEL="WARNING")
    tick = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "aisle", "compact", "--index", str(root), "--no-progress"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
        output = result.stdout.strip() or result.stderr.strip()[-500:]
    except subprocess.TimeoutExpired:
        output = f"not finished within {timeout_s:.0f} s (stopped)"
    seconds = time.perf_counter() - tick
    reset_log(root)
    # Back to the benchmark's own version for the next run.
    versions = sorted(p.name for p in (root / "versions").iterdir())
    VersionStore(root).rollback(versions[0])
    return {
        "changes": changes,
        "seconds": round(seconds, 1),
        "output": output,
        "load_average": os.getloadavg(),
    }


def _guarded(section, *args: Any) -> dict:
    """One section's result, or its error: the other sections are still worth reporting."""
    try:
        return section(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "aisle-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "live.json")
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--upserts", type=int, default=100)
    parser.add_argument("--patch-clients", type=int, default=4)
    parser.add_argument("--patch-seconds", type=float, default=20.0)
    parser.add_argument("--delta-sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--delta-queries", type=int, default=150)
    parser.add_argument("--memory-items", type=int, default=20_000)
    parser.add_argument("--fold-changes", type=int, default=10_000)
    parser.add_argument("--fold-timeout", type=float, default=1500.0, help="seconds before aisle compact is stopped")
    parser.add_argument("--skip", nargs="*", default=[], choices=["http", "delta", "memory", "fold"])
    parser.add_argument(
        "--large-ef-construction",
        type=int,
        default=40,
        help="HNSW build beam above 200k items (the default 200 takes many CPU minutes at 1M on a shared machine)",
    )
    args = parser.parse_args(argv)

    encoder = realdata.real_encoder()
    if encoder is None:
        sys.exit("the real encoder is not available")
    data = realdata.shared_data_dir()
    queries = realdata.load_wands_queries(data) if data else ["desk"]
    report: dict[str, Any] = {
        "benchmark": "live",
        "command": " ".join(["python -m benchmarks.bench_live", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "sizes": {},
    }
    for size in args.sizes:
        tick = time.perf_counter()
        ef_construction = args.large_ef_construction if size > 200_000 else BuildOptions.ef_construction
        root = prepare_index(size, args.work_dir, encoder, ef_construction)
        entry: dict[str, Any] = {"prepare_seconds": round(time.perf_counter() - tick, 1)}
        manifest = json.loads((VersionStore(root).current_path() / "manifest.json").read_text())
        entry["index"] = manifest["spaces"]["text"]["index"]
        report["sizes"][str(size)] = entry
        if "http" not in args.skip:
            base = LoadedIndex.load(VersionStore(root).current_path(), verify_checksums=False)
            ids = [base.items.ids[int(r)] for r in np.random.default_rng(4).integers(len(base), size=5000)]
            del base
            entry["http"] = _guarded(http_section, root, args.work_dir, args, ids, queries)
            atomic_write_json(args.out, report)
        if "delta" not in args.skip:
            entry["delta"] = _guarded(delta_section, root, encoder, args, queries)
            atomic_write_json(args.out, report)
        if "memory" not in args.skip:
            entry["memory"] = _guarded(_memory_section, root, encoder, args.memory_items)
            atomic_write_json(args.out, report)
        if "fold" not in args.skip:
            entry["fold"] = _guarded(fold_section, root, args.work_dir, encoder, args.fold_changes, args.fold_timeout)
        entry["max_rss_mib_of_benchmark_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        report["machine"]["load_average_now"] = os.getloadavg()
        atomic_write_json(args.out, report)
        print(json.dumps({size: entry}, indent=1), flush=True)
    print(f"wrote {args.out}")
    _ = statistics
    return 0


if __name__ == "__main__":
    sys.exit(main())
