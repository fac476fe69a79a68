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


TASK_FOLDERS = sorted(p.name for p in (PACKAGE / "tasks").iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("task", TASK_FOLDERS)
def test_a_task_folder_imports_no_other_task(task: str) -> None:
    """A task is its folder: it may use the shared packages, never another task's modules."""
    others = [f"growprune.tasks.{t}" for t in TASK_FOLDERS if t != task]
    bad = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / "tasks" / task).rglob("*.py"))
        for name in sorted(imported_modules(path))
        if any(name == o or name.startswith(o + ".") for o in others)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["data", "models"])
def test_shared_packages_reach_tasks_only_through_the_registry(package: str) -> None:
    """`data/` and `models/` serve every task; the built-in models are the registry's declarations."""
    bad = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in sorted(imported_modules(path))
        if name.startswith("growprune.tasks") and not name.startswith("growprune.tasks.registry")
    ]
    assert not bad, "\n".join(bad)
