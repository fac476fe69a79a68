"""Why C-GaP trails at small budgets: what every mask change costs, and how much of it comes back.

Trains the quality benchmark's C-GaP run (same model, data, optimizer and schedule, see
``benchmarks/quality.py``) at one or more epoch budgets and evaluates the test set just before
and just after every mask change. For each change it records the accuracy drop, the accuracy
recovered by the next change, and the churn of the partition it pruned: the share of the weights
kept now that were not in that partition's mask before it was grown (how much the dense phase
actually explored).

    python -m benchmarks.gap_trace --sparsity 0.9 --epochs 6 24 --jobs 2   # writes results/gap_trace.json
    python -m benchmarks.gap_trace --smoke --out /tmp/trace.json           # seconds (the test suite)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, add_trace_flags, parse_trace_args, write_record
from benchmarks.quality import TIERS, RunSpec, build_recipe_dict, with_budget

RESULTS = RESULTS_DIR / "gap_trace.json"


def trace_run(tier_name: str, epochs: float, sparsity: float, seed: int, threads: int) -> dict[str, Any]:
    """One C-GaP run with the test accuracy around every mask change."""
    import torch

    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    torch.set_num_threads(threads)
    tier = with_budget(TIERS[tier_name], epochs)
    spec = RunSpec(tier.name, "cgap", sparsity, "uniform", seed)
    recipe = validate_recipe(build_recipe_dict(spec, tier, threads))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(recipe, Path(run_dir), progress=False)
        sparsifier = trainer.sparsifier
        install = sparsifier.change_masks
        before_growth: dict[str, torch.Tensor] = {}
        events: list[dict[str, Any]] = []

        def accuracy() -> float:  # the task's evaluate() restores train mode itself
            return trainer.evaluate()["test_acc"]

        def traced(new_masks: dict[str, torch.Tensor], event: str, *args: Any, **kwargs: Any) -> None:
            kept_new = kept_old = 0
            for name, mask in new_masks.items():
                current = sparsifier.mask_set.mask(name)
                grows, was_dense = bool(mask.all()), bool(current.all())
                if grows and not was_dense:
                    before_growth[name] = current.detach().clone()
                elif not grows and was_dense and name in before_growth:
                    kept = mask.bool()
                    kept_new += int(kept.sum())
                    kept_old += int((kept & before_growth.pop(name).bool()).sum())
            acc_before = accuracy()
            install(new_masks, event, *args, **kwargs)
            events.append(
                {
                    "step": trainer.step,
                    "epoch": round(trainer.step / trainer.steps_per_epoch, 3),
                    "event": event,
                    "acc_before": acc_before,
                    "acc_after": accuracy(),
                    "churn": (1 - kept_old / kept_new) if kept_new else None,
                }
            )

        sparsifier.change_masks = traced  # type: ignore[method-assign]
        started = time.monotonic()
        final = trainer.run()
    for event, following in zip(events, events[1:] + [{"acc_before": final["test_acc"]}]):
        event["acc_recovered"] = following["acc_before"]
    return {
        "tier": tier_name,
        "model": tier.model,
        "epochs": epochs,
        "sparsity": sparsity,
        "seed": seed,
        "epochs_per_phase": recipe.method.epochs_per_phase,
        "top1": final["test_acc"],
        "events": events,
        "summary": summarize(events),
        "seconds": round(time.monotonic() - started, 1),
    }


def summarize(events: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean accuracy drop at a mask change, what the next phase recovers, and mean churn.

    Every event is a phase change: the initial masks are set inside the sparsifier's constructor,
    before the trace is attached.
    """
    churn = [e["churn"] for e in events if e["churn"] is not None]

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    return {
        "mean_drop": mean([e["acc_before"] - e["acc_after"] for e in events]),
        "mean_acc_before": mean([e["acc_before"] for e in events]),
        "mean_recovered_minus_before": mean([e["acc_recovered"] - e["acc_before"] for e in events]),
        "mean_churn": mean(churn),
        "final_prune_drop": next(
            (e["acc_before"] - e["acc_after"] for e in events if e["event"] == "final-prune"), None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=float, nargs="+", default=[6.0, 24.0], help="epoch budgets")
    parser.add_argument("--seed", type=int, default=0)
    add_trace_flags(parser, RESULTS, "budgets")
    args = parse_trace_args(parser, argv)
    tier = "smoke" if args.smoke else "quick"
    runs: list[dict[str, Any]] = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(trace_run, tier, e, args.sparsity, args.seed, args.threads) for e in args.epochs
        ]
        for future in futures:
            run = future.result()
            runs.append(run)
            s = run["summary"]
            print(
                f"{run['epochs']:g} epochs ({run['epochs_per_phase']:g} per GaP step): "
                f"top1 {run['top1']:.4f}; "
                f"per change: acc before {s['mean_acc_before']:.4f}, drop {s['mean_drop']:.4f}, "
                f"recovered by the next change {s['mean_recovered_minus_before']:+.4f}, "
                f"churn {s['mean_churn'] if s['mean_churn'] is not None else float('nan'):.3f}; "
                f"final prune drop {s['final_prune_drop']:.4f}",
                flush=True,
            )
    write_record(args.out or RESULTS, "gap_trace", argv, args.threads, args.jobs, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
