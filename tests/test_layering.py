"""Lower layers do not import upper ones: the training engine, the methods and the models sit above
the packages that must work without them (export reads checkpoints, inference serves exports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "growprune"

# package -> the growprune packages none of its modules may import (at any depth, lazily or not)
FORBIDDEN = {
    "sparsity": ("growprune.train",),
    "models": ("growprune.train",),
    "data": ("growprune.train",),
    "tasks": ("growprune.train",),
    "export": ("growprune.train", "growprune.methods"),
    "inference": ("growprune.train", "growprune.methods", "growprune.models"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in sorted(imported_modules(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    ]
    assert not bad, "\n".join(bad)
