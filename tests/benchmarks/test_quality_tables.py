"""Quality tables: budget-sweep rows are tagged apart and tabled against budget; the ablation is
tabled per sparsity."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.make_results import budget_table, budget_target_lines, quality_table, study_table
from benchmarks.quality import TIERS, budget_variant, table_specs, with_budget
from tests.benchmarks.helpers import quality_row


def row(method: str, sparsity: float, epochs: float, top1: float, variant: str = "") -> dict[str, Any]:
    return quality_row(method, sparsity, top1, epochs=epochs, variant=variant)


def test_budget_variant_only_for_other_budgets() -> None:
    quick = TIERS["quick"]
    assert budget_variant(quick, None) == ""
    assert budget_variant(quick, quick.epochs) == ""
    assert budget_variant(quick, 24) == "budget:24"
    assert with_budget(quick, 24).epochs == 24 and with_budget(quick, None) is quick
    with pytest.raises(SystemExit, match="--epochs must be > 0"):
        with_budget(quick, 0)
    specs = table_specs(with_budget(quick, 24), ["dense", "cgap"], [0.8], budget_variant(quick, 24))
    assert {s.variant for s in specs} == {"budget:24"}
    plain = table_specs(quick, ["dense", "cgap"], [0.8])
    assert {s.key() for s in specs}.isdisjoint({s.key() for s in plain})  # both kept, neither skipped


def test_budget_table_columns_and_differences() -> None:
    rows = [
        row("dense", 0.0, 6, 0.90),
        row("gmp", 0.8, 6, 0.89),
        row("cgap", 0.8, 6, 0.88),
        row("oneshot", 0.8, 6, 0.70),  # not swept: stays out of the budget table
        row("dense", 0.0, 24, 0.92, "budget:24"),
        row("gmp", 0.8, 24, 0.905, "budget:24"),
        row("cgap", 0.8, 24, 0.915, "budget:24"),
        row("cgap", 0.8, 6, 0.50, "study:K=2"),  # ablation rows never enter it
    ]
    text = "\n".join(budget_table(rows, "quick"))
    assert "| 6 epochs | 24 epochs |" in text
    assert "| C-GaP | 80% | 88.00 | 91.50 |" in text
    assert "| C-GaP minus GMP (Zhu & Gupta) | 80% | -1.00 | +1.00 |" in text
    assert "| C-GaP minus dense | 80% | -2.00 | -0.50 |" in text
    assert "one-shot" not in text and "50.00" not in text
    # the main table keeps to the tier's own budget
    main = "\n".join(quality_table(rows, "quick"))
    assert "91.50" not in main and "88.00" in main
    assert budget_table([r for r in rows if not r["variant"].startswith("budget")], "quick") == []


def test_study_table_one_per_sparsity_with_table_base() -> None:
    rows = [
        row("cgap", 0.8, 6, 0.88),
        row("cgap", 0.9, 6, 0.82),
        row("cgap", 0.8, 6, 0.89, "study:init=magnitude"),
        row("cgap", 0.9, 6, 0.85, "study:init=magnitude"),
        {**row("cgap", 0.9, 6, 0.86, "study:init=magnitude"), "seed": 1},
        {**row("cgap", 0.9, 6, 0.84), "seed": 1},
    ]
    text = "\n".join(study_table(rows, "quick"))
    assert "80% uniform" in text and "90% uniform" in text
    at_80, at_90 = text.split("90% uniform")
    assert "| base | 88.00 (1) |" in at_80 and "| init=magnitude | 89.00 (1) | +1.00 |" in at_80
    # base at 90% is the table's C-GaP over the study's seeds 0 and 1: (82 + 84) / 2 = 83
    assert "| init=magnitude | 85.50 +- 0.71 (2) | +2.50 |" in at_90


def test_budget_target_lines_per_budget() -> None:
    rows = [
        row("dense", 0.0, 6, 0.90),
        row("cgap", 0.8, 6, 0.88),
        row("dense", 0.0, 24, 0.92, "budget:24"),
        row("gmp", 0.9, 24, 0.86, "budget:24"),
        row("cgap", 0.8, 24, 0.915, "budget:24"),
        row("cgap", 0.9, 24, 0.87, "budget:24"),
    ]
    (line,) = budget_target_lines(rows, "quick")
    assert line.startswith("- At a 24-epoch budget")
    assert "80%: C-GaP 91.50, -0.50 vs dense" in line
    assert "90%: C-GaP 87.00, +1.00 vs GMP (Zhu & Gupta)" in line


def test_headline_leads_with_the_long_tier(tmp_path) -> None:
    """The headline compares C-GaP with the best baseline per sparsity, long tier first, and
    make_results puts it at the top of a RESULTS.md that did not have it."""
    from benchmarks.make_results import headline_section, main

    long_rows = [
        {**row("dense", 0.0, 100, 0.90), "tier": "long"},
        {**row("cgap", 0.9, 100, 0.89), "tier": "long"},
        {**row("gmp", 0.9, 100, 0.895), "tier": "long"},
        {**row("rigl", 0.9, 100, 0.88), "tier": "long"},
    ]
    text = headline_section(long_rows + [row("dense", 0.0, 6, 0.91), row("cgap", 0.8, 6, 0.88)])
    assert text.index("Tier `long`") < text.index("Tier `quick`")
    assert "| 90% | 89.00 | GMP (Zhu & Gupta) 89.50 | -0.50 | -1.00 |" in text
    assert "| 80% |" not in text  # no baseline ran at 80% on the quick tier: no row to compare
    import json

    quality = tmp_path / "q.jsonl"
    quality.write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    out = tmp_path / "RESULTS.md"
    out.write_text(
        "# Benchmark results\n\n<!-- growprune:inference:start -->\nold\n<!-- growprune:inference:end -->\n"
    )
    main(
        ["--quality", str(quality), "--overhead", str(tmp_path / "none.json"), "--out", str(out)]
        + [f"--{name}={tmp_path / 'none.jsonl'}" for name in ("translation", "partseg", "detection")]
    )
    written = out.read_text()
    assert written.index("## Headline") < written.index("growprune:inference:start")
    main(
        ["--quality", str(quality), "--overhead", str(tmp_path / "none.json"), "--out", str(out)]
        + [f"--{name}={tmp_path / 'none.jsonl'}" for name in ("translation", "partseg", "detection")]
    )
    assert out.read_text().count("## Headline") == 1
