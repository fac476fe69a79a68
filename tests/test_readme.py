"""The README's Python example is executed as written, so the documented API cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    sparsifier, gp = namespace["sparsifier"], namespace["gp"]
    assert str(sparsifier.phase) == "done"
    assert abs(gp.sparsity_report(namespace["model"]).overall - 0.8) < 1e-3
