"""The benchmarks' shared pieces: recipe overrides, method labels, RESULTS.md sections, JSONL rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import append_row, read_rows, replace_section, write_section
from benchmarks.make_results import method_label
from benchmarks.quality import TIERS, build_recipe_dict, study_specs, with_budget


@pytest.mark.parametrize("epochs", [None, 24.0, 0.00012])  # 0.00012 / 24 is written 5e-06
def test_study_overrides_arrive_exactly(epochs: float | None) -> None:
    """The ablation's overrides go through the recipe's --set logic and keep value and type."""
    tier = with_budget(TIERS["quick"], epochs)
    for spec in study_specs(tier):
        recipe = build_recipe_dict(spec, tier, threads=1)
        for dotted, value in spec.overrides.items():
            node: Any = recipe
            for part in dotted.split("."):
                node = node[part]
            assert node == value and type(node) is type(value), (dotted, node, value)


def test_method_labels_come_from_titles_and_peers() -> None:
    import growprune as gp

    assert method_label("gmp") == gp.METHODS["gmp"].title == "GMP (Zhu & Gupta)"
    assert method_label("rigl") == "RigL (growprune)"  # beside the rigl-torch peer
    assert method_label("rigl-torch") == "RigL (rigl-torch 0.5.2)"

    class Mine(gp.Dense):
        method = "mine_test"
        title = "My method"

    gp.register_method(Mine)
    try:
        assert method_label("mine_test") == "My method"  # no edit of the benchmarks needed
    finally:
        gp.METHODS.pop("mine_test")


def test_sections_and_rows(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    write_section(md, "a", "first")
    write_section(md, "b", "second")
    write_section(md, "a", "again\n")
    text = md.read_text()
    assert text.startswith("# Benchmark results") and "again" in text and "first" not in text
    assert replace_section(text, "b", "second") == text
    rows = tmp_path / "r.jsonl"
    append_row(rows, {"x": 1, "text": "ñ"})
    append_row(rows, {"x": 2})
    assert read_rows(rows) == [{"x": 1, "text": "ñ"}, {"x": 2}]
    assert read_rows(tmp_path / "missing.jsonl") == []
