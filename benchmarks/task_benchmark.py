"""The one task benchmark: every method at equal compute on one task, each run a real engine run.

``benchmarks/detection.py``, ``partseg.py`` and ``translation.py`` are a :class:`TaskBenchmark`
each, declaring only what differs between tasks (the scores a row keeps, a few facts of the
recipe, the default sparsities and threads); the command line, the jobs, the runner and the rows
are this module's. Nothing here names a method or a task: the methods are those with a bundled
quick recipe of the task (``growprune/tasks/<task>/recipes/<task>/<method>-quick.yaml``, whose method section
is the method's quick schedule), ordered and told apart by the method registry
(:func:`benchmarks.common.method_order`, :func:`benchmarks.common.prunes`); the task is a
:data:`growprune.tasks.registry.TASKS` entry.

Tiers:
  quick  the task's bundled ``<method>-quick`` recipes (one setting of data, model and optimizer,
         the same epochs of compute for every method); ``cgap-quick`` is the one users run.
  full   the task's bundled recipes of the method at the sparsity (``dense``, ``gmp-80``, ...;
         where several train the same method at it, the first by name: translation's
         ``cgap-k2-80`` before ``cgap-k3-80``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    append_row,
    device_name,
    git_commit,
    load_average,
    machine,
    method_order,
    prunes,
    supports_pattern,
)
from benchmarks.engine_child import run_in_child
from growprune.sparsity.patterns import parse_pattern
from growprune.tasks.registry import TaskSpec, bundled_recipes, task_named

QUICK_SUFFIX = "-quick"

# What a run prunes to: a sparsity in (0, 1), or an N:M pattern such as "2:4" (N kept of every M).
Target = float | str


def _no_facts(recipe: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    del recipe, result
    return {}


def parse_target(text: str) -> Target:
    """``--sparsities`` item: a sparsity such as ``0.8``, or a pattern such as ``2:4`` (read by the
    library's own :func:`~growprune.sparsity.patterns.parse_pattern`)."""
    if ":" in text:
        try:
            return str(parse_pattern(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a sparsity (0.8) nor a pattern (2:4)"
        ) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"sparsity {text} is not between 0 and 1")
    return value


def target_sparsity(target: Target) -> float:
    """The fraction of weights a target prunes (``2:4``: 0.5)."""
    return parse_pattern(target).sparsity if isinstance(target, str) else target


def target_label(target: Target) -> str:
    """A target as the run names and the progress lines show it: ``80`` for 0.8, ``2:4``."""
    return target if isinstance(target, str) else f"{_percent(target)}"


def target_label_arg(target: Target) -> str:
    """A target as ``--sparsities`` takes it: ``0.8``, ``2:4``."""
    return target if isinstance(target, str) else f"{target:g}"


def _percent(sparsity: float) -> int:
    return int(round(sparsity * 100))


@functools.cache
def _bundled(task: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file stem, recipe) of every bundled recipe of a task (those in its folder), in name order."""
    folder = task_named(task).folder
    return tuple(
        (path.stem, yaml.safe_load(path.read_text()))
        for path in bundled_recipes().values()
        if folder in path.parents
    )


@dataclass(frozen=True)
class KeptRun:
    """A finished run whose final checkpoint :meth:`TaskBenchmark.keep_model` kept: the
    invocation's arguments, the job, the recipe it ran, the checkpoint and the run's row."""

    args: argparse.Namespace
    job: tuple[str, Target, int]
    recipe: dict[str, Any]
    checkpoint: Path
    row: dict[str, Any]


@dataclass(frozen=True)
class TaskBenchmark:
    """What one task's benchmark declares; see the module docstring for what it shares.

    ``task``: the registry name (also the folder of its bundled recipes and the name of its rows,
    ``benchmarks/results/<task>.jsonl``). ``scores``: the final record's scores each row keeps.
    ``facts``: the task's own row fields, from the run's recipe and final record. ``threads``:
    the default of ``--threads`` (0: torch's default). ``examples``: how many example outputs of
    the task (``Task.example_rows``) a row keeps.
    """

    task: str
    doc: str
    scores: tuple[str, ...]
    facts: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = _no_facts
    sparsities: tuple[Target, ...] = (0.8, 0.9)
    threads: int = 1
    examples: int = 0

    @property
    def spec(self) -> TaskSpec:
        return task_named(self.task)

    @property
    def results(self) -> Path:
        return RESULTS_DIR / f"{self.task}.jsonl"

    def _quick(self) -> dict[str, dict[str, Any]]:
        """The bundled quick recipe of each method, by method name."""
        found: dict[str, dict[str, Any]] = {}
        for stem, recipe in _bundled(self.task):
            name = recipe["method"]["name"]
            if stem == f"{name}{QUICK_SUFFIX}":
                found[name] = recipe
        return found

    def methods(self) -> tuple[str, ...]:
        """The methods with a quick recipe of this task, in the tables' order."""
        return tuple(method_order(self._quick(), lead_own_schedule=True))

    def quick_recipe(self, method: str, target: Target, seed: int) -> dict[str, Any]:
        """The task's quick recipe of ``method`` pruned to ``target`` (a sparsity or an N:M pattern;
        ignored by a method that prunes nothing), reseeded and named after the run."""
        recipe = yaml.safe_load(yaml.safe_dump(self._quick()[method]))  # a copy the caller may change
        if prunes(method):
            section = recipe["method"]
            if isinstance(target, str):
                section.pop("sparsity", None)
                section["pattern"] = target
            else:
                section.pop("pattern", None)
                section["sparsity"] = target
        recipe["name"] = f"{self.task}-quick-{method}-{target_label(target).replace(':', '')}"
        recipe.setdefault("training", {})["seed"] = seed
        return recipe

    def full_recipe(self, method: str, target: Target, seed: int) -> dict[str, Any]:
        """The task's full bundled recipe of ``method`` at ``target``, reseeded."""
        key = "pattern" if isinstance(target, str) else "sparsity"
        for stem, recipe in _bundled(self.task):
            section = recipe["method"]
            if (
                QUICK_SUFFIX not in stem
                and section["name"] == method
                and (not prunes(method) or section.get(key) == target)
            ):
                copy = yaml.safe_load(yaml.safe_dump(recipe))
                copy["training"]["seed"] = seed
                return copy
        raise SystemExit(f"no bundled {self.task} recipe trains {method} at {target_label(target)}")

    def recipe(self, tier: str, method: str, target: Target, seed: int) -> dict[str, Any]:
        return (self.quick_recipe if tier == "quick" else self.full_recipe)(method, target, seed)

    def jobs(self, methods: list[str], targets: list[Target], seeds: int) -> list[tuple[str, Target, int]]:
        """(method, target, seed) of every run: one run of a method that prunes nothing per seed; an
        N:M pattern only for the methods that can keep one (``supports_nm`` in the registry)."""
        return [
            (method, target, seed)
            for seed in range(seeds)
            for method in methods
            for target in (targets if prunes(method) else [0.0])
            if not isinstance(target, str) or supports_pattern(method)
        ]

    def parser(self) -> argparse.ArgumentParser:
        methods = self.methods()
        parser = argparse.ArgumentParser(description=self.doc.splitlines()[0])
        parser.add_argument("--tier", choices=("quick", "full"), default="quick")
        parser.add_argument("--methods", nargs="+", default=list(methods), choices=methods)
        parser.add_argument(
            "--sparsities",
            nargs="+",
            type=parse_target,
            help="sparsities (0.8) and N:M patterns (2:4) to prune to (default: "
            + " ".join(target_label_arg(t) for t in self.sparsities)
            + "; --smoke: 0.8)",
        )
        parser.add_argument("--seeds", type=int, default=1)
        parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (subprocesses)")
        parser.add_argument(
            "--threads",
            type=int,
            default=self.threads,
            help=f"torch threads per run (0: torch's default; default {self.threads})",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="recipe override for every run (e.g. optimizer.lr=0.02), recorded in the row",
        )
        parser.add_argument(
            "--out", type=Path, help=f"JSONL to append to (default {self.results.relative_to(ROOT)})"
        )
        parser.add_argument(
            "--smoke", action="store_true", help="tiny data slice, 2 methods, rows to a temp file"
        )
        return parser

    def row(
        self,
        tier: str,
        job: tuple[str, Target, int],
        recipe: dict[str, Any],
        result: dict[str, Any],
        where: dict[str, Any],
    ) -> dict[str, Any]:
        """The JSONL row of one finished run; ``where``: the invocation's provenance."""
        method, target, seed = job
        model = recipe["model"]
        return {
            "tier": tier,
            "model": f"{model['name']}(" + ",".join(f"{k}={v}" for k, v in model["args"].items()) + ")",
            **self.facts(recipe, result),
            "method": method,
            "sparsity": target_sparsity(target),
            **({"pattern": target} if isinstance(target, str) else {}),
            "seed": seed,
            "epochs": result["epochs"],
            **{key: result[key] for key in self.scores},
            "final_sparsity": result["sparsity"],
            "train_seconds": result["train_seconds"],
            "data_root": result["data_root"],
            "lr": recipe["optimizer"]["lr"],
            **where,
            "method_config": recipe["method"],
            **({"examples": result["examples"]} if self.examples else {}),
            "load_average_at_end": load_average(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def keep_model(self, args: argparse.Namespace, tier: str, job: tuple[str, Target, int]) -> Path | None:
        """Where to keep the final checkpoint of ``job`` for :meth:`after_run` (None: not kept)."""
        del args, tier, job
        return None

    def after_run(self, kept: KeptRun, emit: Callable[[dict[str, Any]], None]) -> None:
        """What a benchmark does with a kept model (its further rows go to ``emit``)."""
        del kept, emit

    def main(self, argv: list[str] | None = None) -> int:
        from growprune.train.recipe import apply_overrides

        args = self.parser().parse_args(argv)
        if args.sparsities is None:
            args.sparsities = [0.8] if args.smoke else list(self.sparsities)
        if args.smoke:  # the dense reference and the first sparse method of the table
            args.methods = list(self.methods()[:2])
            args.out = args.out or Path(tempfile.mkdtemp(prefix=f"gp-{self.task}-smoke-")) / "rows.jsonl"
        out: Path = args.out or self.results
        out.parent.mkdir(parents=True, exist_ok=True)
        overrides = dict(item.split("=", 1) for item in args.set)
        threads = args.threads or None
        tier = "smoke" if args.smoke else args.tier
        commit, dirty = git_commit("growprune", "benchmarks")
        device = device_name()
        lock = threading.Lock()

        def emit(row: dict[str, Any]) -> None:
            with lock:
                append_row(out, row)
                scores = self.spec.describe_scores({key: row[key] for key in self.scores})
                target = row.get("pattern") or row["sparsity"]
                print(
                    f"{row['method']:<9} {target_label(target):<4} seed {row['seed']}  {scores}  sparsity "
                    f"{row['final_sparsity']:.4f}  {row['train_seconds']:.0f} s",
                    flush=True,
                )

        def one(job: tuple[str, Target, int]) -> None:
            recipe = apply_overrides(self.recipe(args.tier, *job), list(args.set))
            where = {
                "overrides": overrides,
                "device": device,
                "commit": commit,
                "dirty": dirty,
                "threads": threads,
                "parallel_jobs": args.jobs,
                "machine": machine(),
            }
            started = time.monotonic()
            keep = self.keep_model(args, tier, job)
            result = run_in_child(recipe, args.smoke, threads, self.examples, keep)
            row = self.row(tier, job, recipe, result, where)
            row["wall_seconds"] = round(time.monotonic() - started, 1)
            emit(row)
            if keep is not None:
                self.after_run(KeptRun(args, job, recipe, keep, row), emit)

        jobs = self.jobs(args.methods, args.sparsities, args.seeds)
        print(f"{len(jobs)} runs -> {out}", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            failures = [f.exception() for f in [pool.submit(one, j) for j in jobs] if f.exception()]
        for err in failures:
            print(f"FAILED: {err}", file=sys.stderr)
        return 1 if failures else 0
