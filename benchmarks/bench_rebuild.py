"""Rebuild benchmark: the nightly ``aisle build`` of a 10,000-product catalogue, end to end.

    python benchmarks/bench_rebuild.py --items 10000 --out benchmarks/results/rebuild.json

Runs the real command line (``python -m index.cli build``, bundled MiniLM, int8 ONNX) four
times on one index root, each on a catalogue written as a CSV file:

1. first build: every product encoded;
2. unchanged rebuild: the same file again;
3. nightly rebuild: every price and stock flag changed, no embedded field;
4. one title changed.

The products are real (Amazon-Google, Industrial & Scientific and ESCI rows, then colour/size
variants of them to reach the size). Each run's wall time (process start to exit, model load
included) and the build's own timings (from ``--json``) are recorded.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aisle.index.catalog import Product
from aisle.index.storage import atomic_write_json
from benchmarks import realdata

COLUMNS = ("id", "title", "description", "brand", "category", "price", "in_stock")


def write_catalogue(path: Path, products: list[Product]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for p in products:
            writer.writerow([p.id, p.title, p.description, p.brand, p.category, p.price, str(p.in_stock).lower()])
    return path


def run_build(catalogue: Path, root: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AISLE_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "AISLE_CACHE_DIR": str(realdata.cache_root()),
    }
    tick = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aisle",
            "build",
            "--catalog",
            str(catalogue),
            "--out",
            str(root),
            "--json",
            "--no-progress",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - tick
    if result.returncode != 0:
        raise SystemExit(f"aisle build failed:\n{result.stderr}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return {"wall_seconds": round(wall, 3), **summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rebuild.json")
    args = parser.parse_args(argv)
    data = realdata.shared_data_dir()
    if data is None:
        sys.exit("shared evaluation data not found (set AISLE_SHARED_DATA or put it at ../shared/data)")
    products = realdata.catalog_of_size(realdata.load_real_products(data), args.items)
    repriced = [dataclasses.replace(p, price=round((p.price or 0) * 1.1, 2), in_stock=not p.in_stock) for p in products]
    retitled = list(repriced)
    retitled[args.items // 2] = dataclasses.replace(
        retitled[args.items // 2], title=retitled[args.items // 2].title + " (new model)"
    )
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aisle-bench-rebuild-") as work:
        folder, root = Path(work), Path(work) / "index"
        steps = (
            ("first_build", products),
            ("unchanged_rebuild", products),
            ("prices_and_stock_changed", repriced),
            ("one_title_changed", retitled),
        )
        for name, catalogue in steps:
            runs[name] = run_build(write_catalogue(folder / f"{name}.csv", catalogue), root)
            print(f"{name}: {json.dumps(runs[name])}", flush=True)
    first = runs["first_build"]
    report = {
        "benchmark": "rebuild",
        "command": " ".join(["python", "benchmarks/bench_rebuild.py", *(argv or sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_end": os.getloadavg()},
        "items": args.items,
        "runs": runs,
        "ratios_to_first_build": {
            name: {
                "wall": round(run["wall_seconds"] / first["wall_seconds"], 4),
                "build": round(run["build_seconds"] / first["build_seconds"], 4),
            }
            for name, run in runs.items()
            if name != "first_build"
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
