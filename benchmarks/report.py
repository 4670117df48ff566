"""Plots (PNG, matplotlib) and ``SUMMARY.md`` from the JSON results of ``benchmarks.run``.

``SUMMARY.md`` covers every ``latency-*.json`` in the results directory, smallest catalogue
first, so that the 100k and the 1M runs sit side by side.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_bytes

RESULT_GLOB = "latency-*.json"
SCENARIO_LABELS = {
    "search": "POST /search",
    "search_user": "POST /search (with user_id)",
    "similar": "GET /items/{id}/similar",
    "recommendations": "GET /users/{id}/recommendations",
    "events": "POST /events (1 event)",
}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _save(figure: Any, path: Path) -> None:
    """Writes a figure as PNG atomically (a reader never sees half a file)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def plot_concurrency(result: dict[str, Any], path: Path) -> bool:
    """p50 and p99 by concurrency per scenario (one worker), and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suite = result.get("http", {}).get("one_worker") or {}
    scenarios = {name: s for name, s in suite.get("scenarios", {}).items() if "runs" in s}
    if not scenarios:
        return False
    figure, (latency_axis, throughput_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, scenario in scenarios.items():
        closed = [r for r in scenario["runs"] if r["mode"] == "closed"]
        levels = [r["concurrency"] for r in closed]
        line = latency_axis.plot(
            levels, [r["latency_ms"]["p50"] for r in closed], marker="o", label=f"{SCENARIO_LABELS.get(name, name)} p50"
        )[0]
        latency_axis.plot(
            levels,
            [r["latency_ms"]["p99"] for r in closed],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{SCENARIO_LABELS.get(name, name)} p99",
        )
        throughput_axis.plot(
            levels,
            [r["throughput_rps"] for r in closed],
            marker="o",
            color=line.get_color(),
            label=SCENARIO_LABELS.get(name, name),
        )
    for axis in (latency_axis, throughput_axis):
        axis.set_xscale("log", base=2)
        axis.set_xticks(suite["levels"]["concurrency"], [str(c) for c in suite["levels"]["concurrency"]])
        axis.set_xlabel("concurrent clients (closed loop)")
        axis.grid(alpha=0.3)
    latency_axis.set_yscale("log")
    latency_axis.set_ylabel("latency (ms)")
    throughput_axis.set_ylabel("throughput (requests/s)")
    latency_axis.legend(fontsize=6, ncol=2)
    throughput_axis.legend(fontsize=7)
    figure.suptitle(f"Aisle over HTTP, {result['settings']['size']:,} items, one worker on one core")
    figure.tight_layout()
    _save(figure, path)
    return True


def plot_peers(result: dict[str, Any], path: Path) -> bool:
    """Query latency (p50, p99; encoding included) and recall@10 of Aisle and each peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison_rows(result)
    rows = [r for r in rows if r.get("p50") is not None]
    if not rows:
        return False
    figure, axis = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.5))
    labels = [r["label"] for r in rows]
    positions = range(len(rows))
    axis.barh([p + 0.2 for p in positions], [r["p50"] for r in rows], height=0.4, label="p50")
    axis.barh([p - 0.2 for p in positions], [r["p99"] for r in rows], height=0.4, label="p99", alpha=0.6)
    for position, row in zip(positions, rows):
        axis.text(row["p99"] * 1.05, position, f"recall@10 {_fmt(row['recall'], 3)}", va="center", fontsize=7)
    axis.set_yticks(list(positions), labels, fontsize=7)
    axis.set_xscale("log")
    axis.set_xlim(right=max(row["p99"] for row in rows) * 6)  # room for the recall labels
    axis.set_xlabel("query latency, encoding included (ms, log scale)")
    axis.invert_yaxis()
    axis.legend(loc="upper right")
    axis.grid(alpha=0.3, axis="x")
    axis.set_title(
        f"{result['settings']['size']:,} items, same vectors and queries, {result['settings']['threads']} thread(s)"
    )
    figure.tight_layout()
    _save(figure, path)
    return True


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system: Aisle over HTTP, Aisle in-process, then each peer configuration."""
    rows: list[dict[str, Any]] = []
    peers = result.get("peers") or {}
    aisle_recall = next((r.get("recall_at_10") for r in peers.get("results", []) if r.get("system") == "aisle"), None)
    http = result.get("http", {}).get("one_worker", {}).get("scenarios", {}).get("search", {})
    first = next((r for r in http.get("runs", []) if r["mode"] == "closed" and r["concurrency"] == 1), None)
    if first:
        rows.append(
            {
                "label": "Aisle /search over HTTP (hybrid + rerank)",
                "p50": first["latency_ms"]["p50"],
                "p95": first["latency_ms"]["p95"],
                "p99": first["latency_ms"]["p99"],
                "cpu_p50": first.get("server_cpu_ms_per_request"),
                "recall": aisle_recall,
                "note": "ANN recall; BM25 fusion and reranking on top; CPU = server CPU per request (mean)",
            }
        )
    for entry in peers.get("results", []):
        if "latency_ms" not in entry:
            rows.append(
                {
                    "label": f"{entry['system']} ({entry.get('encoding')})",
                    "p50": None,
                    "p95": None,
                    "p99": None,
                    "recall": None,
                    "note": entry.get("skipped") or entry.get("error", ""),
                }
            )
            continue
        if entry["system"] == "aisle":
            label = "Aisle in-process: encoder + ANN top 10"
        elif entry["system"] == "aisle-candidates":
            label = f"Aisle in-process: encoder + ANN top {entry['index']['searched_k']}, best 10"
        else:
            label = f"{entry['system']} ({entry['encoding']})"
        rows.append(
            {
                "label": label,
                "p50": entry["latency_ms"]["p50"],
                "p95": entry["latency_ms"]["p95"],
                "p99": entry["latency_ms"]["p99"],
                "cpu_p50": entry.get("cpu_ms", {}).get("p50"),
                "recall": entry.get("recall_at_10"),
                "note": entry.get("index") if isinstance(entry.get("index"), str) else json.dumps(entry.get("index")),
            }
        )
    return rows


def plot_stages(result: dict[str, Any], path: Path) -> bool:
    """Where the time of one in-process /search goes (mean per stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = result.get("stages") or {}
    stages, cpu = section.get("stages_ms"), section.get("stages_cpu_ms") or {}
    if not stages:
        return False
    names = list(stages)
    bars = [("wall", [stages[n]["mean"] for n in names])]
    if cpu:
        bars.append(("CPU", [cpu.get(n, {}).get("mean", 0.0) for n in names]))
    figure, axis = plt.subplots(figsize=(10, 1.6 + 0.6 * len(bars)))
    colours = plt.get_cmap("tab10").colors
    for position, (_, means) in enumerate(bars):
        left = 0.0
        for index, (name, mean) in enumerate(zip(names, means)):
            axis.barh(
                [position],
                [mean],
                left=left,
                color=colours[index % len(colours)],
                label=f"{name} ({mean:.2f} ms CPU)" if position == len(bars) - 1 else None,
            )
            left += mean
    axis.set_yticks(range(len(bars)), [label for label, _ in bars])
    axis.invert_yaxis()
    axis.set_xlabel("mean time per query (ms); CPU time is what an idle core would spend")
    axis.legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6))
    axis.set_title(f"In-process /search by stage, {result['settings']['size']:,} items")
    figure.tight_layout()
    _save(figure, path)
    return True


def write_plots(result: dict[str, Any], out_dir: Path, name: str) -> list[str]:
    """Writes every plot this result has data for; returns the file names."""
    written = []
    for suffix, plot in (("concurrency", plot_concurrency), ("peers", plot_peers), ("stages", plot_stages)):
        path = out_dir / f"{name}-{suffix}.png"
        if plot(result, path):
            written.append(path.name)
    return written
