"""Language-modelling benchmark: perplexity of every method at equal compute, and of the one-shot
LLM pruners (SparseGPT, Wanda through llm-compressor) on the same trained dense model.

Each row of ``benchmarks/results/lm.jsonl`` is one real run through the training engine
(``growprune train`` does the same) scored on the held-out books (the translation task's test
split: Ruth, Job, Daniel, Haggai, II Corinthians, Philemon), or one one-shot pruning of a dense
row's final model: ``{"tier", "model", "method", "sparsity", "pattern", "seed", "epochs",
"test_ppl", "valid_ppl", "final_sparsity", "train_seconds", ...}``.
``python -m benchmarks.make_results`` turns the rows into the language-modelling section of
RESULTS.md.

Compute: every growprune method trains one epoch of forward and backward passes (P-GaP: its K
workers' phases summed, as in the other task tables); SparseGPT and Wanda prune the dense run's
final model (the same epoch) after one forward pass over 512 training blocks, llm-compressor's
calibration count, and are not fine-tuned (the one-shot setting); GMP is "dense, then prune
gradually, then fine-tune" in the same single epoch.

The one-shot rows need llm-compressor, whose pinned ``transformers`` differs from the test
suite's: ``make bench-llm`` builds ``.venv-bench-llm`` (extra ``bench-llm``), and the pruning
runs in that environment's Python (``--pruner-python``); ``--pruners`` (none) leaves them out.

Tiers:
  quick  the bundled ``lm/<method>-quick`` recipes (Llama, 2 layers, hidden 128, context 64,
         2,048-entry byte-level BPE, ~0.66M parameters), one epoch each; ~4 min a run on one core.
  full   the bundled ``lm/*`` recipes (8 layers, hidden 512, ~29M parameters, 16 epochs); for a GPU.

    make bench-llm        # once: the llm-compressor environment
    python -m benchmarks.lm --tier quick --seeds 3 --jobs 2
    python -m benchmarks.lm --smoke          # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, load_average
from benchmarks.engine_child import child_environment, run_child_process
from benchmarks.llm_oneshot_child import PRUNERS
from benchmarks.task_benchmark import KeptRun, Target, TaskBenchmark, target_sparsity

PRUNER_PYTHON = ROOT / ".venv-bench-llm" / "bin" / "python"
MODELS_DIR = ROOT / "runs" / "bench-lm"
CALIBRATION_BLOCKS = 512  # llm-compressor's examples calibrate on 512 sequences


def facts(recipe: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    del result
    return {"context_length": recipe["data"]["args"]["context_length"]}


@dataclass(frozen=True)
class LMBenchmark(TaskBenchmark):
    """The task benchmark of ``lm``, whose dense runs are also pruned one-shot by llm-compressor."""

    def parser(self) -> argparse.ArgumentParser:
        parser = super().parser()
        parser.add_argument(
            "--pruners",
            nargs="*",
            choices=PRUNERS,
            default=list(PRUNERS),
            help="one-shot pruners applied to each dense run (none: leave them out)",
        )
        parser.add_argument(
            "--pruner-python",
            type=Path,
            default=PRUNER_PYTHON,
            help="the Python with llm-compressor (default: .venv-bench-llm, made by `make bench-llm`)",
        )
        parser.add_argument("--calibration-blocks", type=int, default=CALIBRATION_BLOCKS)
        parser.add_argument(
            "--models-dir",
            type=Path,
            default=MODELS_DIR,
            help=f"where the dense runs' final checkpoints are kept (default {MODELS_DIR.relative_to(ROOT)})",
        )
        return parser

    def main(self, argv: list[str] | None = None) -> int:
        args = self.parser().parse_args(argv)
        if args.pruners and "dense" in args.methods and not Path(args.pruner_python).is_file():
            print(
                f"error: {args.pruner_python} not found: the one-shot rows need llm-compressor; run "
                "`make bench-llm` (or give --pruner-python, or --pruners with no names to leave them out)",
                file=sys.stderr,
            )
            return 2
        return super().main(argv)

    def keep_model(self, args: argparse.Namespace, tier: str, job: tuple[str, Target, int]) -> Path | None:
        method, _, seed = job
        if method != "dense" or not args.pruners:
            return None
        return args.models_dir / f"{tier}-dense-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}.pt"

    def after_run(self, kept: KeptRun, emit: Callable[[dict[str, Any]], None]) -> None:
        """Prune the dense run's final model with each pruner at each target; a row each."""
        args, seed = kept.args, kept.job[2]
        targets = self._quick()["cgap"]["method"]["targets"]
        for pruner in args.pruners:
            for target in args.sparsities:
                payload = {
                    "recipe": kept.recipe,
                    "checkpoint": str(kept.checkpoint),
                    "pruner": pruner,
                    "target": target,
                    "targets": targets,
                    "calibration_blocks": args.calibration_blocks,
                    "seed": seed,
                    "smoke": args.smoke,
                    "threads": args.threads or 1,
                }
                argv = [str(args.pruner_python), "-m", "benchmarks.llm_oneshot_child", json.dumps(payload)]
                started = time.monotonic()
                result = run_child_process(argv, child_environment(args.threads or 1), f"{pruner} {target}")
                emit(self.oneshot_row(kept.row, pruner, target, result, time.monotonic() - started))

    def oneshot_row(
        self, dense: dict[str, Any], pruner: str, target: Target, result: dict[str, Any], wall: float
    ) -> dict[str, Any]:
        """The row of one one-shot pruning of the dense row ``dense``: its compute is the dense
        run's training plus the calibration pass."""
        if not result.get("other_weights_unchanged"):
            raise RuntimeError(f"{pruner} changed weights outside the layers it was asked to prune")
        if isinstance(target, str) and not result.get("pattern_kept"):
            raise RuntimeError(f"{pruner} at {target} left a group with more than N non-zeros")
        dense_check = result["dense_scores"]["test_ppl"]
        if abs(dense_check - dense["test_ppl"]) > 1e-3 * dense["test_ppl"]:
            raise RuntimeError(
                f"the dense model scored {dense_check:.4f} in the llm-compressor environment, "
                f"{dense['test_ppl']:.4f} in training: not the same model or evaluation"
            )
        return {
            **{k: v for k, v in dense.items() if k not in ("wall_seconds", "load_average_at_end", "date")},
            "method": pruner,
            "sparsity": target_sparsity(target),
            **({"pattern": target} if isinstance(target, str) else {}),
            **{key: result[key] for key in self.scores},
            "final_sparsity": result["sparsity"],
            "method_config": {
                "name": pruner,
                "tool": "llmcompressor",
                "target": target,
                "pruned_layers": result["pruned_layers"],
                "calibration_blocks": result["calibration_blocks"],
                "calibration_tokens": result["calibration_tokens"],
            },
            "prune_seconds": round(result["prune_seconds"], 2),
            "dense_test_ppl": dense["test_ppl"],
            "wall_seconds": round(wall, 1),
            "load_average_at_end": load_average(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }


BENCHMARK = LMBenchmark(
    task="lm",
    doc=__doc__,
    scores=("test_ppl", "valid_ppl"),
    facts=facts,
    sparsities=(0.5, "2:4", 0.8),
    threads=1,
)

if __name__ == "__main__":
    sys.exit(BENCHMARK.main())
