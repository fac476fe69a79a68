"""Why P-GaP's quick-tier results scatter across seeds: what every worker phase, merge and prune does.

The quick tier records P-GaP at 86.88 +- 1.65 (80%) and 84.43 +- 3.11 (90%) over 3 seeds, far
wider than the other methods, and the final number alone cannot say where a bad seed loses its
accuracy. This script trains the quality benchmark's P-GaP run (the same recipe, built by
``benchmarks.quality``, through the same ``Trainer(...).run()``) and evaluates the test set at
the moments the final number hides:

* every worker's model at the end of its phase (before the merge);
* the merged model before the prune, after the prune with the BatchNorm running statistics as
  the merge averaged them (what P-GaP trains on from), and after the prune with those statistics
  recalibrated on a copy (reset, cumulative average over ``--recal-batches`` training batches in
  train mode): the last two differ by what the averaged statistics cost. The merged model before
  the prune is also recalibrated, to separate the cost of averaging from the cost of pruning.
  Training normalizes with batch statistics, so the running ones only matter where the model is
  evaluated: the next phase (momentum 0.1) replaces them within ~50 steps, and a large recal gain
  says the post-merge evaluations understate the merged weights more than that it hurts training;
* every pruned layer at every merge: kept weights, their sparsity against the target, and the
  churn (share of the weights kept now that were not kept at the previous merge, or in the
  initial random masks at the first merge); the first conv is listed apart (108 weights in
  SmallCNN-12: a hypothesis is that pruning it to 10-20% at every merge makes seeds scatter;
  ``--layers first-dense`` keeps it dense to test that);
* the trainer's own evaluations (after every merge and every fine-tuning epoch) and its final
  test accuracy, which is the quality benchmark's number for the run.

It only observes: the loop's ``train_worker`` and the sparsifier's ``prune_after_merge`` are
wrapped on their instances, the extra evaluations run under ``torch.no_grad`` in eval mode (no
state changes) and the recalibration runs on a deep copy with its own data order and a forked
RNG, so the final accuracy is the one the uninstrumented recipe gives (the test checks it).

    python -m benchmarks.pgap_trace --sparsity 0.9 --seeds 0 1 2 --layers all   # results/pgap_trace.json
    python -m benchmarks.pgap_trace --smoke --out /tmp/pgap_trace.json          # seconds (the test suite)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, add_trace_flags, parse_trace_args, write_record
from benchmarks.quality import (
    LAYER_CONVENTIONS,
    TIERS,
    RunSpec,
    build_recipe_dict,
    first_prunable_layer,
    with_budget,
)
from growprune.methods.pgap import MERGE_MODES

RESULTS = RESULTS_DIR / "pgap_trace.json"
RECAL_BATCHES = 50


class PGaPTracer:
    """Observes one single-process P-GaP run of a built :class:`Trainer` (call before ``run()``).

    Rounds and workers are numbered from 1, as the run's own merge records and mask events are.
    """

    def __init__(self, trainer: Any, first_layer: str, recal_batches: int = RECAL_BATCHES) -> None:
        import torch

        from growprune.methods.pgap import PGaP
        from growprune.train.loops import RoundLoop

        if not isinstance(trainer.loop, RoundLoop) or not isinstance(trainer.sparsifier, PGaP):
            raise TypeError(f"the P-GaP trace needs a P-GaP run, got {type(trainer.sparsifier).__name__}")
        if trainer.dist is not None:
            raise RuntimeError(
                "the P-GaP trace follows the single-process run (workers in turn), not torchrun"
            )
        self.trainer = trainer
        self.loop = trainer.loop
        self.sparsifier = trainer.sparsifier
        self.recal_batches = recal_batches
        self.first_layer = first_layer
        self.partition_of = {n: k for k, part in enumerate(self.sparsifier.partitions) for n in part}
        # The first round's masks before any growth (the constructor already grew partition 1,
        # so the live masks no longer show it): the churn of the first merge is counted against them.
        self.previous: dict[str, torch.Tensor] = {
            n: m.detach().bool().clone() for n, m in self.sparsifier._sparse_masks.items()
        }
        self.workers: list[dict[str, Any]] = []
        self.merges: list[dict[str, Any]] = []
        self.trainer_evals: list[dict[str, Any]] = []
        self._wrap()

    # -- instrumentation ----------------------------------------------------------------------
    def _wrap(self) -> None:
        train_worker: Callable[..., None] = self.loop.train_worker
        prune_after_merge: Callable[[], None] = self.sparsifier.prune_after_merge
        evaluate: Callable[..., dict[str, float]] = self.trainer.evaluate

        def traced_worker(round_index: int, worker: int, stats: Any) -> None:
            train_worker(round_index, worker, stats)
            self.workers.append(
                {
                    "round": round_index + 1,
                    "worker": worker + 1,
                    "step": self.trainer.step,
                    "acc": self.accuracy(self.trainer.model),
                }
            )

        def traced_prune() -> None:
            merge: dict[str, Any] = {"round": len(self.merges) + 1, "step": self.trainer.step}
            model = self.trainer.model
            merge["merged_nonzero_share"] = self.nonzero_share()
            merge["acc_merged"] = self.accuracy(model)
            merge["acc_merged_recal"], _ = self.recalibrated(merge["round"])
            prune_after_merge()
            merge["acc_pruned"] = self.accuracy(model)
            merge["acc_pruned_recal"], merge["bn_stats_error"] = self.recalibrated(merge["round"])
            merge["layers"] = self.layer_masks()
            merge["first_layer_kept"] = self.first_layer_kept()
            self.merges.append(merge)

        def traced_evaluate(final: bool = False) -> dict[str, float]:
            scores = evaluate(final)
            self.trainer_evals.append(
                {
                    "step": self.trainer.step,
                    "epoch": round(self.trainer.step / self.trainer.steps_per_epoch, 3),
                    "phase": str(self.sparsifier.phase),
                    "final": final,
                    "test_acc": scores["test_acc"],
                }
            )
            return scores

        self.loop.train_worker = traced_worker  # type: ignore[method-assign]
        self.sparsifier.prune_after_merge = traced_prune  # type: ignore[method-assign]
        self.trainer.evaluate = traced_evaluate  # type: ignore[method-assign]

    # -- measurements -------------------------------------------------------------------------
    def accuracy(self, model: Any) -> float:
        """Test accuracy of `model` (the task's evaluate runs in eval mode and restores the mode)."""
        with self.trainer.autocast():
            return float(self.trainer.task.evaluate(model)["test_acc"])

    def recal_batches_of(self, round_number: int) -> Iterator[Any]:
        """Training batches in an order of the recalibration's own (the run's orders are untouched)."""
        from growprune.seeding import keyed_seed

        loader = self.trainer.task.worker_loader(
            keyed_seed(self.trainer.seed, "bn-recal", round_number) % (1 << 62)
        )
        epoch = 0
        while True:
            yield from loader.iter_from(epoch)
            epoch += 1

    def recalibrated(self, round_number: int) -> tuple[float, dict[str, dict[str, float]]]:
        """Test accuracy of a copy of the model whose BatchNorm statistics are recomputed, and how
        far the live statistics are from the recomputed ones, per BatchNorm layer.

        ``var_log_ratio``: mean over channels of |ln(var / var_recal)| (ln 2 = 0.69: off by a factor
        of 2); ``mean_shift``: mean over channels of |mean - mean_recal| / std_recal (both with the
        layer's eps added to the variances). Same batches before and after the prune.
        """
        import torch
        from torch import nn

        model = copy.deepcopy(self.trainer.model)
        norms = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        norms = [(n, m) for n, m in norms if m.track_running_stats]
        live = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in norms}
        for _, m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
        devices = [self.trainer.device] if self.trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self.trainer.autocast():
            model.train()
            batches = self.recal_batches_of(round_number)
            for _ in range(self.recal_batches if norms else 0):
                self.trainer.task.loss(model, next(batches))
        errors: dict[str, dict[str, float]] = {}
        for n, m in norms:
            mean, var = live[n]
            var_recal = m.running_var.float() + m.eps
            errors[n] = {
                "var_log_ratio": float(((var.float() + m.eps) / var_recal).log().abs().mean()),
                "mean_shift": float(
                    ((mean.float() - m.running_mean.float()).abs() / var_recal.sqrt()).mean()
                ),
            }
        return self.accuracy(model), errors

    def nonzero_share(self) -> float:
        """Share of the pruned layers' weights that are nonzero (before the prune: each partition
        holds the weights its dense worker trained, so the merged model is ~dense)."""
        params = {t.name: t.param for t in self.sparsifier.targets}
        nonzero = sum(int((params[n] != 0).sum()) for n in self.sparsifier.names)
        return nonzero / sum(self.sparsifier.numels.values())

    def layer_masks(self) -> list[dict[str, Any]]:
        """Every pruned layer after a merge's prune: kept weights and churn since the last merge."""
        layers = []
        for name in self.sparsifier.names:
            mask = self.sparsifier.mask_set.mask(name).detach().bool()
            kept = int(mask.sum())
            new = int((mask & ~self.previous[name]).sum())
            numel = self.sparsifier.numels[name]
            layers.append(
                {
                    "name": name,
                    "partition": self.partition_of[name] + 1,
                    "numel": numel,
                    "target_sparsity": self.sparsifier.layer_sparsity[name],
                    "kept": kept,
                    "sparsity": 1 - kept / numel,
                    "churn": new / kept if kept else None,
                }
            )
            self.previous[name] = mask.clone()
        return layers

    def first_layer_kept(self) -> int:
        """Kept weights of the model's first prunable layer (all of them where it is not pruned)."""
        if self.first_layer in self.sparsifier.names:
            return int(self.sparsifier.mask_set.mask(self.first_layer).sum())
        return self.first_layer_numel()

    def first_layer_numel(self) -> int:
        return int(self.trainer.model.get_parameter(self.first_layer).numel())


def trace_run(
    tier_name: str,
    epochs: float | None,
    sparsity: float,
    seed: int,
    layers: str,
    threads: int,
    recal_batches: int = RECAL_BATCHES,
    merge: str | None = None,
) -> dict[str, Any]:
    """One P-GaP run of the quality benchmark's recipe, traced; `merge` overrides the recipe's
    `merge_non_partition` (how the entries outside the partitions are merged)."""
    import torch

    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    torch.set_num_threads(threads)
    tier = with_budget(TIERS[tier_name], epochs)
    overrides = {"method.merge_non_partition": merge} if merge else {}
    spec = RunSpec(tier.name, "pgap", sparsity, "uniform", seed, layers=layers, overrides=overrides)
    recipe = validate_recipe(build_recipe_dict(spec, tier, threads))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(recipe, Path(run_dir), progress=False)
        tracer = PGaPTracer(trainer, first_prunable_layer(tier), recal_batches)
        started = time.monotonic()
        final = trainer.run()
        seconds = time.monotonic() - started
    sparsifier = trainer.sparsifier
    run = {
        "tier": tier.name,
        "model": tier.model,
        "model_args": tier.model_args,
        "epochs": tier.epochs,
        "sparsity": sparsity,
        "seed": seed,
        "layers": layers,
        "partitions": [list(part) for part in sparsifier.partitions],
        "workers_per_round": sparsifier.num_partitions,
        "rounds": sparsifier.rounds,
        "steps_per_phase": sparsifier.steps_per_phase,
        "epochs_per_phase": recipe.method.epochs_per_phase,
        "merge_non_partition": sparsifier.merge_non_partition,
        "recal_batches": recal_batches,
        "first_layer": {
            "name": tracer.first_layer,
            "numel": tracer.first_layer_numel(),
            "pruned": tracer.first_layer in sparsifier.names,
        },
        "top1": final["test_acc"],
        "final_test_loss": final["test_loss"],
        "final_sparsity": final["sparsity"],
        "workers": tracer.workers,
        "merges": tracer.merges,
        "trainer_evals": tracer.trainer_evals,
        "seconds": round(seconds, 1),
    }
    run["summary"] = summarize(run)
    return run


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """What each stage costs, averaged over the merges, and the last merge on its own (the
    fine-tuning starts from it)."""

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    merges = run["merges"]
    worker_best = {
        m["round"]: max(w["acc"] for w in run["workers"] if w["round"] == m["round"]) for m in merges
    }
    last = merges[-1] if merges else None
    churn = [layer["churn"] for m in merges[1:] for layer in m["layers"] if layer["churn"] is not None]
    return {
        "worker_acc_mean": mean([w["acc"] for w in run["workers"]]),
        "merge_drop_from_best_worker": mean([worker_best[m["round"]] - m["acc_merged"] for m in merges]),
        "prune_drop": mean([m["acc_merged"] - m["acc_pruned"] for m in merges]),
        "bn_recal_gain_after_prune": mean([m["acc_pruned_recal"] - m["acc_pruned"] for m in merges]),
        "bn_recal_gain_before_prune": mean([m["acc_merged_recal"] - m["acc_merged"] for m in merges]),
        "last_merge_acc_pruned": last["acc_pruned"] if last else None,
        "last_merge_acc_pruned_recal": last["acc_pruned_recal"] if last else None,
        "finetune_gain": run["top1"] - last["acc_pruned"] if last else None,
        "churn_after_first_merge": mean(churn),
        "first_layer_kept": [m["first_layer_kept"] for m in merges],
    }


def describe(run: dict[str, Any]) -> str:
    """A few lines per run for the terminal."""
    s = run["summary"]
    lines = [
        f"seed {run['seed']} sparsity {run['sparsity']:g} layers {run['layers']}: top1 {run['top1']:.4f} "
        f"(after the last merge {s['last_merge_acc_pruned']:.4f}, BN-recalibrated "
        f"{s['last_merge_acc_pruned_recal']:.4f}); first layer kept {s['first_layer_kept']} of "
        f"{run['first_layer']['numel']}; {run['seconds']:g} s"
    ]
    for m in run["merges"]:
        workers = " ".join(f"{w['acc']:.4f}" for w in run["workers"] if w["round"] == m["round"])
        lines.append(
            f"  round {m['round']}: workers {workers} | merged {m['acc_merged']:.4f} "
            f"(recal {m['acc_merged_recal']:.4f}) | pruned {m['acc_pruned']:.4f} "
            f"(recal {m['acc_pruned_recal']:.4f})"
        )
    churn = s["churn_after_first_merge"]
    lines.append(
        f"  mean: prune drop {s['prune_drop']:.4f}, BN recal gain after prune "
        f"{s['bn_recal_gain_after_prune']:+.4f}, churn from merge 2 on "
        f"{churn if churn is not None else float('nan'):.3f}, fine-tune gain {s['finetune_gain']:+.4f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiers = [name for name, tier in TIERS.items() if not tier.smoke]
    parser.add_argument("--tier", choices=tiers, default="quick")
    parser.add_argument("--epochs", type=float, help="epoch budget (default: the tier's)")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--layers",
        choices=list(LAYER_CONVENTIONS),
        default="all",
        help="layer convention (default all: the recorded quick-tier P-GaP rows prune every layer)",
    )
    parser.add_argument(
        "--merge",
        choices=MERGE_MODES,
        help="merge_non_partition for the run (default: the recipe's, average)",
    )
    parser.add_argument("--recal-batches", type=int, default=RECAL_BATCHES, help="BatchNorm recalibration")
    add_trace_flags(parser, RESULTS, "seeds")
    args = parse_trace_args(parser, argv)
    if args.recal_batches < 1:
        parser.error("--recal-batches must be >= 1")
    tier = "smoke" if args.smoke else args.tier
    runs: list[dict[str, Any]] = []
    # One fresh process per run: nothing (threads, RNG, deterministic flags) leaks between seeds.
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs), max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(
                trace_run,
                tier,
                args.epochs,
                args.sparsity,
                seed,
                args.layers,
                args.threads,
                args.recal_batches,
                args.merge,
            )
            for seed in args.seeds
        ]
        for future in futures:
            run = future.result()
            runs.append(run)
            print(describe(run), flush=True)
    write_record(args.out or RESULTS, "pgap_trace", argv, args.threads, args.jobs, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
