"""The house rules that no linter checks: which way imports point between the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What each folder may import of the others. The root (``core/``: ``aisle.cli``, ``aisle.settings``)
#: describes the model with ``aisle.embed``'s config and names other packages only where it calls
#: them; every package but ``embed``, the bottom layer, may use the root.
ALLOWED = {
    "embed": {"aisle.embed"},
    "index": {"aisle.embed", "aisle.index", "aisle.root"},
    "service": {"aisle.embed", "aisle.index", "aisle.service", "aisle.root"},
    "training": {"aisle.embed", "aisle.index", "aisle.training", "aisle.root"},
    "core": {"aisle.embed", "aisle.root"},
}
PACKAGES = ("aisle.embed", "aisle.index", "aisle.service", "aisle.training")
ROOT_MODULES = ("aisle.cli", "aisle.settings", "aisle")


def _imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_dependencies_point_one_way(folder: str) -> None:
    wrong = []
    for path in sorted((REPO / folder).rglob("*.py")):
        # The root may name a package where it is called (load_encoder, for example), never at import time.
        for module in _imported_modules(path, top_level_only=folder == "core"):
            package = next((p for p in PACKAGES if module == p or module.startswith(p + ".")), None)
            if module in ROOT_MODULES:
                package = "aisle.root"
            if package is not None and package not in ALLOWED[folder]:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert wrong == []


def test_benchmarks_never_import_the_tests() -> None:
    wrong = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "benchmarks").rglob("*.py"))
        for module in _imported_modules(path)
        if module == "tests" or module.startswith("tests.")
    ]
    assert wrong == []
