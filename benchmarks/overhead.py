"""Overhead benchmark: what does each method's masking cost per training step, and per mask change?

    python -m benchmarks.overhead                  # MLP + ResNet-20 steps, 25M transitions -> results
    python -m benchmarks.overhead --smoke --out /tmp/o.json   # seconds; what the test suite runs

Step time: one training step (forward, backward, ``optimizer.step()`` -- whose hooks do all of a
sparsifier's per-step work -- and the optional ``sparsifier.step()``)
of every method in its steady sparse phase (between mask updates), as a ratio to the plain
PyTorch step of the same model without any sparsifier. All methods run side by side in one
process on the same batch: each repetition visits every method once in a fresh random order,
runs a few steps of it, and the median over repetitions is kept, so load drifting on a shared
machine hits every method alike. ``torch.ao.pruning`` runs on the same layers: its
``WeightNormSparsifier`` on Linear layers and, because that sparsifier raises on 4-D conv
weights, its ``FakeSparsity`` parametrization (what ``BaseSparsifier.prepare`` installs) with a
magnitude mask on the conv layers.

Memory: bytes of every tensor a method keeps between steps (parameters, gradients, optimizer
state, masks and their cached same-dtype copies, method tensors such as ADMM's Z and U), and
on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps. On CPU there is no reliable
per-method allocation peak in one process; activations are the same for every method, so the
kept-state figure is where methods differ.

Transitions: one C-GaP prune + grow (a phase change) and one RigL drop/grow update on a ResNet-50
(25.6M parameters, 25.5M of them pruned). Mask changes run in the optimizer's post-step hook, so
a transition is timed as ``optimizer.step()`` on a transition step minus the plain SGD step of the
same model (median of several).

Writes ``benchmarks/results/overhead.json`` and a table on stdout; ``python -m benchmarks.make_results``
puts it in ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import growprune as gp
from benchmarks.common import RESULTS_DIR, ROOT, git_commit, machine, method_order, prunes
from growprune.models.registry import build_model
from growprune.sparsity.targets import find_targets

RESULTS = RESULTS_DIR / "overhead.json"
NEVER = 10**9  # a schedule step that is never reached: keeps a method in its steady phase
SPARSITY = 0.8


def make_model(name: str, smoke: bool) -> tuple[nn.Module, tuple[int, ...]]:
    """The benchmark models and their input shape (batch excluded)."""
    if name == "mlp":
        hidden = (64, 64) if smoke else (2048, 2048)
        return build_model("mlp", in_features=784, hidden=hidden, num_classes=10), (1, 28, 28)
    if name == "resnet20":
        return build_model("resnet20", in_channels=3, num_classes=10, width=0.25 if smoke else 1.0), (
            3,
            32,
            32,
        )
    raise ValueError(name)


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


# -- the methods, each in its steady sparse phase ---------------------------------------------
def growprune_method(name: str) -> Callable[[nn.Module, torch.optim.Optimizer], Any]:
    """``name`` in its steady sparse phase (``Sparsifier.steady_schedule``: e.g. GMP mid-ramp with
    its masks at half the sparsity, ADMM in its ADMM phase, whose penalty gradient is added every
    step -- the algorithm, not masking), or with no pruning for a method that prunes nothing."""
    cls = gp.methods.get_method(name)
    sparsity = SPARSITY if prunes(name) else 0.0
    kwargs = cls.steady_schedule(sparsity, NEVER)

    def attach(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        extra = dict(kwargs)
        if "partitions" in extra:  # K=4, or one partition per layer on the 3-layer MLP
            extra["partitions"] = min(extra["partitions"], len(find_targets(model)))
        return cls(model, optimizer, sparsity=sparsity, seed=0, **extra)

    return attach


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    keep = weight.numel() - round(sparsity * weight.numel())
    flat = weight.detach().abs().reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(keep).indices] = True
    return mask.view_as(weight)


def attach_torch_ao(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """torch.ao.pruning on the same layers growprune prunes (see the module docstring)."""
    from torch.ao.pruning import WeightNormSparsifier
    from torch.ao.pruning.sparsifier.utils import FakeSparsity
    from torch.nn.utils import parametrize

    del optimizer  # built afterwards over the parametrized model: see make_runner
    targets = find_targets(model)
    linear = [t for t in targets if isinstance(t.module, nn.Linear)]
    sparsifier = None
    if linear:
        sparsifier = WeightNormSparsifier(
            sparsity_level=SPARSITY, sparse_block_shape=(1, 1), zeros_per_block=1
        )
        sparsifier.prepare(model, [{"tensor_fqn": t.name} for t in linear])
        sparsifier.step()
    for t in targets:
        if isinstance(t.module, nn.Linear):
            continue
        parametrize.register_parametrization(
            t.module, t.leaf, FakeSparsity(magnitude_mask(getattr(t.module, t.leaf), SPARSITY))
        )
    return sparsifier


class Runner:
    """One method on its own copy of the model, ready to take training steps."""

    def __init__(self, name: str, template: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        import copy

        self.name = name
        self.model = copy.deepcopy(template).to(x.device)
        self.x, self.y = x, y
        self.sparsifier: Any = None
        if name == "torch.ao":
            attach_torch_ao(self.model, None)  # type: ignore[arg-type]
            self.optimizer = optimizer_for(self.model)
        else:
            self.optimizer = optimizer_for(self.model)
            if name != "plain":
                self.sparsifier = growprune_method(name)(self.model, self.optimizer)
        self.uses_sparsifier_step = self.sparsifier is not None and name != "torch.ao"

    def step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.uses_sparsifier_step:
            self.sparsifier.step()

    def state_bytes(self) -> int:
        """Bytes of the tensors this method keeps between steps, each storage counted once."""
        seen: set[int] = set()
        total = 0

        def add(obj: Any, depth: int = 0) -> None:
            nonlocal total
            if isinstance(obj, torch.Tensor):
                storage = obj.untyped_storage()
                if storage.data_ptr() not in seen and storage.nbytes():
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
            elif depth < 4 and isinstance(obj, dict):
                for value in obj.values():
                    add(value, depth + 1)
            elif depth < 4 and isinstance(obj, list | tuple):
                for value in obj:
                    add(value, depth + 1)

        add(list(self.model.parameters()))
        add(list(self.model.buffers()))
        add([p.grad for p in self.model.parameters() if p.grad is not None])
        add(list(self.optimizer.state.values()))
        if self.sparsifier is not None and self.uses_sparsifier_step:
            add(vars(self.sparsifier))
            add(vars(self.sparsifier.mask_set))
        return total


def time_steps(
    model_name: str,
    methods: list[str],
    batch: int,
    reps: int,
    steps: int,
    warmup: int,
    smoke: bool,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds per step of each method, interleaved; ratios to the plain step."""
    torch.manual_seed(seed)
    template, shape = make_model(model_name, smoke)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    runners = {name: Runner(name, template, x, y) for name in ["plain", *methods]}
    for runner in runners.values():
        for _ in range(warmup):
            runner.step()
    per_rep: dict[str, list[float]] = {name: [] for name in runners}
    peak: dict[str, int] = {}
    order = list(runners)
    rng = random.Random(seed)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            runner = runners[name]
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            for _ in range(steps):
                runner.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated())
            per_rep[name].append((time.perf_counter() - start) / steps)
    medians = {name: statistics.median(times) for name, times in per_rep.items()}
    base = medians["plain"]
    # The masking work itself: optimizer.step() alone (gradients are still there from the last
    # step), whose hooks hold all of a sparsifier's per-step work, minus the plain optimizer step,
    # interleaved so that load drifts hit both alike.
    opt_times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(3, 5 * steps)):
        rng.shuffle(order)
        for name in order:
            runner = runners[name]
            start = time.perf_counter()
            runner.optimizer.step()
            if runner.uses_sparsifier_step:
                runner.sparsifier.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            opt_times[name].append(time.perf_counter() - start)
    plain_opt = statistics.median(opt_times["plain"])
    masking = {
        name: max(0.0, statistics.median(opt_times[name]) - plain_opt)
        for name, runner in runners.items()
        if runner.uses_sparsifier_step
    }
    rows = {}
    for name in runners:
        # ratio of medians, and the median of per-repetition ratios (same rep, same load)
        rep_ratios = [t / b for t, b in zip(per_rep[name], per_rep["plain"])]
        rows[name] = {
            "ms_per_step": 1000 * medians[name],
            "ratio_to_dense": medians[name] / base,
            "median_rep_ratio": statistics.median(rep_ratios),
            "state_mib": runners[name].state_bytes() / 2**20,
            "cuda_peak_mib": peak[name] / 2**20 if name in peak else None,
            "masking_ms": 1000 * masking[name] if name in masking else None,
            "component_ratio": (base + masking[name]) / base if name in masking else None,
        }
    params = sum(p.numel() for p in template.parameters())
    return {"params": params, "batch": batch, "reps": reps, "steps_per_rep": steps, "methods": rows}


# -- transitions on a 25M-parameter model -----------------------------------------------------
def fill_grads(model: nn.Module, generator: torch.Generator) -> None:
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator, device="cpu").to(p.device)


def time_transitions(repeats: int, smoke: bool) -> dict[str, Any]:
    """Seconds of one C-GaP prune+grow and one RigL (and SET) update on ResNet-50."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if smoke:
        model_factory = lambda: build_model("resnet20", width=0.25)  # noqa: E731
    else:
        model_factory = lambda: build_model("resnet50", num_classes=1000)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # The plain SGD step of this model: subtracted from the hooked steps below.
    model = model_factory().to(device)
    out["params"] = sum(p.numel() for p in model.parameters())
    optimizer = optimizer_for(model)
    plain = []
    for _ in range(repeats):
        fill_grads(model, generator)
        sync()
        start = time.perf_counter()
        optimizer.step()
        sync()
        plain.append(time.perf_counter() - start)
    plain_step = statistics.median(plain)
    out["plain_sgd_step_seconds"] = plain_step
    del model, optimizer

    # C-GaP: steps_per_phase=1 makes every optimizer step a phase change.
    model = model_factory().to(device)
    optimizer = optimizer_for(model)
    cgap = gp.CGaP(
        model, optimizer, sparsity=SPARSITY, partitions=4, steps_per_phase=1, rounds=repeats + 1, seed=0
    )
    out["pruned_params"] = sum(cgap.numels.values())
    times, select, partition_sizes = [], [], []
    fill_grads(model, generator)
    optimizer.step()  # momentum buffers exist, as in training (reset_optimizer="all" drops them)
    for _ in range(repeats):
        fill_grads(model, generator)
        # The part of a transition that is the prune decision itself: exact per-layer magnitude
        # thresholds of the partition about to be pruned (computed, not installed).
        part = cgap.partitions[cgap.dense_partition_at(cgap.step_count)]
        partition_sizes.append(sum(cgap.numels[n] for n in part))
        sync()
        start = time.perf_counter()
        cgap.compute_masks(part, cgap.magnitude_scores(part))
        sync()
        select.append(time.perf_counter() - start)
        start = time.perf_counter()
        optimizer.step()  # the transition runs in its post-step hook
        sync()
        times.append(time.perf_counter() - start - plain_step)
    out["cgap_transition_seconds"] = statistics.median(times)
    out["cgap_transition_all"] = times
    out["cgap_select_seconds"] = statistics.median(select)
    out["cgap_select_all"] = select
    out["cgap_pruned_partition_params"] = partition_sizes
    cgap.remove()
    del model, optimizer, cgap

    update_repeats = min(repeats, 3)  # a RigL/SET update of 25M weights takes seconds on a CPU
    for name, cls in (("rigl", gp.RigL), ("set", gp.SET)):
        model = model_factory().to(device)
        optimizer = optimizer_for(model)
        sparsifier = cls(model, optimizer, sparsity=SPARSITY, end_step=NEVER, update_interval=1, seed=0)
        times = []
        for _ in range(update_repeats):
            fill_grads(model, generator)
            sync()
            start = time.perf_counter()
            optimizer.step()  # gradient capture in the pre-step hook, the update in the post-step one
            sync()
            times.append(time.perf_counter() - start - plain_step)
        out[f"{name}_update_seconds"] = statistics.median(times)
        out[f"{name}_update_all"] = times
        sparsifier.remove()
        del model, optimizer, sparsifier
    return out


# -- the record -------------------------------------------------------------------------------
def print_table(result: dict[str, Any]) -> None:
    for model, data in result["steps"].items():
        print(
            f"\n{model} ({data['params'] / 1e6:.2f}M params, batch {data['batch']}, "
            f"median of {data['reps']} interleaved repetitions x {data['steps_per_rep']} steps)"
        )
        print(
            f"{'method':<10} {'ms/step':>9} {'x plain':>8} {'rep-median':>11} {'state MiB':>10} {'mask':>8}"
        )
        for name, row in data["methods"].items():
            print(
                f"{name:<10} {row['ms_per_step']:9.2f} {row['ratio_to_dense']:8.3f} "
                f"{row['median_rep_ratio']:11.3f} {row['state_mib']:10.1f} "
                + (f"{row['masking_ms']:8.2f}" if row.get("masking_ms") is not None else f"{'':>8}")
            )
    if "transitions" not in result:
        return
    t = result["transitions"]
    print(
        f"\n25M transitions ({t['params'] / 1e6:.1f}M params, best of the thread counts: {t['threads']}): "
        "C-GaP prune+grow "
        f"{t['cgap_transition_seconds']:.3f} s, RigL update {t['rigl_update_seconds']:.3f} s, "
        f"SET update {t['set_update_seconds']:.3f} s"
    )
    for threads, t in result["transitions_by_threads"].items():
        print(
            f"  {threads} thread(s): C-GaP {t['cgap_transition_seconds']:.3f} s (of which selecting the "
            f"pruned weights {t['cgap_select_seconds']:.3f} s), RigL {t['rigl_update_seconds']:.3f} s, "
            f"SET {t['set_update_seconds']:.3f} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, seconds (tests); needs --out")
    parser.add_argument("--reps", type=int, default=9, help="interleaved repetitions (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help=f"JSON to write (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("steps", "transitions"),
        default=["steps", "transitions"],
        help="what to measure; the other part is kept from an existing --out file",
    )
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke writes only where --out says (never the committed results)")
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    methods = [*method_order(gp.METHODS), "torch.ao"]
    reps = 1 if args.smoke else args.reps
    started = time.time()
    out = args.out or RESULTS
    previous = (
        json.loads(out.read_text()) if out.exists() and set(args.parts) != {"steps", "transitions"} else {}
    )
    commit, dirty = git_commit("growprune", "benchmarks")
    result: dict[str, Any] = {**previous, "commit": commit, "dirty": dirty, "sparsity": SPARSITY}
    result.setdefault("history", [])
    if "steps" in args.parts:
        if "steps" in previous:  # keep the earlier measurement on record, with its settings
            result["history"].append(
                {
                    **{k: previous.get(k) for k in ("steps", "date", "commit", "mlp", "resnet20")},
                    "steps_machine": previous.get("steps_machine") or previous.get("machine"),
                }
            )
        result["steps"] = {}
        result["steps_machine"] = machine()
        for model, steps in (("mlp", 10), ("resnet20", 4)):
            result["steps"][model] = time_steps(
                model,
                methods,
                128 if not args.smoke else 16,
                reps,
                2 if args.smoke else steps,
                1 if args.smoke else 3,
                args.smoke,
            )
            # the summary: {"model": {"method": ratio_to_dense}}
            result[model] = {m: row["ratio_to_dense"] for m, row in result["steps"][model]["methods"].items()}
    if "transitions" in args.parts:
        # Transitions at each thread count: on a shared 2-core machine, 2 OpenMP threads can be much
        # slower than 1 when the other core is busy, so both are recorded; the headline is the faster.
        result["transitions_machine"] = machine()
        default_threads = torch.get_num_threads()
        by_threads = {}
        for threads in [1] if args.smoke else sorted({1, default_threads}):
            torch.set_num_threads(threads)
            by_threads[str(threads)] = time_transitions(2 if args.smoke else 5, args.smoke)
        torch.set_num_threads(default_threads)
        best = min(by_threads, key=lambda k: by_threads[k]["cgap_transition_seconds"])
        result["transitions_by_threads"] = by_threads
        result["transitions"] = {**by_threads[best], "threads": int(best)}
        result["transition_seconds_25M"] = result["transitions"]["cgap_transition_seconds"]
        result["rigl_update_seconds_25M"] = result["transitions"]["rigl_update_seconds"]
    result["machine"] = result.get("steps_machine") or machine()
    result["seconds"] = time.time() - started
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
