"""Part-segmentation benchmark: mIoU of every method at equal compute on ShapeNet-Part-format data.

Each row of ``benchmarks/results/partseg.jsonl`` is one real run through the training engine
(``growprune train`` does the same): ``{"tier", "model", "method", "sparsity", "seed", "epochs",
"test_instance_miou", "test_class_miou", "val_instance_miou", "final_sparsity", "train_seconds",
"data_root", "generated", "device", "commit", ...}``. ``python -m benchmarks.make_results`` turns
the rows into the part-segmentation section of RESULTS.md.

Tiers:
  quick  the ``partseg/cgap-quick`` setting (PointNet++ width 0.5, 512 points) for every method,
         12 epochs of compute each, on the generated data unless ``$GROWPRUNE_SHAPENET_PART`` is set;
         about 2 min per run on one CPU thread.
  full   the bundled ``growprune/tasks/partseg/recipes/partseg/*`` (30 epochs).

    python -m benchmarks.partseg --tier quick --methods dense cgap gmp rigl --sparsities 0.8 0.9
    python -m benchmarks.partseg --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    append_row,
    device_name,
    full_task_recipe,
    git_commit,
    machine,
    quick_task_recipe,
)
from benchmarks.engine_child import run_in_child

RESULTS = RESULTS_DIR / "partseg.jsonl"
RECIPES = ROOT / "growprune" / "tasks" / "partseg" / "recipes" / "partseg"
METHODS = ("dense", "cgap", "pgap", "gmp", "rigl")
SA_FP = [["sa*"], ["fp*", "head.*"]]

# Quick tier: 12 epochs of compute for every method (P-GaP: 2 workers x 2 rounds x 2 epochs + 4).
QUICK_EPOCHS = 12
QUICK_METHODS: dict[str, dict[str, Any]] = {
    "dense": {"name": "dense"},
    "cgap": {
        "name": "cgap",
        "partitions": SA_FP,
        "epochs_per_phase": 2,
        "rounds": 2,
        "finetune_epochs": 4,
        "reset_optimizer": "changed",
    },
    "pgap": {"name": "pgap", "partitions": SA_FP, "epochs_per_phase": 2, "rounds": 2, "finetune_epochs": 4},
    "gmp": {"name": "gmp", "start_epoch": 1, "end_epoch": 8, "prune_every_epochs": 0.5},
    "rigl": {"name": "rigl", "end_epoch": 9, "update_every_epochs": 0.25, "drop_fraction": 0.3},
}


def quick_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    return quick_task_recipe(RECIPES, "partseg", QUICK_METHODS, QUICK_EPOCHS, method, sparsity, seed)


def full_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    return full_task_recipe(RECIPES, method, sparsity, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("quick", "full"), default="quick")
    parser.add_argument("--methods", nargs="+", default=["dense", "cgap", "gmp", "rigl"], choices=METHODS)
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, help=f"JSONL to append to (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data slice, 2 methods, rows to a temp file"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.methods, args.sparsities = ["dense", "cgap"], [0.8]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="gp-partseg-smoke-")) / "rows.jsonl"
    out: Path = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    build = quick_recipe if args.tier == "quick" else full_recipe
    jobs = [
        (method, sparsity, seed)
        for seed in range(args.seeds)
        for method in args.methods
        for sparsity in ([0.0] if method == "dense" else args.sparsities)
    ]
    commit, dirty = git_commit("growprune", "benchmarks")
    info, device = machine(), device_name()
    print(f"{len(jobs)} runs -> {out}", flush=True)
    for method, sparsity, seed in jobs:
        recipe = build(method, sparsity, seed)
        started = time.monotonic()
        result = run_in_child(recipe, args.smoke)
        row = {
            "tier": "smoke" if args.smoke else args.tier,
            "model": "pointnet2_partseg("
            + ",".join(f"{k}={v}" for k, v in recipe["model"]["args"].items())
            + ")",
            "points": recipe["data"]["args"].get("points"),
            "method": method,
            "sparsity": sparsity,
            "seed": seed,
            "epochs": result["epochs"],
            "test_instance_miou": result["test_instance_miou"],
            "test_class_miou": result["test_class_miou"],
            "val_instance_miou": result["val_instance_miou"],
            "final_sparsity": result["sparsity"],
            "train_seconds": result["train_seconds"],
            "wall_seconds": round(time.monotonic() - started, 1),
            "data_root": result["data_root"],
            "generated": result["generated"],
            "device": device,
            "commit": commit,
            "dirty": dirty,
            "threads": 1,
            "method_config": recipe["method"],
            "machine": info,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        append_row(out, row)
        print(
            f"{method:<6} {sparsity:<4g} seed {seed}  test mIoU {row['test_instance_miou']:.4f} "
            f"(class {row['test_class_miou']:.4f})  sparsity {row['final_sparsity']:.4f}  "
            f"{row['train_seconds']:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
