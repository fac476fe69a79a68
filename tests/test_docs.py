"""The Python examples of the README and docs/ run as written, so the documented API cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.trajectory
def test_readme_python_example_runs() -> None:
    blocks = python_blocks(README)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    sparsifier, gp = namespace["sparsifier"], namespace["gp"]
    assert str(sparsifier.phase) == "done"
    assert abs(gp.sparsity_report(namespace["model"]).overall - 0.8) < 1e-3


@pytest.mark.trajectory
def test_methods_doc_example_runs() -> None:
    """docs/methods.md's example: registered with one call, it trains in a plain loop."""
    from growprune.methods import METHODS

    example = next(b for b in python_blocks(DOCS / "methods.md") if "register_method" in b)
    try:
        namespace: dict = {}
        exec(compile(example, str(DOCS / "methods.md"), "exec"), namespace)
        assert METHODS["lateprune"] is namespace["LatePrune"]
        assert [e.event for e in namespace["sparsifier"].history] == ["prune"]
        # the declared step argument is a recipe key, defaulted from the run like a callback's
        from growprune.methods.settings import RunLength
        from growprune.train.recipe import sparsifier_arguments, validate_recipe

        for section, step in (({}, 20), ({"prune_epoch": 1}, 10)):
            data = {"method": {"name": "lateprune", "sparsity": 0.5, **section}, "training": {"epochs": 4}}
            recipe = validate_recipe(data)
            assert sparsifier_arguments(recipe.method, RunLength(10, 40), seed=0)["prune_step"] == step
    finally:
        METHODS.pop("lateprune", None)


def test_compact_storage_doc_example_runs() -> None:
    """docs/compact-storage.md's example: the pruned layers hold their kept values only, and
    the report still sees the dense model at its target."""
    example = next(b for b in python_blocks(DOCS / "compact-storage.md") if 'storage="compact"' in b)
    namespace: dict = {}
    exec(compile(example, str(DOCS / "compact-storage.md"), "exec"), namespace)
    model, sparsifier, gp = namespace["model"], namespace["sparsifier"], namespace["gp"]
    assert sparsifier.storage == "compact"
    for target in sparsifier.targets:
        assert target.param.shape == (sparsifier.mask_set.kept(target.name),)
    assert abs(gp.sparsity_report(model).overall - 0.9) < 1e-3


# The Python blocks of each page that a test runs (above, and tests/export/test_export_doc.py), and
# the sketches that are not meant to run on their own (each names the complete example it stands for).
RUN_BY_TESTS = {"README.md": 1, "docs/compact-storage.md": 1, "docs/methods.md": 1, "docs/export.md": 2}
SKETCHES = {"docs/distributed.md": 1}  # FSDP2 loop: examples/fsdp_loop.py runs it (tests/examples)


def test_every_python_example_of_the_docs_is_run() -> None:
    """A new ```python block needs a test that runs it (or an entry among the sketches)."""
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        page = path.relative_to(ROOT).as_posix()
        expected = RUN_BY_TESTS.get(page, 0) + SKETCHES.get(page, 0)
        assert len(python_blocks(path)) == expected, f"{page}: a python example no test runs"
