"""Index swaps under load on a real server: ≥ 10 swaps, 0 failed requests, one version per response.

Two catalogues of real product listings (Amazon-Google fixture) share their ids but not their
products; every title carries its catalogue's marker. Client threads send searches and
similar-item requests without pause while the test publishes a new version of the other
catalogue again and again (built in-process with the same real encoder), swapping it in with
``POST /admin/reload`` or leaving the server's ``current`` watcher to find it. Old versions
are pruned from disk as in production (``keep_versions=3``) while requests may still use them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from tests.system.catalogues import PRODUCTS_PER_CATALOGUE, load_queries, write_catalogues
from tests.system.server import ServerProcess, request_json

SWAPS = 12
CLIENT_THREADS = 3


class LoadClients:
    """Threads sending requests without pause and recording every outcome."""

    def __init__(self, url: str, queries: list[str], versions: dict[str, str]) -> None:
        self.url = url
        self.queries = queries
        self.versions = versions  # version → catalogue marker, filled after each publication
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.answers: list[tuple[str, str, frozenset[str]]] = []
        self.served = Counter()
        self._lock = threading.Lock()

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.stop.is_set():
                if rng.random() < 0.5:
                    request = ("POST", "/search", {"json": {"query": rng.choice(self.queries), "k": 10}})
                else:
                    item = f"p-{rng.randrange(PRODUCTS_PER_CATALOGUE)}"
                    request = ("GET", f"/items/{item}/similar", {"params": {"k": 10}})
                try:
                    response = client.request(request[0], request[1], **request[2])
                except httpx.HTTPError as exc:
                    self._record(f"{request[1]}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self._record(f"{request[1]}: {response.status_code} {response.text[:300]}")
                    continue
                self._check(request[1], response.json())

    def _record(self, failure: str | None) -> None:
        with self._lock:
            self.sent += 1
            if failure:
                self.failures.append(failure)

    def _check(self, path: str, body: dict) -> None:
        version = body["index_version"]
        markers = frozenset(result["title"].rsplit("[", 1)[-1].rstrip("]") for result in body["results"])
        with self._lock:
            self.served[version] += 1
            # Checked after the run: the watcher may serve a version before the test has
            # written down which catalogue it was built from.
            self.answers.append((path, version, markers))
        self._record(None)

    def mixed_answers(self) -> list[str]:
        """Answers whose results come from another version than the one they name. An answer
        with no result (nothing in that version matched the query) carries no marker to check."""
        return [
            f"{path} from {version} (catalogue {self.versions.get(version)}): result markers {set(markers)}"
            for path, version, markers in self.answers
            if markers and markers != {self.versions.get(version)}
        ]

    def answers_with_results(self) -> int:
        return sum(1 for _, _, markers in self.answers if markers)


def test_swaps_under_load_fail_no_request(tmp_path: Path, real_encoder, shared_data: Path) -> None:
    catalogues = {m: load_catalog(p) for m, p in write_catalogues(shared_data, tmp_path).items()}
    index_dir = tmp_path / "index"
    options = BuildOptions(show_progress=False, keep_versions=3)
    versions = {build_version(catalogues["a"], index_dir, real_encoder, options).version: "a"}
    clients = LoadClients("", load_queries(shared_data), versions)
    server = ServerProcess(index_dir, tmp_path / "data", tmp_path / "server.log", watch_interval_s=0.3)
    threads: list[threading.Thread] = []
    swaps_by = Counter()
    started = time.monotonic()
    try:
        server.start()
        clients.url = server.url
        threads = [threading.Thread(target=clients.run, args=(seed,)) for seed in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        for number in range(SWAPS):
            marker = "b" if number % 2 == 0 else "a"
            time.sleep(0.3)  # let the clients work on the current version for a while
            report = build_version(catalogues[marker], index_dir, real_encoder, options)
            versions[report.version] = marker
            if number % 3 == 2:  # every third publication is left to the watcher
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if request_json("GET", f"{server.url}/health")[1]["index_version"] == report.version:
                        break
                    time.sleep(0.05)
                swaps_by["watcher"] += 1
            else:
                status, body = request_json("POST", f"{server.url}/admin/reload", timeout=30)
                assert status == 200, body
                swaps_by["reload" if body["swapped"] else "watcher (raced the reload)"] += 1
            assert request_json("GET", f"{server.url}/health")[1]["index_version"] == report.version
        time.sleep(0.3)
    finally:
        clients.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.kill()
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "swaps": SWAPS,
                "swapped_by": swaps_by,
                "requests": clients.sent,
                "failed": len(clients.failures),
                "mixed_or_unknown_version": len(clients.mixed_answers()),
                "versions_served": len(clients.served),
                "seconds": round(seconds, 1),
                "requests_per_second": round(clients.sent / seconds, 1),
            }
        )
    )
    assert clients.failures == [], clients.failures[:10]
    assert clients.mixed_answers() == [], clients.mixed_answers()[:10]
    # Queries are another shop's titles, so some match nothing in a 40-product catalogue; enough
    # must match for the check above to mean something.
    assert clients.answers_with_results() >= len(clients.answers) // 4, clients.answers_with_results()
    assert set(clients.served) <= set(versions)
    assert len(clients.served) >= SWAPS  # requests were answered by (nearly) every version
    assert clients.sent > 20 * SWAPS
