"""The GPU suite: one call on one CUDA GPU, at most 9 minutes, three parts.

    python benchmarks/gpu_suite.py            # one CUDA GPU, ~16 CPU cores: rows, log, RESULTS.md
    python benchmarks/gpu_suite.py --plan     # the runs and the time estimate, with its reasoning
    python benchmarks/gpu_suite.py --smoke    # the same code path on the CPU, < 2 min, temp outputs
    python -m benchmarks.gpu_suite ...        # the same

(a) the full quality tier -- ResNet-20 on Fashion-MNIST, 30 epochs, dense / GMP / RigL /
rigl-torch / C-GaP / P-GaP at 80% and 90% uniform, 3 seeds: 33 runs -- as concurrent processes
on the one GPU, each the very child process, recipe and row of ``benchmarks.quality`` (tier
``full``: batch 512, bf16 autocast, channels-last; the data lives on the GPU and is augmented
there). Rows are appended to ``results/quality.jsonl`` tagged with the GPU's name; runs already
there are skipped. (b) the 2:4 semi-structured rows of ``benchmarks.inference`` on that GPU,
first and alone (they time kernels): ``results/inference_cuda.json`` and RESULTS.md's section
``inference-cuda``. (c) ``pytest -m cuda``, in the pool beside the training runs. Then
``benchmarks.make_results`` regenerates RESULTS.md; the log is ``results/gpu_suite.log`` and the
measured times, which ``--plan`` uses next time, ``results/gpu_suite.json``.

The deadline: a job is launched only if the cost model (calibrated on the runs finished so far)
says it ends before the deadline less the time the last step needs; whatever still runs then is
stopped. Every run not done is listed as left. Exit code: 0 everything done, 1 something failed,
3 nothing failed but runs were left, 2 the suite cannot start (no CUDA without ``--smoke``,
rigl-torch, pytest or the data missing): one line on stderr, nothing falls back.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/gpu_suite.py`: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, RESULTS_MD, ROOT, append_row  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    TIERS,
    RunSpec,
    Tier,
    build_recipe_dict,
    child_command,
    child_result,
    existing_keys,
    make_row,
    provenance,
    recipe_epochs_of_compute,
    run_name,
    steps_per_epoch,
    table_specs,
)

MINUTES = 9.0
SMOKE_MINUTES = 1.9
SUITE_METHODS = ("dense", "gmp", "rigl", "rigl-torch", "cgap", "pgap")
SUITE_SPARSITIES = (0.8, 0.9)
GIB = 2**30
NO_KERNEL = ("detach", "empty", "empty_like", "empty_strided", "as_strided_", "set_")
LOG_NAME, SUMMARY_NAME = "gpu_suite.log", "gpu_suite.json"


class SuiteError(RuntimeError):
    """The suite cannot start here (exit code 2, one line)."""


# -- what runs ------------------------------------------------------------------------------------
def suite_tier(smoke: bool) -> Tier:
    """The full tier's uniform rows (the GPU suite's share of it); with ``smoke`` the same settings
    (bf16 autocast, channels-last) on a tiny CNN and synthetic images, 160 steps per run: enough
    for RigL's and rigl-torch's updates (every 100 steps) to happen."""
    full = dataclasses.replace(TIERS["full"], distributions=("uniform",))
    if not smoke:
        return full
    return dataclasses.replace(
        full,
        model="small_cnn",
        model_args={"width": 4},
        epochs=5,
        seeds=(0,),
        dataset="synthetic_images",
        data_args={"n_train": 512, "n_test": 256},
        batch_size=16,
        lr=0.1,
        smoke=True,
    )


def suite_specs(tier: Tier, smoke: bool) -> list[RunSpec]:
    """Seed by seed (dense, then 80%, then 90%): a cut leaves whole seeds missing, not methods.
    Every run is pinned to its device, so a child that does not see the GPU fails, never falls
    back to the CPU."""
    methods = list(SUITE_METHODS)
    if smoke and not rigl_torch_installed():
        methods.remove("rigl-torch")  # the smoke checks code paths; the GPU suite requires it
    sparsities = [0.8] if smoke else list(SUITE_SPARSITIES)
    device = {"training.device": "cpu" if smoke else "cuda"}
    return [dataclasses.replace(spec, overrides=device) for spec in table_specs(tier, methods, sparsities)]


def rigl_torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("rigl_torch") is not None


# -- the cost model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rates:
    """The speeds the time estimate multiplies: of the machine the suite is meant for.

    ``gpu``: host (dispatching ops) and device (running them) overlap and every process shares the
    one device; otherwise the work is the CPU's own and processes share ``cores``.
    """

    label: str
    gpu: bool
    kernel_us: float  # device time per kernel: launch gap plus a small kernel's run
    tflops: float  # effective rate of the convolutions' and matmuls' arithmetic
    host_us: float  # CPU time for one process to dispatch one op (eager PyTorch)
    sharing: float  # share of the device's time concurrent processes get together (time-slicing)
    cores: int  # CPU cores for the pool
    start_s: float  # a run's start and end: python, torch, CUDA context, data to the device, saves
    stagger_s: float  # launches at least this far apart, so runs do not start and end in lockstep
    gib_per_process: float  # device memory of one run (pool size)
    tests_s: float  # pytest -m cuda, collection included
    inference_s: float  # the inference rows
    inference_cap_s: float  # the inference is stopped after this
    finish_s: float  # make_results and the summary, reserved before the deadline
    why: tuple[str, ...] = ()


H200 = Rates(
    label="one H200-class GPU (141 GB HBM3e, 4.8 TB/s), 16 CPU cores",
    gpu=True,
    kernel_us=3.0,
    tflops=60.0,
    host_us=10.0,
    sharing=0.8,
    cores=16,
    start_s=12.0,
    stagger_s=1.0,
    gib_per_process=2.0,
    tests_s=60.0,
    inference_s=40.0,
    inference_cap_s=150.0,
    finish_s=15.0,
    why=(
        "kernel 3 us: back-to-back small kernels on an H100/H200 take ~1 us of launch gap plus a few "
        "us of run at these sizes (a 512x16x28x28 bf16 activation is 13 MB: ~3 us at 4.8 TB/s)",
        "60 TFLOPS: cuDNN's bf16 tensor-core convolutions reach a small fraction of the ~990 TFLOPS "
        "peak at 16-64 channels and 7-28 px; 6% of peak is the assumption",
        "host 10 us per op: eager PyTorch dispatch + launch on a server CPU, one process per core",
        "ops counted with SGD's foreach implementation, its default on CUDA (one op per update for all "
        "tensors; the CPU default loops over them)",
        "sharing 0.8: processes on one GPU without MPS are time-sliced; a fifth is assumed lost to "
        "context switches and idle gaps",
        "start 12 s: python, imports and the trainer built (Fashion-MNIST decoded and checked, ResNet-20) "
        "take 3 s here (measured, 2-core CPU); ~5 s are assumed for the CUDA context, cuDNN's lazy "
        "loading and the first steps, ~1 s for the final evaluation and save, the rest for contention",
        "stagger 1 s between launches: equal runs sharing the GPU equally would otherwise start and end "
        "in lockstep, leaving the GPU idle while a whole wave starts up",
        "inference 40 s: the same two models built, pruned and timed at 3 repeats take 7.6 s on this CPU "
        "(measured); the GPU adds its CUDA start-up and the 2:4 kernels' first use, at 15 repeats",
        "make_results 15 s: 2 s measured here (tables and the accuracy plot)",
        "2 GiB per process: CUDA context (~0.5 GiB), the data (0.2 GiB), ResNet-20 activations at "
        "batch 512 in bf16 (~0.7 GiB) and the caching allocator's slack",
    ),
)
# The smoke test's CPU (2 shared cores here): measured loosely, used for its deadline only.
CPU_SMOKE = Rates(
    label="this machine's CPU (the smoke path)",
    gpu=False,
    kernel_us=0.0,
    tflops=0.02,
    host_us=20.0,
    sharing=1.0,
    cores=os.cpu_count() or 1,
    start_s=8.0,
    stagger_s=0.5,
    gib_per_process=0.0,
    tests_s=20.0,
    inference_s=15.0,
    inference_cap_s=60.0,
    finish_s=10.0,
)


@dataclass(frozen=True)
class StepCost:
    """One training step and one evaluation batch of the suite's model, counted (not timed)."""

    ops: int  # ops dispatched by one optimizer step: forward, loss, backward, SGD, masking
    flops: float  # at the tier's batch size
    eval_ops: int  # one evaluation batch
    eval_flops_per_item: float
    batch_size: int
    counted: str

    def host_device_s(
        self, rates: Rates, steps: int, epochs: float, n_eval: int, eval_batch: int
    ) -> tuple[float, float]:
        """(host s, device s) of a whole run alone: training steps plus one evaluation per epoch."""
        eval_batches = math.ceil(epochs) * math.ceil(n_eval / eval_batch)
        ops = steps * self.ops + eval_batches * self.eval_ops
        flops = steps * self.flops + math.ceil(epochs) * n_eval * self.eval_flops_per_item
        return ops * rates.host_us * 1e-6, ops * rates.kernel_us * 1e-6 + flops / (rates.tflops * 1e12)


def count_step_cost(tier: Tier) -> StepCost:
    """Ops and FLOPs of the tier's training step, counted on this machine's CPU.

    The engine's own ``train_step`` (a RigL step: growprune masks each gradient as it is
    accumulated, the most ops of the methods) runs under a dispatch counter and torch's FLOP
    counter at batch 16, on synthetic images of the data's shape; FLOPs scale with the batch, the
    op count does not. SGD runs its foreach implementation, as it does by default on a GPU; a
    foreach op launches about one kernel per 100 tensors. Allocations, views and profiler marks
    launch no kernel and are not counted.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode
    from tqdm import tqdm

    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    class OpCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = func.__name__.split(".")[0]
            if not func.is_view and name not in NO_KERNEL and not name.startswith("_record_function"):
                self.ops += 1
            return func(*args, **(kwargs or {}))

    small = 16
    probe = dataclasses.replace(
        tier, dataset="synthetic_images", data_args={"n_train": 2 * small, "n_test": small}, batch_size=small
    )
    spec = RunSpec(tier.name, "rigl", 0.8, "uniform", 0, overrides={"training.device": "cpu"})
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="gp-gpu-suite-count-") as tmp:
        trainer = Trainer(
            validate_recipe(build_recipe_dict(spec, probe, 1)), Path(tmp) / "run", progress=False
        )
        trainer.bar = tqdm(disable=True)
        for group in trainer.optimizer.param_groups:
            group["foreach"] = True
        batch = next(iter(trainer.train_loader.iter_from(0)))
        trainer.train_step(batch)  # the first step allocates optimizer state
        with OpCounter() as ops, FlopCounterMode(display=False) as flops:
            trainer.train_step(batch)
        with OpCounter() as eval_ops, FlopCounterMode(display=False) as eval_flops:
            trainer.evaluate()
    torch.set_num_threads(threads)
    return StepCost(
        ops=ops.ops,
        flops=flops.get_total_flops() * tier.batch_size / small,
        eval_ops=eval_ops.ops,
        eval_flops_per_item=eval_flops.get_total_flops() / small,
        batch_size=tier.batch_size,
        counted=f"{tier.model}, a RigL step of the engine, counted on this machine's CPU at batch {small}",
    )


def job_rate(host_s: float, device_s: float, n: int, rates: Rates) -> float:
    """Fraction of a job's work done per second while ``n`` jobs train at once."""
    if host_s <= 0 and device_s <= 0:
        return math.inf
    if not rates.gpu:  # the work is the CPU's: n processes share the cores
        return min(1.0, rates.cores / n) / (host_s + device_s)
    limits = [1 / host_s, rates.cores / (n * host_s)] if host_s > 0 else []
    if device_s > 0:
        limits.append(rates.sharing / (n * device_s))  # the one device, shared
    return min(limits)


# -- jobs and the pool ------------------------------------------------------------------------------
@dataclass
class Job:
    """One process of the pool: a training run or the CUDA tests."""

    name: str
    kind: str  # "train" or "tests"
    argv: list[str]
    env: dict[str, str] | None = None
    fixed_s: float = 0.0  # start-up (tests: the whole job)
    host_s: float = 0.0  # the training work alone: CPU side
    device_s: float = 0.0  # and device side
    steps: int = 0
    spec: RunSpec | None = None
    recipe: dict[str, Any] | None = None
    status: str = "queued"  # running, done, failed, stopped (at the deadline), left (never started)
    detail: str = ""
    started: float = 0.0
    ended: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    out: Path | None = None
    err: Path | None = None
    concurrency: list[int] = field(default_factory=list)
    result: dict[str, Any] | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started) if self.started else 0.0

    def summary(self) -> dict[str, Any]:
        extra = {}
        if self.result:
            extra = {
                k: self.result[k] for k in ("train_seconds", "top1", "gpu_max_memory_mib") if k in self.result
            }
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "seconds": round(self.seconds, 1),
            "steps": self.steps,
            "mean_concurrency": round(statistics.fmean(self.concurrency), 2) if self.concurrency else None,
            "detail": self.detail,
            **extra,
        }


class Estimator:
    """How long a job launched now would take; calibrated by every training run that finishes
    (observed training seconds over the model's, at the concurrency the run actually had)."""

    def __init__(self, rates: Rates, calibration: float = 1.0, start_s: float | None = None) -> None:
        self.rates = rates
        self.ratios: list[float] = [calibration] if calibration != 1.0 else []
        self.starts: list[float] = [start_s] if start_s is not None else []

    @property
    def calibration(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0

    @property
    def start_s(self) -> float:
        return statistics.median(self.starts) if self.starts else self.rates.start_s

    def work_seconds(self, job: Job, n: int) -> float:
        rate = job_rate(job.host_s, job.device_s, n, self.rates)
        return 0.0 if math.isinf(rate) else self.calibration / rate

    def seconds(self, job: Job, n: int) -> float:
        if job.kind != "train":
            return job.fixed_s
        return self.start_s + self.work_seconds(job, n)

    def observe(self, job: Job) -> None:
        if job.kind != "train" or not job.result or not job.concurrency:
            return
        mean_n = max(1, round(statistics.fmean(job.concurrency)))
        rate = job_rate(job.host_s, job.device_s, mean_n, self.rates)
        modelled = 1 / rate
        self.ratios.append(job.result["train_seconds"] / modelled)
        self.starts.append(max(0.0, job.seconds - job.result["train_seconds"]))


class Pool:
    """Run jobs as concurrent processes, at most ``slots`` at once, never past ``hard_stop``.

    Launches are at least ``stagger_s`` apart. A job is launched only if the estimator says it
    ends by ``hard_stop`` at the concurrency it would join; at ``hard_stop`` every job still
    running is stopped (SIGTERM to its process group, SIGKILL 5 s later) and every job not
    started is marked left.
    """

    def __init__(
        self,
        slots: int,
        hard_stop: float,
        estimator: Estimator,
        work_dir: Path,
        log: Callable[[str], None],
        on_finish: Callable[[Job], None],
        poll_s: float = 0.2,
        stagger_s: float = 0.0,
    ) -> None:
        self.slots, self.hard_stop, self.estimator, self.stagger_s = slots, hard_stop, estimator, stagger_s
        self.work_dir, self.log, self.on_finish, self.poll_s = work_dir, log, on_finish, poll_s

    def run(self, jobs: Sequence[Job]) -> None:
        queue, active = list(jobs), []
        last_launch = -math.inf
        while queue or active:
            for job in [j for j in active if j.proc is not None and j.proc.poll() is not None]:
                active.remove(job)
                job.ended = time.monotonic()
                try:
                    self.on_finish(job)
                except Exception as err:  # a result that cannot be read is that job's failure
                    job.status, job.detail = "failed", f"{type(err).__name__}: {err}"
                    self.log(f"failed {job.name}: {job.detail}")
                self.estimator.observe(job)
            now = time.monotonic()
            if now >= self.hard_stop:
                self._stop(active)
                active = []
                for job in queue:
                    job.status = "left"
                    job.detail = job.detail or "not started: the deadline came first"
                break
            for job in list(queue):
                if len(active) >= self.slots or now - last_launch < self.stagger_s:
                    break
                n_after = 1 + sum(1 for j in active if j.kind == "train") if job.kind == "train" else 1
                estimate = self.estimator.seconds(job, n_after)
                if now + estimate > self.hard_stop:
                    job.detail = (
                        f"not started: estimated {estimate:.0f} s, {self.hard_stop - now:.0f} s left "
                        "before the deadline"
                    )
                    continue  # a shorter job behind it may still fit
                queue.remove(job)
                self._launch(job)
                active.append(job)
                last_launch = now
            if not active and queue and now - last_launch >= self.stagger_s:  # and nothing left fits
                for job in queue:
                    job.status = "left"
                break
            training = sum(1 for j in active if j.kind == "train")
            for job in active:
                job.concurrency.append(training if job.kind == "train" else 0)
            time.sleep(self.poll_s)

    def _launch(self, job: Job) -> None:
        job.out, job.err = self.work_dir / f"{job.name}.out", self.work_dir / f"{job.name}.err"
        with job.out.open("wb") as out, job.err.open("wb") as err:
            job.proc = subprocess.Popen(
                job.argv, stdout=out, stderr=err, cwd=ROOT, env=job.env, start_new_session=True
            )
        job.status, job.started = "running", time.monotonic()
        self.log(f"start  {job.name} (pid {job.proc.pid})")

    def _stop(self, jobs: list[Job]) -> None:
        """SIGTERM to every job's process group (the engine checkpoints and exits), SIGKILL to
        whatever still runs 5 s later."""
        for job in jobs:
            assert job.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.proc.pid, signal.SIGTERM)
        grace = time.monotonic() + 5
        for job in jobs:
            assert job.proc is not None
            try:
                job.proc.wait(timeout=max(0.0, grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()
            job.ended = time.monotonic()
            job.status, job.detail = "stopped", f"stopped at the deadline after {job.seconds:.0f} s"
            self.log(f"stop   {job.name}: {job.detail}")


# -- the plan ---------------------------------------------------------------------------------------
@dataclass
class Plan:
    smoke: bool
    tier: Tier
    rates: Rates
    cost: StepCost
    slots: int
    minutes: float
    jobs: list[Job]
    skipped: list[RunSpec]
    out_dir: Path | None
    calibration: float = 1.0
    start_s: float | None = None
    measured: str = ""

    @property
    def train_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.kind == "train"]


def pool_slots(rates: Rates, n_jobs: int, free_gib: float | None, jobs: int | None) -> tuple[int, str]:
    """How many processes share the device: one per CPU core but one (this driver), within the
    device's memory; at least 2."""
    if jobs:
        return jobs, f"--jobs {jobs}"
    by_cores = max(1, rates.cores - 1)
    why = f"{rates.cores} CPU cores - 1 for this driver = {by_cores}"
    slots = by_cores
    if free_gib is not None and rates.gib_per_process > 0:
        by_memory = int(free_gib // rates.gib_per_process)
        why += f"; {free_gib:.0f} GiB free / {rates.gib_per_process:g} GiB per run = {by_memory}"
        slots = min(slots, by_memory)
    slots = max(2, min(slots, n_jobs))
    return slots, why + f"; {n_jobs} jobs"


def tests_job(rates: Rates) -> Job:
    """``pytest -m cuda``: the CUDA-only tests (on a CPU they skip)."""
    argv = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "tests"]
    return Job(
        "cuda-tests", "tests", argv, env={**os.environ, "PYTHONPATH": str(ROOT)}, fixed_s=rates.tests_s
    )


def build_plan(
    smoke: bool,
    out_dir: Path | None,
    minutes: float,
    jobs: int | None = None,
    rates: Rates | None = None,
    free_gib: float | None = None,
) -> Plan:
    from growprune.train.recipe import validate_recipe

    tier = suite_tier(smoke)
    rates = rates or (CPU_SMOKE if smoke else H200)
    cost = count_step_cost(tier)
    done = existing_keys(out_dir / "quality.jsonl") if out_dir is not None else set()
    specs = suite_specs(tier, smoke)
    todo = [s for s in specs if s.key() not in done]
    n_test = tier.data_args.get("n_test", 10000)
    train_jobs = []
    for spec in todo:
        argv, env, recipe = child_command(spec, tier, 1)
        epochs = recipe_epochs_of_compute(validate_recipe(recipe))
        steps = round(epochs * steps_per_epoch(tier))
        host_s, device_s = cost.host_device_s(rates, steps, epochs, n_test, 1000)
        train_jobs.append(
            Job(
                run_name(spec),
                "train",
                argv,
                env=env,
                fixed_s=rates.start_s,
                host_s=host_s,
                device_s=device_s,
                steps=steps,
                spec=spec,
                recipe=recipe,
            )
        )
    all_jobs = [tests_job(rates), *train_jobs]
    slots, _ = pool_slots(rates, len(all_jobs), free_gib, jobs)
    plan = Plan(
        smoke, tier, rates, cost, slots, minutes, all_jobs, [s for s in specs if s.key() in done], out_dir
    )
    measured = read_measured(out_dir / SUMMARY_NAME, smoke) if out_dir is not None else None
    if measured:
        plan.calibration = measured["calibration"]
        plan.start_s = measured["start_s"]
        plan.measured = measured["text"]
    return plan


def read_measured(path: Path, smoke: bool) -> dict[str, Any] | None:
    """The calibration of the last real run of this kind (GPU, or smoke), if one was recorded."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if bool(data.get("smoke")) != smoke or not data.get("calibration", {}).get("runs"):
        return None
    cal = data["calibration"]
    text = (
        f"measured on {data['device']} at commit {data['commit'][:10]} ({data['date']}): "
        f"{cal['runs']} runs took {cal['train']:.2f}x the modelled training time, start-up "
        f"{cal['start_s']:.0f} s"
    )
    return {"calibration": cal["train"], "start_s": cal["start_s"], "text": text}


def simulate(plan: Plan) -> dict[str, tuple[float, float]]:
    """(start, end) of every job in the pool, in seconds from the pool's start: processor sharing
    in 0.25 s ticks, the jobs launched in order as slots free up, ``stagger_s`` apart."""
    est = Estimator(plan.rates, plan.calibration, plan.start_s)
    dt, t, last_launch = 0.25, 0.0, -math.inf
    queue = list(plan.jobs)
    active: dict[str, list[float]] = {}  # name -> [start-up left, work fraction left]
    by_name = {j.name: j for j in plan.jobs}
    times: dict[str, tuple[float, float]] = {}
    while queue or active:
        if queue and len(active) < plan.slots and t - last_launch >= plan.rates.stagger_s - 1e-9:
            last_launch = t
            job = queue.pop(0)
            fixed = job.fixed_s if job.kind != "train" else est.start_s
            active[job.name] = [fixed, 1.0 if job.kind == "train" else 0.0]
            times[job.name] = (t, math.nan)
        training = [n for n, (fixed, left) in active.items() if fixed <= 0 and left > 0]
        for name, state in list(active.items()):
            if state[0] > 0:
                state[0] -= dt
            elif state[1] > 0:
                job = by_name[name]
                state[1] -= dt / max(est.work_seconds(job, len(training)), 1e-9)
            if state[0] <= 0 and state[1] <= 0:
                times[name] = (times[name][0], t + dt)
                del active[name]
        t += dt
    return times


def plan_text(plan: Plan) -> tuple[list[str], bool]:
    """The plan as printed by --plan (and at the top of the log), and whether it fits."""
    r, tier = plan.rates, plan.tier
    times = simulate(plan)
    pool_s = max((end for _, end in times.values()), default=0.0)
    total = r.inference_s + pool_s + r.finish_s
    limit = 60 * plan.minutes
    fits = total <= limit
    trains = plan.train_jobs
    est = Estimator(r, plan.calibration, plan.start_s)
    lines = [
        f"GPU suite plan{' (--smoke, on the CPU)' if plan.smoke else ''}: {r.label}, at most "
        f"{plan.minutes:g} minutes.",
        "",
        f"1. inference: benchmarks.inference {'--quick --device cpu' if plan.smoke else '--device cuda'} "
        f"--sparsity 2:4, alone on the {'CPU' if plan.smoke else 'idle GPU'} (it times kernels): "
        f"~{r.inference_s:.0f} s, stopped at {r.inference_cap_s:.0f} s",
        f"2. a pool of {plan.slots} concurrent processes: pytest -m cuda (~{r.tests_s:.0f} s) and "
        f"{len(trains)} training runs of tier `{tier.name}` ({tier.model}, {tier.epochs:g} epochs, batch "
        f"{tier.batch_size}, lr {tier.lr:g}, {tier.precision}"
        f"{', channels-last' if tier.channels_last else ''}, {tier.dataset}), seed by seed:",
    ]
    if plan.skipped:
        lines.append(f"   ({len(plan.skipped)} runs skipped: already in {plan.out_dir}/quality.jsonl)")
    for job in plan.jobs:
        start, end = times[job.name]
        what = f"{job.steps} steps" if job.kind == "train" else "pytest -m cuda"
        lines.append(f"   {job.name:<28} {what:<14} est. {start:5.0f} s -> {end:5.0f} s")
    lines.append(f"3. make_results (RESULTS.md) and the summary: ~{r.finish_s:.0f} s")
    if trains:
        lines += ["", *cost_lines(plan, trains, est, pool_s)]
    verdict = "fits" if fits else "does NOT fit"
    lines += [
        "",
        f"Estimate: {r.inference_s:.0f} s inference + {pool_s:.0f} s pool + {r.finish_s:.0f} s finish = "
        f"{total:.0f} s = {total / 60:.1f} min of {plan.minutes:g}: {verdict} "
        f"(margin {limit - total:+.0f} s). The deadline holds either way: nothing is launched that the "
        "calibrated model says ends after it, and what still runs then is stopped and reported as left.",
    ]
    return lines, fits


def cost_lines(plan: Plan, trains: list[Job], est: Estimator, pool_s: float) -> list[str]:
    """The reasoning of the estimate: counted work, assumed rates, what is the bottleneck."""
    r, c = plan.rates, plan.cost
    job, n = trains[0], min(plan.slots, len(trains))
    host_ms, dev_ms = 1e3 * job.host_s / job.steps, 1e3 * job.device_s / job.steps
    kernels_ms, math_ms = c.ops * r.kernel_us / 1e3, c.flops / (r.tflops * 1e9)
    device_total = sum(j.device_s for j in trains)
    lines = [
        f"Cost model ({c.counted}):",
        f"- one optimizer step at batch {c.batch_size}: {c.ops} ops (forward, loss, backward, SGD, "
        f"masking), {c.flops / 1e9:.1f} GFLOP; one evaluation batch of 1000: {c.eval_ops} ops, "
        f"{c.eval_flops_per_item * 1000 / 1e9:.1f} GFLOP",
    ]
    if r.gpu:
        lines += [
            f"- device time per step = {c.ops} ops x {r.kernel_us:g} us + FLOP / {r.tflops:g} TFLOPS "
            f"= {kernels_ms:.2f} + {math_ms:.2f} = {kernels_ms + math_ms:.2f} ms",
            f"- host time per step = {c.ops} ops x {r.host_us:g} us = {c.ops * r.host_us / 1e3:.2f} ms "
            "(one process dispatching eager PyTorch; it overlaps the device's work)",
            f"- with the per-epoch evaluation, a run of {job.steps} steps costs {host_ms:.2f} ms host and "
            f"{dev_ms:.2f} ms device per step",
            f"- alone a run takes {est.seconds(job, 1):.0f} s (start-up {est.start_s:.0f} s included); "
            f"{n} at once share the GPU: {n} x {dev_ms:.2f} ms / {r.sharing:g} = "
            f"{n * dev_ms / r.sharing:.1f} ms per step of each run (vs {host_ms:.2f} ms of its own host "
            f"time), {est.seconds(job, n):.0f} s per run",
            f"- all training: {sum(j.steps for j in trains)} steps = {device_total:.0f} device-seconds, "
            f"/ {r.sharing:g} sharing = {device_total / r.sharing:.0f} s at the least",
        ]
    else:
        lines.append(
            f"- time per step on one core = {c.ops} ops x {r.host_us:g} us + FLOP / "
            f"{r.tflops * 1e3:g} GFLOPS = {host_ms + dev_ms:.1f} ms; {r.cores} cores shared by the pool"
        )
    lines.append(
        f"- the pool simulated (processor sharing, {plan.slots} slots, launched in order): {pool_s:.0f} s"
    )
    lines.append(
        f"- calibration: {plan.measured}"
        if plan.measured
        else "- calibration: none measured yet (a real run writes it to gpu_suite.json; --plan then uses it)"
    )
    if r.why:
        lines += ["", "Assumed rates (set without a GPU at hand; a real run measures and calibrates them):"]
        lines += [f"- {why}" for why in r.why]
    return lines


# -- running it -------------------------------------------------------------------------------------
class Log:
    """The suite's log file, echoed to stdout with the seconds since the start."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path, self.t0 = path, t0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f} s] {text}"
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")

    def block(self, lines: Sequence[str]) -> None:
        with self.path.open("a") as handle:
            handle.write("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)


def preflight(smoke: bool) -> None:
    """Everything the suite needs, checked before anything runs; SuiteError names what is missing."""
    import importlib.util

    import torch

    if not smoke and not torch.cuda.is_available():
        raise SuiteError(
            "CUDA is not available (torch "
            f"{torch.__version__}); the GPU suite needs one CUDA GPU -- use --smoke for the CPU check "
            "or --plan for the estimate"
        )
    if importlib.util.find_spec("pytest") is None:
        raise SuiteError("pytest is not installed (part (c) runs pytest -m cuda): pip install -e '.[test]'")
    if not smoke:
        if not rigl_torch_installed():
            raise SuiteError("rigl-torch is not installed (the peer rows): pip install -e '.[bench]'")
        from growprune.data.errors import DatasetNotFoundError
        from growprune.tasks.classification.fashion_mnist import find_data_dir

        try:
            find_data_dir()
        except DatasetNotFoundError as err:
            raise SuiteError(str(err)) from None


def free_gpu_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return free / GIB


def run_inference(smoke: bool, out_dir: Path, results_md: Path, cap_s: float, log: Log) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.inference", "--sparsity", "2:4"]
    argv += ["--quick", "--device", "cpu"] if smoke else ["--device", "cuda"]
    out = out_dir / "inference_cuda.json"
    argv += ["--out", str(out), "--results-md", str(results_md), "--section", "inference-cuda"]
    log(f"inference: {' '.join(argv[1:])} (stopped at {cap_s:.0f} s)")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, cap_s)
        )
    except subprocess.TimeoutExpired:
        return {
            "status": "failed",
            "seconds": round(time.monotonic() - started, 1),
            "detail": f"over {cap_s:.0f} s",
        }
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        return {"status": "failed", "seconds": seconds, "detail": f"exit {proc.returncode}: {tail}"}
    rows = json.loads(out.read_text())["results"]
    for line in proc.stdout.splitlines():
        log(f"  {line}")
    return {"status": "done", "seconds": seconds, "detail": f"{len(rows)} rows -> {out}"}


def finish_tests(job: Job, smoke: bool) -> None:
    """pytest's verdict; on a GPU a skipped CUDA test is a failure (it would hide a missing part)."""
    assert job.proc is not None and job.out is not None
    text = job.out.read_text(errors="replace")
    tail = text.strip().splitlines()[-1] if text.strip() else ""
    skips = [line for line in text.splitlines() if line.startswith("SKIPPED")]
    code = job.proc.returncode
    if code == 0 and skips and not smoke:
        job.status, job.detail = "failed", f"{tail}; skipped on the GPU: {'; '.join(skips)}"
    elif code == 0:
        job.status = "done"
        job.detail = tail + (" (no GPU: the CUDA tests skip, as they should)" if smoke and skips else "")
    else:
        job.status, job.detail = "failed", f"exit {code}: {tail}"


def run_suite(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    deadline = t0 + 60 * args.minutes
    smoke = args.smoke
    preflight(smoke)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="gp-gpu-suite-")) if smoke else RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_md = RESULTS_MD if out_dir.resolve() == RESULTS_DIR.resolve() else out_dir / "RESULTS.md"
    if results_md != RESULTS_MD and not results_md.exists():
        shutil.copyfile(RESULTS_MD, results_md)
    log = Log(out_dir / LOG_NAME, t0)
    # the machine at hand: its cores (the rates of the kind of machine the suite is meant for)
    rates = dataclasses.replace(CPU_SMOKE if smoke else H200, cores=os.cpu_count() or 1)
    plan = build_plan(smoke, out_dir, args.minutes, args.jobs, rates=rates, free_gib=free_gpu_gib())
    where = provenance(1, plan.slots, suite="gpu_suite")
    log(
        f"GPU suite on {where['device']} ({where['machine']['cpu_count']} CPUs), commit "
        f"{where['commit'][:10]}{' (dirty)' if where['dirty'] else ''}; outputs in {out_dir}"
    )
    text, _ = plan_text(plan)
    log.block(text)
    phases: dict[str, Any] = {}

    # (b) the inference rows, alone on the device
    cap = min(plan.rates.inference_cap_s, deadline - time.monotonic() - plan.rates.finish_s - 60)
    phases["inference"] = run_inference(smoke, out_dir, results_md, cap, log)
    log(f"inference: {phases['inference']['status']} in {phases['inference']['seconds']} s")

    # (a) + (c): the pool
    work_dir = Path(tempfile.mkdtemp(prefix="gp-gpu-suite-jobs-"))
    quality_out = out_dir / "quality.jsonl"
    estimator = Estimator(plan.rates, plan.calibration, plan.start_s)

    def on_finish(job: Job) -> None:
        assert job.proc is not None and job.out is not None and job.err is not None
        if job.kind == "tests":
            finish_tests(job, smoke)
        elif job.proc.returncode == 0:
            assert job.spec is not None and job.recipe is not None
            job.result = child_result(job.out.read_text(), job.recipe)
            append_row(quality_out, make_row(job.spec, plan.tier, job.result, where, job.seconds))
            job.status = "done"
            job.detail = f"top1 {job.result['top1']:.4f}, sparsity {job.result['final_sparsity']:.3f}"
        else:
            job.status, job.detail = "failed", f"exit {job.proc.returncode}"
            log.block([f"--- {job.name} stderr (last 30 lines) ---", *job.err.read_text().splitlines()[-30:]])
        log(f"{job.status:<6} {job.name} in {job.seconds:.0f} s: {job.detail}")

    pool_started = time.monotonic()
    hard_stop = deadline - plan.rates.finish_s
    pool = Pool(plan.slots, hard_stop, estimator, work_dir, log, on_finish, stagger_s=plan.rates.stagger_s)
    pool.run(plan.jobs)
    phases["pool"] = {"seconds": round(time.monotonic() - pool_started, 1), "slots": plan.slots}

    # RESULTS.md
    started = time.monotonic()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.make_results",
        "--quality",
        str(quality_out),
        "--out",
        str(results_md),
    ]
    made = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    phases["make_results"] = {
        "status": "done" if made.returncode == 0 else "failed",
        "seconds": round(time.monotonic() - started, 1),
        "detail": (made.stdout + made.stderr).strip()[-2000:],
    }

    code = write_summary(plan, phases, estimator, where, out_dir, log, time.monotonic() - t0)
    shutil.rmtree(work_dir, ignore_errors=True)
    return code


def exit_code(jobs: Sequence[Job], phases: dict[str, Any]) -> int:
    """1 if anything failed, 3 if nothing failed but something was left or stopped, else 0."""
    failed = any(j.status == "failed" for j in jobs) or any(
        p.get("status") == "failed" for p in phases.values()
    )
    if failed:
        return 1
    return 3 if any(j.status in ("left", "stopped") for j in jobs) else 0


def write_summary(
    plan: Plan,
    phases: dict[str, Any],
    estimator: Estimator,
    where: dict[str, Any],
    out_dir: Path,
    log: Log,
    wall: float,
) -> int:
    jobs = plan.jobs
    code = exit_code(jobs, phases)
    by_status: dict[str, list[Job]] = {}
    for job in jobs:
        by_status.setdefault(job.status, []).append(job)
    lines = ["", f"Summary ({wall:.0f} s of {60 * plan.minutes:.0f}):"]
    for name in ("inference", "make_results"):
        phase = phases[name]
        lines.append(f"- {name}: {phase['status']} in {phase['seconds']} s ({phase['detail'][:300]})")
    for status in ("done", "failed", "stopped", "left", "queued", "running"):
        group = by_status.get(status, [])
        if group:
            lines.append(f"- {status}: {len(group)}: " + "; ".join(f"{j.name} ({j.detail})" for j in group))
    if plan.skipped:
        lines.append(f"- already in the results before this run (skipped): {len(plan.skipped)}")
    ran = [j for j in jobs if j.kind == "train" and j.status == "done"]
    if ran:
        steps = sum(j.steps for j in ran)
        lines.append(
            f"- training: {len(ran)} runs, {steps} steps in a {phases['pool']['seconds']:.0f} s pool "
            f"({steps / max(phases['pool']['seconds'], 1e-9):.0f} steps/s); model calibration "
            f"{estimator.calibration:.2f}x, start-up {estimator.start_s:.0f} s"
        )
    lines.append(f"Exit code {code}: " + {0: "everything done", 1: "something failed", 3: "runs left"}[code])
    log.block(lines)
    summary = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "smoke": plan.smoke,
        "device": where["device"],
        "commit": where["commit"],
        "dirty": where["dirty"],
        "machine": where["machine"],
        "minutes": plan.minutes,
        "wall_seconds": round(wall, 1),
        "slots": plan.slots,
        "tier": dataclasses.asdict(plan.tier),
        "step_cost": dataclasses.asdict(plan.cost),
        "rates": dataclasses.asdict(plan.rates),
        "phases": phases,
        "jobs": [j.summary() for j in jobs],
        "calibration": {
            "train": round(estimator.calibration, 3),
            "start_s": round(estimator.start_s, 1),
            "runs": len(estimator.ratios) - (1 if plan.calibration != 1.0 else 0),
        },
        "exit_code": code,
    }
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plan", action="store_true", help="print the runs and the time estimate; run nothing"
    )
    parser.add_argument("--smoke", action="store_true", help="the same code path on the CPU in < 2 min")
    parser.add_argument(
        "--minutes", type=float, help=f"the deadline (default {MINUTES:g}; --smoke {SMOKE_MINUTES:g})"
    )
    parser.add_argument(
        "--jobs", type=int, help="processes in the pool (default: CPU cores - 1, within GPU memory)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where rows, log, summary and RESULTS.md go (default benchmarks/results and "
        "benchmarks/RESULTS.md; --smoke: a new temporary directory)",
    )
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (SMOKE_MINUTES if args.smoke else MINUTES)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be >= 1")
    try:
        if args.plan:  # for the GPU suite: this machine if it has a GPU, else the assumed one
            import torch

            out_dir = args.out_dir or (None if args.smoke else RESULTS_DIR)
            here = args.smoke or torch.cuda.is_available()
            rates = (
                dataclasses.replace(CPU_SMOKE if args.smoke else H200, cores=os.cpu_count() or 1)
                if here
                else None
            )
            plan = build_plan(
                args.smoke, out_dir, args.minutes, args.jobs, rates=rates, free_gib=free_gpu_gib()
            )
            text, _ = plan_text(plan)
            print("\n".join(text))
            return 0
        return run_suite(args)
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
