"""SparseGPT or Wanda through llm-compressor on a trained dense ``lm`` model, in a child process.

The language-modelling benchmark's one-shot rows (``benchmarks/lm.py``): llm-compressor is what
practitioners prune language models with today, so its own modifiers prune the benchmark's dense
model, and growprune's own evaluation (:meth:`growprune.tasks.lm.task.LMTask.evaluate`, the code
every other row of the table is scored with) measures the result. llm-compressor pins another
``transformers`` than the test suite's, so this runs in the Python of its own environment
(``make bench-llm``: ``.venv-bench-llm``, extra ``bench-llm``) and prints one JSON line.

The job: the dense run's recipe and final checkpoint, the pruner (``sparsegpt`` / ``wanda``), the
target (a sparsity or ``2:4``), the layers to prune (those the growprune methods of the table
prune: the recipe ``targets`` of its sparse runs), the number of calibration blocks (llm-compressor's
examples calibrate on 512 sequences; here 512 training blocks of the task's context length, drawn
with the run's seed) and the thread count.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from growprune.sparsity.patterns import parse_pattern

PRUNERS = ("sparsegpt", "wanda")


def _modifier(pruner: str, target: float | str, modules: list[str]) -> Any:
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    kind = {"sparsegpt": SparseGPTModifier, "wanda": WandaPruningModifier}[pruner]
    targets = ["re:^" + re.escape(name) + "$" for name in modules]
    if isinstance(target, str):  # N:M: the sparsity N:M implies, in the N:M mask structure
        return kind(sparsity=parse_pattern(target).sparsity, mask_structure=target, targets=targets)
    return kind(sparsity=float(target), targets=targets)


def target_modules(model: Any, patterns: list[str]) -> list[str]:
    """The linear layers whose ``weight`` a growprune ``targets`` pattern names."""
    import torch

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and any(fnmatch.fnmatchcase(f"{name}.weight", p) for p in patterns)
    ]


def keeps_pattern(weight: Any, pattern: str) -> bool:
    """Whether every group of M consecutive inputs of each output row holds at most N non-zeros."""
    nm = parse_pattern(pattern)
    if weight.shape[-1] % nm.m:
        return False
    return bool(((weight.reshape(-1, nm.m) != 0).sum(dim=1) <= nm.n).all())


def child_main(payload: str) -> None:
    import torch

    job = json.loads(payload)
    torch.set_num_threads(max(1, int(job["threads"] or 1)))
    from datasets import Dataset
    from llmcompressor import oneshot
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    recipe = job["recipe"]
    recipe.setdefault("output", {}).update({"tensorboard": False, "report": False})
    with tempfile.TemporaryDirectory(prefix="gp-llmc-") as tmp:
        trainer = Trainer(validate_recipe(recipe), Path(tmp) / "run", smoke=job["smoke"], progress=False)
        task, model = trainer.task, trainer.model
        state = torch.load(job["checkpoint"], map_location="cpu", weights_only=False)["model"]
        model.load_state_dict(state)
        dense_scores = task.evaluate(model, final=True)
        modules = target_modules(model, job["targets"])
        if not modules:
            raise SystemExit(f"no linear layer matches the targets {job['targets']}")

        # llm-compressor loads the model's config by its path, and needs a tokenizer beside it
        folder = Path(tmp) / "dense"
        model.save_pretrained(folder)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(task.tokenizer.to_str()))
        tokenizer.save_pretrained(folder)
        model = type(model).from_pretrained(folder)

        train = task.data.train
        count = min(int(job["calibration_blocks"]), len(train))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(int(job["seed"])))
        ids = train[order[:count], :-1]
        calibration = Dataset.from_dict(
            {"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()}
        )
        started = time.perf_counter()
        oneshot(
            model=model,
            processor=tokenizer,
            dataset=calibration,
            recipe=[_modifier(job["pruner"], job["target"], modules)],
            num_calibration_samples=count,
            max_seq_length=ids.shape[1],
        )
        prune_seconds = time.perf_counter() - started
        scores = task.evaluate(model, final=True)
        weights = dict(model.named_parameters())
        pruned = [weights[f"{name}.weight"] for name in modules]
        zeros = sum(int((w == 0).sum()) for w in pruned)
        total = sum(w.numel() for w in pruned)
        pattern_kept = isinstance(job["target"], str) and all(
            keeps_pattern(w.detach(), job["target"]) for w in pruned
        )
        untouched = all(
            torch.equal(state[key], value.detach())
            for key, value in weights.items()
            if key in state and key.removesuffix(".weight") not in modules
        )
    print(
        json.dumps(
            {
                **scores,
                "dense_scores": dense_scores,
                "sparsity": zeros / total,
                "pruned_layers": len(modules),
                "other_weights_unchanged": untouched,
                "pattern_kept": pattern_kept,
                "calibration_blocks": count,
                "calibration_tokens": int(ids.numel()),
                "prune_seconds": prune_seconds,
            }
        )
    )


if __name__ == "__main__":
    child_main(sys.argv[1])
