"""``SUMMARY.md``: the machine, the targets, and every table of the latest results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_bytes
from benchmarks.report import RESULT_GLOB, SCENARIO_LABELS, _fmt, comparison_rows


def _percent(fraction: float | None) -> str:
    return "–" if fraction is None else f"{fraction * 100:.0f} %"


def _steal_cell(run: dict[str, Any]) -> str:
    """The level's stolen CPU share, and those of the attempts it replaced (``http_bench.run_level``)."""
    disturbed = [_percent(attempt.get("host_steal_fraction")) for attempt in run.get("disturbed_attempts", [])]
    cell = _percent(run.get("host_steal_fraction"))
    return f"{cell} (repeated after {', '.join(disturbed)})" if disturbed else cell


def _machine_lines(machine: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in sorted(machine.get("packages", {}).items()))
    return [
        (
            f"- CPU: {machine.get('cpu_model')} ({machine.get('logical_cpus')} logical CPUs, "
            f"{machine.get('usable_cpus')} usable; SIMD: {', '.join(machine.get('cpu_flags') or []) or 'n/a'}), "
            f"{machine.get('memory_gib')} GiB RAM, Linux {machine.get('kernel')}, Python {machine.get('python')}"
        ),
        (
            f"- Threads: encoder/OMP threads per process = {settings.get('threads')}; one-worker server "
            f"pinned to CPU(s) {settings.get('server_cpus')}, load generator pinned to CPU(s) "
            f"{settings.get('client_cpus')}; in-process measurements pinned to {settings.get('inprocess_cpus')}"
        ),
        f"- Software: {packages}",
        f"- Aisle revision: {machine.get('aisle_revision')}",
    ]


def _http_table(suite: dict[str, Any], title: str) -> list[str]:
    if not suite:
        return []
    if "error" in suite:
        return [f"**{title}**: not measured: {suite['error']}", ""]
    command = " ".join(
        "python" if part.endswith(("/python", "/python3")) else part for part in suite.get("server_command", [])
    )
    lines = [
        (
            f"**{title}** (`{command}`, "
            f"startup {_fmt(suite.get('server_startup_s'))} s, RSS {_fmt(suite.get('server_rss_mib'), 0)} MiB)"
        ),
        "",
        ("| endpoint | load | p50 ms | p95 ms | p99 ms | throughput req/s | errors | server CPU ms/req | host steal |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, scenario in suite.get("scenarios", {}).items():
        label = SCENARIO_LABELS.get(name, name)
        if "skipped" in scenario:
            lines.append(f"| {label} | – | – | – | – | – | skipped: {scenario['skipped'][:120]} | – | – |")
            continue
        for run in scenario["runs"]:
            load = (
                f"{run['concurrency']} concurrent" if run["mode"] == "closed" else f"open loop {run['rate_rps']:.0f}/s"
            )
            latency = run["latency_ms"]
            lines.append(
                f"| {label} | {load} | {_fmt(latency['p50'])} | {_fmt(latency['p95'])} | "
                f"{_fmt(latency['p99'])} | {_fmt(run['throughput_rps'], 0)} | {run['errors']} | "
                f"{_fmt(run.get('server_cpu_ms_per_request'))} | {_steal_cell(run)} |"
            )
    return lines + [""]


def _stage_table(stages: dict[str, Any]) -> list[str]:
    if not stages or "stages_ms" not in stages:
        return [f"In-process stages: not measured ({(stages or {}).get('error', 'no data')})", ""]
    lines = [
        "| stage | wall mean ms | wall p50 ms | wall p99 ms | CPU mean ms | CPU share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cpu = stages.get("stages_cpu_ms", {})
    total_cpu = sum(s.get("mean", 0.0) for s in cpu.values()) or 1.0
    for name, stats in stages["stages_ms"].items():
        cpu_mean = cpu.get(name, {}).get("mean")
        share = f"{cpu_mean / total_cpu:.0%}" if cpu_mean is not None else "–"
        lines.append(
            f"| {name} | {_fmt(stats['mean'], 3)} | {_fmt(stats['p50'], 3)} | {_fmt(stats['p99'], 3)} | "
            f"{_fmt(cpu_mean, 3)} | {share} |"
        )
    whole, whole_cpu = stages.get("total_ms", {}), stages.get("total_cpu_ms", {})
    lines.append(
        f"| **whole in-process search** | {_fmt(whole.get('mean'), 3)} | {_fmt(whole.get('p50'), 3)} | "
        f"{_fmt(whole.get('p99'), 3)} | {_fmt(whole_cpu.get('mean'), 3)} | |"
    )
    return lines + [""] + [f"- {note}" for note in stages.get("notes", [])] + [""]


def _peer_table(result: dict[str, Any]) -> list[str]:
    rows = comparison_rows(result)
    if not rows:
        return ["Peers: not measured.", ""]
    lines = [
        "| system (query encoder) | p50 ms | p95 ms | p99 ms | CPU p50 ms | recall@10 | index / note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {_fmt(row['p50'])} | {_fmt(row['p95'])} | {_fmt(row['p99'])} | "
            f"{_fmt(row.get('cpu_p50'))} | {_fmt(row['recall'], 3)} | {str(row['note'])[:140]} |"
        )
    return lines + [""]


def _targets(result: dict[str, Any]) -> list[str]:
    targets = result.get("targets") or []
    if not targets:
        return []
    lines = ["| target | measured | met |", "|---|---|---|"]
    for target in targets:
        met = {True: "yes", False: "**no**", None: "not measured"}[target.get("met")]
        lines.append(f"| {target['target']} | {target['measured']} | {met} |")
    return lines + [""]


def section(result: dict[str, Any], name: str) -> list[str]:
    """The markdown of one result file."""
    settings = result["settings"]
    load = result.get("machine_load", {})
    environment = " ".join(f"{k}={v}" for k, v in (result.get("aisle_environment") or {}).items())
    command = f"{environment} {result['command']}" if environment else result["command"]
    lines = [
        f"## {settings['size']:,} items, {settings['threads']} thread(s) — `{name}.json`",
        "",
        f"Command: `{command}`  ",
        f"Run: {result['created']}, "
        f"{_fmt(result.get('wall_seconds'), 0)} s; machine load during the run: load average "
        f"{load.get('loadavg_start')} → {load.get('loadavg_end')}, CPU busy {load.get('cpu_busy_fraction')}, "
        f"stolen by the hypervisor {_percent(load.get('cpu_steal_fraction'))}"
        + (
            " (**other processes were running: latencies are pessimistic**)"
            if (load.get("loadavg_start") or [0])[0] > 1.0
            else ""
        ),
        "",
    ]
    lines += _machine_lines(result["machine"], settings) + [""]
    catalogue = result.get("catalogue", {})
    lines += [f"Catalogue: {catalogue.get('description', '')}", ""]
    lines += ["### Targets", ""] + _targets(result)
    lines += ["### End to end over HTTP", ""]
    for key, title in (
        ("one_worker", "One worker process pinned to one core"),
        ("two_workers", "Two worker processes on two cores (load generator shares them)"),
    ):
        lines += _http_table(result.get("http", {}).get(key, {}), title)
    lines += ["### In-process /search by stage", ""] + _stage_table(result.get("stages") or {})
    lines += ["### Peers: same vectors, same queries, query latency with encoding", ""] + _peer_table(result)
    for plot in result.get("plots", []):
        lines.append(f"![{plot}]({plot})")
    return lines + [""]


def write_summary(results_dir: Path) -> Path:
    """Regenerates ``SUMMARY.md`` from every latency result in ``results_dir``."""
    results = []
    for path in sorted(Path(results_dir).glob(RESULT_GLOB)):
        try:
            results.append((path.stem, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    results.sort(key=lambda item: (item[1]["settings"]["size"], item[1]["settings"]["threads"]))
    lines = [
        "# Aisle latency benchmarks",
        "",
        "Generated by `benchmarks/run.py` from the JSON files next to this one; do not edit by hand.",
        "Every latency includes encoding the query text with all-MiniLM-L6-v2.",
        "",
    ]
    for name, result in results:
        lines += section(result, name)
    path = Path(results_dir) / "SUMMARY.md"
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))
    return path


def rerender(results_dir: Path) -> Path:
    """Re-derives targets and plots of every result in ``results_dir``, then ``SUMMARY.md``.

    For after a change to the report code: the measurements themselves are left untouched.
    """
    from benchmarks.report import write_plots
    from benchmarks.targets import evaluate_targets

    for path in sorted(Path(results_dir).glob(RESULT_GLOB)):
        result = json.loads(path.read_text())
        result["targets"] = evaluate_targets(result)
        result["plots"] = write_plots(result, Path(results_dir), path.stem)
        atomic_write_bytes(path, (json.dumps(result, indent=2, default=str) + "\n").encode())
    return write_summary(results_dir)


if __name__ == "__main__":
    import sys

    print(rerender(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")))
