"""Translation benchmark: BLEU of every method at equal compute on the es->en Bible corpus.

Each row of ``benchmarks/results/translation.jsonl`` is one real run through the training engine
(``growprune train`` does the same), decoded with beam search on the whole test split:
``{"tier", "model", "method", "sparsity", "seed", "epochs", "test_bleu", "test_chrf",
"valid_bleu", "final_sparsity", "train_seconds", "device", "commit", ...}``.
``python -m benchmarks.make_results`` turns the rows into the translation section of RESULTS.md.

Tiers:
  quick  the bundled ``translation/<method>-quick`` recipes (2+2 layers, d_model 128), 6 epochs of
         compute each; ~20-30 min per run on 2 CPU cores.
  full   the bundled ``translation/*`` recipes (3+3 layers, d_model 256, 24 epochs); for a GPU.

    python -m benchmarks.translation --tier quick --methods dense cgap gmp rigl --sparsities 0.8
    python -m benchmarks.translation --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.task_benchmark import TaskBenchmark


def facts(recipe: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    del result
    return {"beam_size": recipe.get("evaluation", {}).get("beam_size")}


BENCHMARK = TaskBenchmark(
    task="translation",
    doc=__doc__,
    scores=("test_bleu", "test_chrf", "valid_bleu"),
    facts=facts,
    threads=0,  # torch's default: a Transformer step uses both cores
    examples=3,
)

if __name__ == "__main__":
    sys.exit(BENCHMARK.main())
