"""Part-segmentation benchmark: mIoU of every method at equal compute on ShapeNet-Part-format data.

Each row of ``benchmarks/results/partseg.jsonl`` is one real run through the training engine
(``growprune train`` does the same): ``{"tier", "model", "method", "sparsity", "seed", "epochs",
"test_instance_miou", "test_class_miou", "val_instance_miou", "final_sparsity", "train_seconds",
"data_root", "generated", "device", "commit", ...}``. ``python -m benchmarks.make_results`` turns
the rows into the part-segmentation section of RESULTS.md.

Tiers:
  quick  the bundled ``partseg/<method>-quick`` recipes (PointNet++ width 0.5, 512 points), 12
         epochs of compute each, on the generated data unless ``$GROWPRUNE_SHAPENET_PART`` is set;
         about 2 min per run on one CPU thread.
  full   the bundled ``partseg/*`` recipes (30 epochs).

    python -m benchmarks.partseg --tier quick --methods dense cgap gmp rigl --sparsities 0.8 0.9
    python -m benchmarks.partseg --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.task_benchmark import TaskBenchmark


def facts(recipe: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return {"points": recipe["data"]["args"].get("points"), "generated": result["generated"]}


BENCHMARK = TaskBenchmark(
    task="partseg",
    doc=__doc__,
    scores=("test_instance_miou", "test_class_miou", "val_instance_miou"),
    facts=facts,
)

if __name__ == "__main__":
    sys.exit(BENCHMARK.main())
