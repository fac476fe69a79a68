"""Translation benchmark: BLEU of every method at equal compute on the es->en Bible corpus.

Each row of ``benchmarks/results/translation.jsonl`` is one real run through the training engine
(``growprune train`` does the same), decoded with beam search on the whole test split:
``{"tier", "model", "method", "sparsity", "seed", "epochs", "test_bleu", "test_chrf",
"valid_bleu", "final_sparsity", "train_seconds", "device", "commit", ...}``.
``python -m benchmarks.make_results`` turns the rows into the translation section of RESULTS.md.

Tiers:
  quick  the ``translation/cgap-quick`` setting (2+2 layers, d_model 128) for every method, 6
         epochs of compute each; ~20-30 min per run on 2 CPU cores.
  full   the bundled ``translation/*`` recipes (3+3 layers, d_model 256, 24 epochs); for a GPU.

    python -m benchmarks.translation --tier quick --methods dense cgap gmp rigl --sparsities 0.8
    python -m benchmarks.translation --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    append_row,
    device_name,
    git_commit,
    machine,
    quick_task_recipe,
)

RESULTS = RESULTS_DIR / "translation.jsonl"
RECIPES = ROOT / "growprune" / "tasks" / "translation" / "recipes" / "translation"
METHODS = ("dense", "cgap", "pgap", "gmp", "rigl")
TARGETS = ["*attn.*_proj.weight", "*ffn.fc*.weight"]
ENC_DEC = [["encoder.*"], ["decoder.*"]]

# Quick tier: 6 epochs of compute for every method (P-GaP: 2 workers x 2 epochs + 2 fine-tune).
QUICK_METHODS: dict[str, dict[str, Any]] = {
    "dense": {"name": "dense"},
    "cgap": {
        "name": "cgap",
        "partitions": ENC_DEC,
        "epochs_per_phase": 2,
        "rounds": 1,
        "finetune_epochs": 2,
        "reset_optimizer": "changed",
    },
    "pgap": {"name": "pgap", "partitions": ENC_DEC, "epochs_per_phase": 2, "rounds": 1, "finetune_epochs": 2},
    "gmp": {"name": "gmp", "start_epoch": 0.5, "end_epoch": 4, "prune_every_epochs": 0.25},
    "rigl": {"name": "rigl", "end_epoch": 4.5, "update_every_epochs": 0.25, "drop_fraction": 0.3},
}
QUICK_EPOCHS = 6
FULL_RECIPES = {
    "dense": "dense",
    "cgap": "cgap-k2-{s}",
    "pgap": "pgap-{s}",
    "gmp": "gmp-{s}",
    "rigl": "rigl-{s}",
}


def quick_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    targets = {"targets": TARGETS}
    return quick_task_recipe(
        RECIPES, "translation", QUICK_METHODS, QUICK_EPOCHS, method, sparsity, seed, targets
    )


def full_recipe(method: str, sparsity: float, seed: int) -> dict[str, Any]:
    name = FULL_RECIPES[method].format(s=int(round(sparsity * 100)))
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    recipe["training"]["seed"] = seed
    return recipe


def run_one(recipe: dict[str, Any], smoke: bool, threads: int | None) -> dict[str, Any]:
    """One engine run in a temporary directory; returns its final record."""
    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    if threads:
        recipe.setdefault("training", {})["threads"] = threads
    recipe.setdefault("output", {}).update({"tensorboard": False, "report": False})
    parsed = validate_recipe(recipe)
    with tempfile.TemporaryDirectory(prefix="gp-translation-") as tmp:
        trainer = Trainer(parsed, Path(tmp) / "run", smoke=smoke, progress=False)
        final = trainer.run()
        examples = trainer.task.example_rows()  # type: ignore[attr-defined]
    return {**final, "epochs": parsed.training.epochs, "examples": examples[:3]}


def child_main(payload: str) -> None:
    job = json.loads(payload)
    result = run_one(job["recipe"], job["smoke"], job["threads"])
    result.pop("layers", None)
    print(json.dumps(result))


def run_child(recipe: dict[str, Any], smoke: bool, threads: int | None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    job = json.dumps({"recipe": recipe, "smoke": smoke, "threads": threads})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.translation", "_child", job],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe['name']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("quick", "full"), default="quick")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (subprocesses)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--out", type=Path, help=f"JSONL to append to (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data slice, 2 methods, rows to a temp file"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.methods, args.sparsities = ["dense", "cgap"], [0.8]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="gp-translation-smoke-")) / "rows.jsonl"
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
    lock = threading.Lock()
    threads = args.threads or None

    def one(job: tuple[str, float, int]) -> None:
        method, sparsity, seed = job
        recipe = build(method, sparsity, seed)
        started = time.monotonic()
        result = run_child(recipe, args.smoke, threads)
        row = {
            "tier": "smoke" if args.smoke else args.tier,
            "model": "transformer(" + ",".join(f"{k}={v}" for k, v in recipe["model"]["args"].items()) + ")",
            "method": method,
            "sparsity": sparsity,
            "seed": seed,
            "epochs": result["epochs"],
            "test_bleu": result["test_bleu"],
            "test_chrf": result["test_chrf"],
            "valid_bleu": result["valid_bleu"],
            "final_sparsity": result["sparsity"],
            "train_seconds": result["train_seconds"],
            "wall_seconds": round(time.monotonic() - started, 1),
            "device": device,
            "commit": commit,
            "dirty": dirty,
            "threads": threads,
            "parallel_jobs": args.jobs,
            "beam_size": recipe.get("evaluation", {}).get("beam_size"),
            "method_config": recipe["method"],
            "examples": result["examples"],
            "machine": info,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        with lock:
            append_row(out, row)
            print(
                f"{method:<6} {sparsity:<4g} seed {seed}  test BLEU {row['test_bleu']:6.2f}  "
                f"chrF {row['test_chrf']:6.2f}  sparsity {row['final_sparsity']:.4f}  "
                f"{row['train_seconds']:.0f} s",
                flush=True,
            )

    print(f"{len(jobs)} runs -> {out}", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        failures = [f.exception() for f in [pool.submit(one, j) for j in jobs] if f.exception()]
    for err in failures:
        print(f"FAILED: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        child_main(sys.argv[2])
    else:
        sys.exit(main())
