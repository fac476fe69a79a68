"""Detection benchmark: COCO mAP of every method at equal compute on COCO-format data.

Each row of ``benchmarks/results/detection.jsonl`` is one real run through the training engine
(``growprune train`` does the same): ``{"tier", "model", "method", "sparsity", "seed", "epochs",
"val_map", "val_map50", "val_map75", "final_sparsity", "train_seconds", "data_root", "device",
"commit", ...}``. ``python -m benchmarks.make_results`` turns the rows into the detection section
of RESULTS.md. mAP is pycocotools' COCOeval on the validation split.

Tiers:
  quick  the ``detection/cgap-quick`` setting (SSD widths 32/64/128, 128 px) for every method,
         12 epochs of compute each, on the generated shapes set unless ``$GROWPRUNE_COCO`` is set;
         about 10-30 min per run on one CPU thread.
  full   the bundled ``growprune/tasks/detection/recipes/detection/*`` (30 epochs).

    python -m benchmarks.detection --tier quick --methods dense cgap gmp rigl --sparsities 0.8
    python -m benchmarks.detection --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    append_row,
    device_name,
    full_task_recipe,
    git_commit,
    load_average,
    machine,
    quick_task_recipe,
)
from benchmarks.engine_child import run_in_child

RESULTS = RESULTS_DIR / "detection.jsonl"
RECIPES = ROOT / "growprune" / "tasks" / "detection" / "recipes" / "detection"
METHODS = ("dense", "cgap", "pgap", "gmp", "rigl")
PARTITIONS = [["backbone.*"], ["extras.*"], ["heads.*"]]

# Quick tier: 12 epochs of compute for every method (C-GaP: 3 partitions x 2 epochs + 6 fine-tune;
# P-GaP: 3 workers x 1 round x 2 epochs + 6 together).
QUICK_EPOCHS = 12
QUICK_METHODS: dict[str, dict[str, Any]] = {
    "dense": {"name": "dense"},
    "cgap": {
        "name": "cgap",
        "partitions": PARTITIONS,
        "epochs_per_phase": 2,
        "rounds": 1,
        "finetune_epochs": 6,
        "reset_optimizer": "changed",
    },
    "pgap": {
        "name": "pgap",
        "partitions": PARTITIONS,
        "epochs_per_phase": 2,
        "rounds": 1,
        "finetune_epochs": 6,
    },
    "gmp": {"name": "gmp", "start_epoch": 1, "end_epoch": 8, "prune_every_epochs": 0.5},
    "rigl": {"name": "rigl", "end_epoch": 9, "update_every_epochs": 0.25, "drop_fraction": 0.3},
}


def quick_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    return quick_task_recipe(RECIPES, "detection", QUICK_METHODS, QUICK_EPOCHS, method, sparsity, seed)


def full_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    return full_task_recipe(RECIPES, method, sparsity, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("quick", "full"), default="quick")
    parser.add_argument("--methods", nargs="+", default=["dense", "cgap", "gmp", "rigl"], choices=METHODS)
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for every run (e.g. optimizer.lr=0.02), recorded in the row",
    )
    parser.add_argument("--out", type=Path, help=f"JSONL to append to (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data slice, 2 methods, rows to a temp file"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.methods, args.sparsities = ["dense", "cgap"], [0.8]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="gp-detection-smoke-")) / "rows.jsonl"
    out: Path = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    overrides = dict(item.split("=", 1) for item in args.set)
    build = quick_recipe if args.tier == "quick" else full_recipe
    jobs = [
        (method, sparsity, seed)
        for seed in range(args.seeds)
        for method in args.methods
        for sparsity in ([0.0] if method == "dense" else args.sparsities)
    ]
    commit, dirty = git_commit("growprune", "benchmarks")
    device = device_name()
    print(f"{len(jobs)} runs -> {out}", flush=True)
    for method, sparsity, seed in jobs:
        recipe = apply_overrides(build(method, sparsity, seed), overrides)
        info, started = machine(), time.monotonic()
        result = run_in_child(recipe, args.smoke)
        model_args = recipe["model"]["args"]
        row = {
            "tier": "smoke" if args.smoke else args.tier,
            "model": "ssd(" + ",".join(f"{k}={v}" for k, v in model_args.items()) + ")",
            "image_size": recipe["data"]["args"].get("image_size"),
            "method": method,
            "sparsity": sparsity,
            "seed": seed,
            "epochs": result["epochs"],
            "val_map": result["val_map"],
            "val_map50": result["val_map50"],
            "val_map75": result["val_map75"],
            "final_sparsity": result["sparsity"],
            "train_seconds": result["train_seconds"],
            "wall_seconds": round(time.monotonic() - started, 1),
            "data_root": result["data_root"],
            "generated": "/detection/shapes-" in result["data_root"],
            "lr": recipe["optimizer"]["lr"],
            "overrides": overrides,
            "device": device,
            "commit": commit,
            "dirty": dirty,
            "threads": 1,
            "method_config": recipe["method"],
            "machine": info,
            "load_average_at_end": load_average(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        append_row(out, row)
        print(
            f"{method:<6} {sparsity:<4g} seed {seed}  val mAP {row['val_map']:.4f} "
            f"(AP50 {row['val_map50']:.4f}, AP75 {row['val_map75']:.4f})  sparsity "
            f"{row['final_sparsity']:.4f}  {row['train_seconds']:.0f} s",
            flush=True,
        )
    return 0


def apply_overrides(recipe: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """``key.path=value`` overrides (values read as YAML), as ``growprune train --set`` does."""
    for key, text in overrides.items():
        *path, last = key.split(".")
        node = recipe
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(text)
    return recipe


if __name__ == "__main__":
    sys.exit(main())
