"""A description of the machine and software a benchmark ran on, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: Packages whose versions change the numbers (server stack, ANN, encoder runtime, peers).
PACKAGES = (
    "numpy",
    "faiss-cpu",
    "onnxruntime",
    "tokenizers",
    "bm25s",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "torch",
    "sentence-transformers",
    "txtai",
    "chromadb",
    "chroma-hnswlib",
    "qdrant-client",
    "matplotlib",
)
#: Environment variables that set thread counts or the serving path.
THREAD_VARIABLES = (
    "AISLE_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD extensions that matter for int8 ONNX and FAISS (AVX2, AVX-512, VNNI, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return [flag for flag in wanted if flag in flags]


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str]:
    """Installed versions of ``PACKAGES`` (absent ones are left out)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_revision(repo: Path) -> str | None:
    """``<short commit>[+dirty]`` of the working tree the benchmark ran from."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def describe_machine(repo: Path) -> dict[str, Any]:
    """Everything a reader needs to compare these numbers with their own hardware."""
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        "packages": package_versions(),
        "aisle_revision": git_revision(repo),
    }
