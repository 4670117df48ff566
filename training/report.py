"""Printing evaluation results: JSON for machines, a markdown table for people."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from aisle.index.storage import atomic_write_json

FORMATS = ("json", "markdown", "both")


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub markdown table; ``columns`` default to every key, in first-seen order."""
    if not rows:
        return "(no results)"
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def metric_rows(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per run: its name and its metrics."""
    return [{"run": name, **run.get("metrics", {})} for name, run in runs.items()]


def emit(
    payload: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: str = "both",
    out: Path | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> None:
    """Prints ``payload`` as JSON on stdout and/or ``rows`` as a markdown table.

    With ``both`` the table goes to stderr so that stdout stays valid JSON; with ``markdown``
    it goes to stdout. ``out`` also writes the JSON to a file (atomically).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if fmt in ("markdown", "both"):
        print(markdown_table(rows), file=stdout if fmt == "markdown" else stderr)
    if fmt in ("json", "both"):
        print(json.dumps(payload, indent=2, sort_keys=True, default=str), file=stdout)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), json.loads(json.dumps(payload, default=str)))
