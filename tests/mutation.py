"""Curated mutation check: plant one bug a user would hit, run the tests that should catch it.

    python tests/mutation.py            # every mutant
    python tests/mutation.py -k merge   # the mutants whose name contains "merge"

Each mutant is a small textual patch to one file of the package. It is applied to a temporary
copy of the repository (``growprune/`` and ``tests/``), the named tests run there with pytest
(``PYTHONPATH`` puts the copy first, and the run checks that the copy is what got imported), and
the mutant is *caught* when they fail. The table printed at the end says caught / survived and
the time of each; the exit code is 1 if any mutant survived or its patch no longer applies (the
code moved: update the patch). Not part of ``.ci/run``: it runs pytest once per mutant.

A test that passes with the bug in place checks less than its name says; every mutant here
must be caught, and a new guarantee should come with a mutant that shows its test can fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # what a user would see
    file: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: what should catch it


MUTANTS = (
    Mutant(
        "no-gradient-masking",
        "pruned weights receive gradient before the optimizer step",
        "growprune/methods/base.py",
        "        self.before_optimizer_step(self.step_count + 1)\n        self.mask_set.apply_to_grads()",
        "        self.before_optimizer_step(self.step_count + 1)",
        ("tests/sparsity/test_masks.py", "tests/methods/test_weight_pass.py"),
    ),
    Mutant(
        "no-optimizer-state-zeroing",
        "regrown weights start with the momentum they had before they were pruned",
        "growprune/sparsity/optim_state.py",
        "            local(value).mul_(local_part(mask, value).to(value.dtype))  # per shard under FSDP2",
        "            pass",
        ("tests/sparsity/test_optim_state.py",),
    ),
    Mutant(
        "no-post-step-pass",
        "an optimizer that moves zero weights (not SGD/Adam) revives pruned weights",
        "growprune/methods/base.py",
        "        if not self._skip_weight_pass:\n            self.mask_set.apply_to_weights()",
        "        pass",
        ("tests/methods/test_invariants.py", "-k", "invariants_after_every_step and sgld"),
    ),
    Mutant(
        "no-outside-change-check",
        "weights or masks edited between steps (a loaded checkpoint) are not masked again",
        "growprune/methods/base.py",
        '        """Mask again whatever changed outside the optimizer since the last step we saw."""\n',
        '        """Mask again whatever changed outside the optimizer since the last step we saw."""\n'
        "        return\n",
        ("tests/sparsity/test_masks.py",),
    ),
    Mutant(
        "double-count-nested-step",
        "an optimizer subclass calling super().step() runs the schedule at double speed",
        "growprune/methods/base.py",
        "        if self._outer_step is None:\n            return False\n        frame",
        "        return False\n        frame",
        ("tests/methods/test_drivers.py", "-k", "super_step"),
    ),
    Mutant(
        "erk-without-kernel",
        "ERK ignores the kernel size of convolutions",
        "growprune/sparsity/distribution.py",
        "raw = [(sum(s) / math.prod(s)) ** power for s in shapes]",
        "raw = [(sum(s[:2]) / math.prod(s)) ** power for s in shapes]",
        ("tests/methods/test_distributions.py",),
    ),
    Mutant(
        "set-rigl-no-drop-grow",
        "SET and RigL keep their initial random masks (a static sparse network)",
        "growprune/methods/set.py",
        "        if moves:  # each layer's new mask made as it is installed: one layer's at a time\n",
        "        if False:\n",
        ("tests/methods/test_set_rigl.py", "tests/methods/test_training.py", "-k", "set or rigl"),
    ),
    Mutant(
        "cgap-partitions-in-reverse",
        "C-GaP grows the partitions in another order than the recipe's",
        "growprune/methods/cgap.py",
        "        return phase % self.num_partitions if phase < self.phases else None",
        "        return self.num_partitions - 1 - phase % self.num_partitions "
        "if phase < self.phases else None",
        ("tests/methods/test_cgap.py",),
    ),
    Mutant(
        "pgap-no-merge",
        "P-GaP keeps worker 0's model and throws the other partitions' training away",
        "growprune/methods/rounds.py",
        "            merged[key] = worker_states[owner[key]][key].clone()",
        "            merged[key] = worker_states[0][key].clone()",
        ("tests/methods/test_pgap.py",),
    ),
    Mutant(
        "gmp-last-prune-missed",
        "GMP's schedule is off by one at its end and stops short of the target sparsity",
        "growprune/methods/gmp.py",
        "(step - self.start_step) % self.frequency == 0 or step == self.end_step)",
        "(step - self.start_step) % self.frequency == 0)",
        ("tests/methods/test_gmp.py", "tests/methods/test_distributions.py"),
    ),
    Mutant(
        "empty-layers-accepted",
        "a sparsity that prunes a whole layer trains a cut network without a word",
        "growprune/methods/base.py",
        "        if not allow_empty_layers:\n            self._check_no_empty_layer()",
        "        pass",
        ("tests/methods/test_empty_layers.py",),
    ),
    Mutant(
        "diverged-state-checkpointed",
        "a checkpoint holding inf BatchNorm statistics replaces the good ones",
        "growprune/train/engine.py",
        "            if bad is not None:\n                raise self.diverged(",
        "            if False:\n                raise self.diverged(",
        ("tests/train/test_divergence.py", "-k", "buffers"),
    ),
    Mutant(
        "resume-without-rng",
        "a resumed run draws other random numbers than the uninterrupted one",
        "growprune/train/engine.py",
        '            _set_rng_state(payload["rng"])',
        '            payload["rng"]',
        ("tests/train/test_cli.py", "-k", "sigkill"),
    ),
    Mutant(
        "bf16-ignored",
        "training.precision: bf16 silently trains in fp32",
        "growprune/train/engine.py",
        '        if self.recipe.training.precision == "bf16":',
        "        if False:",
        ("tests/train/test_precision.py",),
    ),
    Mutant(
        "channels-last-ignored",
        "training.channels_last: true silently keeps the default layout",
        "growprune/train/engine.py",
        "        if cfg.channels_last:  # before the optimizer",
        "        if False:  # before the optimizer",
        ("tests/train/test_precision.py",),
    ),
)


def copy_repository(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for part in ("growprune", "tests"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")


def run_mutant(mutant: Mutant) -> tuple[str, float]:
    """('caught' | 'survived' | 'stale patch' | 'wrong import', seconds)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = Path(tmp)
        copy_repository(root)
        target = root / mutant.file
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return "stale patch", time.monotonic() - started
        target.write_text(text.replace(mutant.old, mutant.new))
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        imported = subprocess.run(
            [sys.executable, "-c", "import growprune; print(growprune.__file__)"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not imported.startswith(str(root)):
            return "wrong import", time.monotonic() - started
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        # pytest: 1 = tests failed (caught); 0 = all passed (survived); others = could not run.
        verdict = {0: "survived", 1: "caught"}.get(result.returncode, f"pytest exit {result.returncode}")
    return verdict, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the mutants whose name contains this")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.name]
    rows = []
    for mutant in chosen:
        verdict, seconds = run_mutant(mutant)
        rows.append((mutant, verdict, seconds))
        print(f"{mutant.name:30} {verdict:12} {seconds:6.1f} s", flush=True)
    print("\n| mutant | bug a user would hit | tests | result | time |\n|---|---|---|---|---|")
    for mutant, verdict, seconds in rows:
        print(f"| {mutant.name} | {mutant.bug} | `{' '.join(mutant.tests)}` | {verdict} | {seconds:.0f} s |")
    total = sum(seconds for _, _, seconds in rows)
    caught = sum(verdict == "caught" for _, verdict, _ in rows)
    print(f"\n{caught}/{len(rows)} caught in {total:.0f} s ({os.cpu_count()} CPUs)")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
