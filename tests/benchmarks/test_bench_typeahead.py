"""The typeahead benchmark's pure parts: typed prefixes, the Zipf stream, typos, the code export."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.bench_typeahead import export_revision, typed_prefixes, with_typo, zipf_stream


def test_prefixes_follow_the_keystrokes_of_each_query() -> None:
    assert typed_prefixes(["sofa", "bed"], 10) == ["so", "sof", "sofa", "be", "bed"]
    assert typed_prefixes(["sofa", "bed"], 2) == ["so", "sof"]


def test_zipf_stream_repeats_popular_queries_and_is_reproducible() -> None:
    queries = [f"q{n}" for n in range(100)]
    stream = zipf_stream(queries, 5000)
    assert stream == zipf_stream(queries, 5000) and set(stream) <= set(queries)
    counts = sorted(Counter(stream).values(), reverse=True)
    assert counts[0] > 10 * counts[len(counts) // 2]


def test_one_typo_in_the_longest_long_word() -> None:
    assert with_typo("grey velvet armchair") == "grey velvet armhcair"
    assert with_typo("tv 55") == "tv 55"


def test_exported_revision_imports_its_own_code(tmp_path: Path) -> None:
    package_root = export_revision("HEAD", tmp_path)
    code = "import aisle.index.lexical as m, importlib.metadata as md; print(m.__file__); print(md.version('aisle-search'))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(package_root)},
        cwd=package_root,  # as benchmarks.server runs it: this checkout's own metadata stays out of sight
        capture_output=True,
        text=True,
        check=True,
    )
    module_path, version = done.stdout.split()
    assert module_path.startswith(str(package_root)) and version == "0.0.0"
