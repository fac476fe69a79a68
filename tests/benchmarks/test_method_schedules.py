"""The benchmarks build each method's schedule from its declarations (issue 28): a newly
registered method runs in the memory, quality and overhead benchmarks without editing them."""

from __future__ import annotations

import torch
from torch import nn

import growprune as gp
from growprune.methods import METHODS
from growprune.methods.settings import AtLeast, OfBudget, Part
from tests.methods.midway import midway_method

LatePrune = midway_method("lateprune_bench_test")


class Declared(LatePrune):  # type: ignore[misc, valid-type]
    method = "declared_bench_test"
    paper_schedule = {"prune_epoch": OfBudget(per=4)}
    short_run = {"prune_step": AtLeast(1, Part(4))}


def test_a_registered_method_runs_in_the_benchmarks_without_editing_them() -> None:
    from benchmarks import memory, overhead, quality

    gp.register_method(LatePrune)
    gp.register_method(Declared)
    try:
        # memory: the declared defaults for the measured steps, or the method's short run
        assert memory.schedule("lateprune_bench_test", 16) == {"prune_step": 8}
        assert memory.schedule("declared_bench_test", 16) == {"prune_step": 4}
        # quality: the recipe's method section, its keys the paper schedule's (none: the defaults)
        assert quality.method_section("lateprune_bench_test", 0.8, "uniform", 6, 100) == {
            "name": "lateprune_bench_test",
            "sparsity": 0.8,
            "distribution": "uniform",
        }
        assert quality.method_section("declared_bench_test", 0.8, "erk", 6, 100, partitions=3) == {
            "name": "declared_bench_test",
            "sparsity": 0.8,
            "distribution": "erk",
            "prune_epoch": 1.5,
        }
        # overhead: the steady phase, every schedule step out of reach
        model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
        sparsifier = overhead.growprune_method("lateprune_bench_test")(
            model, torch.optim.SGD(model.parameters(), lr=0.1)
        )
        assert sparsifier.prune_step == overhead.NEVER
        sparsifier.remove()
    finally:
        METHODS.pop("lateprune_bench_test", None)
        METHODS.pop("declared_bench_test", None)


def test_the_benchmark_modules_name_no_method() -> None:
    """The memory, quality and overhead schedules come from the registry: no built-in method's
    name is a string in their schedule code (overhead's 25M-transition study of C-GaP and
    RigL/SET, quality's C-GaP ablation study and its peer rigl-torch name theirs on purpose)."""
    import inspect

    from benchmarks import memory, overhead, quality

    for function in (memory.schedule, quality.method_section, overhead.growprune_method):
        source = inspect.getsource(function)
        assert not [name for name in METHODS if f'"{name}"' in source], function.__qualname__
