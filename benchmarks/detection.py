"""Detection benchmark: COCO mAP of every method at equal compute on COCO-format data.

Each row of ``benchmarks/results/detection.jsonl`` is one real run through the training engine
(``growprune train`` does the same): ``{"tier", "model", "method", "sparsity", "seed", "epochs",
"val_map", "val_map50", "val_map75", "final_sparsity", "train_seconds", "data_root", "device",
"commit", ...}``. ``python -m benchmarks.make_results`` turns the rows into the detection section
of RESULTS.md. mAP is pycocotools' COCOeval on the validation split.

Tiers:
  quick  the bundled ``detection/<method>-quick`` recipes (SSD widths 32/64/128, 128 px), 12 epochs
         of compute each, on the generated shapes set unless ``$GROWPRUNE_COCO`` is set; about
         10-30 min per run on one CPU thread.
  full   the bundled ``detection/*`` recipes (30 epochs).

    python -m benchmarks.detection --tier quick --methods dense cgap gmp rigl --sparsities 0.8
    python -m benchmarks.detection --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.task_benchmark import TaskBenchmark


def facts(recipe: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    # The coco_shapes data has no `generated` flag: its generated set lives under .../detection/shapes-*.
    return {
        "image_size": recipe["data"]["args"].get("image_size"),
        "generated": "/detection/shapes-" in result["data_root"],
    }


BENCHMARK = TaskBenchmark(
    task="detection",
    doc=__doc__,
    scores=("val_map", "val_map50", "val_map75"),
    facts=facts,
    sparsities=(0.8,),
)

if __name__ == "__main__":
    sys.exit(BENCHMARK.main())
