"""The README's path, end to end: `aisle build` on the demo catalogue, then `aisle serve`.

The server runs with torch, transformers and sentence-transformers made unimportable, which
proves the serving process never needs them; any attempt to import one is recorded and fails
the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.server import (
    ServerProcess,
    get_json,
    request_json,
    server_environment,
)

# sitecustomize.py for the server: the export stack behaves as if it were not installed, and
# every attempt to import it is written down.
_BLOCKER = """
import importlib.abc, os, sys

class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "sentence_transformers"}:
            with open(os.environ["AISLE_TEST_IMPORT_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"No module named {name!r} (blocked: serving must not need it)")
        return None

sys.meta_path.insert(0, _Blocker())
"""


def test_build_serve_search_without_torch(demo_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    import_log = tmp_path / "imports.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("AISLE_TEST_IMPORT_LOG", str(import_log))
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=server_environment(), capture_output=True, text=True, timeout=120
    )
    assert probe.returncode != 0 and "blocked" in probe.stderr, "the import blocker is not active"
    import_log.unlink()

    with ServerProcess(demo_index, tmp_path / "data", tmp_path / "server.log") as server:
        status, health = get_json(f"{server.url}/health")
        assert status == 200 and health["status"] == "ok" and health["items"] == 382

        status, found = request_json(
            "POST",
            f"{server.url}/search",
            {
                "query": "espresso machine",
                "k": 5,
                "filters": {"category": "Home > Kitchen", "in_stock": True},
            },
        )
        assert status == 200, found
        assert len(found["results"]) == 5
        assert all(r["category"].startswith("Home > Kitchen") and r["in_stock"] for r in found["results"])
        assert "Espresso" in found["results"][0]["title"], found["results"][0]

        # A model number only the lexical side knows exactly.
        status, sku = get_json(f"{server.url}/search?q=BX-220&k=3")
        assert status == 200 and sku["results"][0]["id"] == "KIT-0001", sku

        status, similar = get_json(f"{server.url}/items/KIT-0001/similar?k=5")
        assert status == 200 and "KIT-0001" not in [r["id"] for r in similar["results"]]

        status, accepted = request_json(
            "POST",
            f"{server.url}/events",
            {
                "events": [
                    {"event_id": "e2e-1", "user_id": "shopper", "item_id": "KIT-0003", "type": "purchase"},
                ]
            },
        )
        assert status == 200 and accepted["accepted"] == 1, accepted
        status, recs = get_json(f"{server.url}/users/shopper/recommendations?k=5")
        assert status == 200 and len(recs["results"]) == 5

    blocked = import_log.read_text() if import_log.exists() else ""
    assert blocked == "", f"the serving process tried to import: {blocked.split()}"
