"""The README's Python example is executed as written, so the documented API cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.trajectory
def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    sparsifier, gp = namespace["sparsifier"], namespace["gp"]
    assert str(sparsifier.phase) == "done"
    assert abs(gp.sparsity_report(namespace["model"]).overall - 0.8) < 1e-3


@pytest.mark.trajectory
def test_readme_custom_method_example_runs() -> None:
    """The "Your own method" example: registered with one call, it trains in a plain loop."""
    from growprune.methods import METHODS

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "register_method" in b)
    try:
        namespace: dict = {}
        exec(compile(example, str(README), "exec"), namespace)
        assert METHODS["lateprune"] is namespace["LatePrune"]
        assert [e.event for e in namespace["sparsifier"].history] == ["prune"]
    finally:
        METHODS.pop("lateprune", None)


def test_readme_compact_storage_example_runs() -> None:
    """The "Compact storage" example: the pruned layers hold their kept values only, and the
    report still sees the dense model at its target."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if 'storage="compact"' in b)
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    model, sparsifier, gp = namespace["model"], namespace["sparsifier"], namespace["gp"]
    assert sparsifier.storage == "compact"
    for target in sparsifier.targets:
        assert target.param.shape == (sparsifier.mask_set.kept(target.name),)
    assert abs(gp.sparsity_report(model).overall - 0.9) < 1e-3
