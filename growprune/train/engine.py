"""The trainer: recipe in, trained sparse model, metrics, checkpoints and report out.

Readable top to bottom: ``Trainer.__init__`` builds everything (data, model, optimizer,
sparsifier) and restores a checkpoint when resuming; ``run`` hands the schedule to the loop the
method asks for (:mod:`growprune.train.loops`), which calls ``train_step`` (batch ->
forward/backward -> optimizer.step() -> metrics) and ``end_epoch`` (evaluate, checkpoint).

Exact resume: the data order is a function of (seed, epoch, batch), the learning rate a function
of the step, and every RNG state is saved, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from growprune import version
from growprune.checkpoint import STATE_KEYS, non_finite_entry
from growprune.errors import GrowpruneError, is_out_of_memory
from growprune.files import atomic_write_text, remove_stale_temps
from growprune.methods import Sparsifier, get_method
from growprune.methods.settings import RunLength, ScheduleFitError, epochs_to_steps
from growprune.models.registry import build_model, model_builder
from growprune.records import EpochRecord, FinalRecord, Record, StartRecord, StepRecord, record_to_json
from growprune.report import sparsity_report
from growprune.sparsity.compact import parameter_count
from growprune.sparsity.consensus import verify_masks_equal
from growprune.tasks import (
    Batch,
    Task,
    accepted_defaults,
    build_task,
    check_model_fits,
    task_for_dataset,
)
from growprune.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, CheckpointManager
from growprune.train.distributed import init_distributed, shard_batch, shard_model
from growprune.train.loops import EpochStats, RoundLoop, StepLoop, loop_class
from growprune.train.memory import PeakMemoryMeter
from growprune.train.metrics import MetricsLogger
from growprune.train.recipe import (
    Recipe,
    RecipeError,
    evaluation_settings,
    method_settings,
    recipe_to_dict,
    sparsifier_arguments,
    validate_recipe,
)
from growprune.train.schedule import build_lr_schedule

_T = TypeVar("_T")
SMOKE_BATCH = 64
# Keys that may change between a run and its resume without changing what is computed.
# Keys a resumed run may change. optimizer.lr is one so that a diverged run can continue from its
# last good checkpoint at a lower learning rate, which is what the divergence message suggests.
RESUME_MUTABLE = (
    "optimizer.lr",
    "output",
    "training.device",
    "training.log_every",
    "training.threads",
    "training.eval_batch_size",
    "evaluation",
    "description",
)


class TrainingDiverged(GrowpruneError, RuntimeError):
    """The run diverged: a non-finite loss, state or evaluation (a low finite score only warns).

    Nothing from the diverged state is written: the message names the last good checkpoint.
    """


# Signals that stop a run after a checkpoint: Ctrl-C, a scheduler's or `kill`'s SIGTERM, and the
# hang-up a closed terminal or dropped SSH session sends (its default would lose the progress).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RecipeError(
                f"training.device is '{name}' but CUDA is not available; use device: auto or cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RecipeError(
                f"training.device is '{name}' but this machine has {count} GPU(s): cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(
            "training.device is 'mps' but the Apple GPU backend is not available on this machine or torch "
            "build; use device: auto or cpu"
        )
    return device


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW; biases and norm parameters (1-D) optionally without weight decay."""
    cfg = recipe.optimizer
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if cfg.no_decay_norm_bias and param.dim() <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg.lr, betas=cfg.betas)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    np_state = np.random.get_state()
    state["numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    state["numpy_pos"] = int(np_state[2])
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "distribution":
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def incompatible_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Recipe keys whose change would make the resumed run differ from the original."""
    old, new = _flatten(saved), _flatten(now)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return [k for k in changed if not any(k == m or k.startswith(f"{m}.") for m in RESUME_MUTABLE)]


def _current_schema(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's recipe with the keys added since it was written at their defaults, so that
    a run started by an older growprune resumes; as saved when it no longer validates."""
    try:
        return recipe_to_dict(validate_recipe(saved))
    except RecipeError:
        return saved


class Trainer:
    """One training run in one run directory."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        *,
        smoke: bool = False,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.smoke = smoke
        self.progress = progress
        cfg = recipe.training
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.device = resolve_device(cfg.device)
        self.dist = init_distributed(self.device.type)
        if self.dist is not None and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.dist is None or self.dist.is_main
        self.seed = cfg.seed
        self.ckpts = CheckpointManager(run_dir / "checkpoints", recipe.output.keep_last)

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self._build(recipe)
        self.step, self.epoch, self.batch, self.best_score, self.elapsed = 0, 0, 0, -math.inf, 0.0
        # Best evaluation since the masks last changed (a pruning shock is no divergence).
        self.peak_score, self.peak_masks = -math.inf, ""
        self.stats: EpochStats | None = None  # this epoch's running training loss and accuracy
        self._resumed_stats: dict[str, Any] | None = None
        # Steps were trained since the last end of an epoch (end_epoch has not run for them yet).
        self.epoch_open = False
        resumed = self._resume() if resume else None
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics: MetricsLogger | None = None
        if self.is_main:
            for stale in [*remove_stale_temps(run_dir), *remove_stale_temps(self.ckpts.directory)]:
                tqdm.write(f"removed {stale}, left by a write that was cut off", file=sys.stderr)
            recipe_text = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
            atomic_write_text(run_dir / "recipe.yaml", recipe_text)
            if resumed is None:
                atomic_write_text(run_dir / "metrics.jsonl", "")
            self.metrics = MetricsLogger(
                run_dir,
                recipe.output.tensorboard,
                self.step if resumed else None,
                epoch_open=self.epoch_open,
            )
            if resumed is None:
                self.log(self.start_record())
        self._start = self._last_ckpt_time = time.monotonic()  # run() starts the clock again
        self._logged_events = len(self.sparsifier.history) if resumed else 0
        self.bar: tqdm
        self.stop_signal: str | None = None  # set by SIGINT/SIGTERM; the loop stops at the next step
        # Single-process P-GaP replays the same steps once per worker; only worker 0's are logged.
        self.log_steps = True

    # -- construction -----------------------------------------------------------------------
    def _build(self, recipe: Recipe) -> None:
        cfg = recipe.training
        batch = min(cfg.batch_size, SMOKE_BATCH) if self.smoke else cfg.batch_size
        self.task_name = task_for_dataset(recipe.data.name).name
        self.task: Task = _built(
            lambda: build_task(
                recipe.data,
                evaluation_settings(recipe),
                self.device,
                batch,
                seed=cfg.seed,
                eval_batch_size=cfg.eval_batch_size,
                label_smoothing=cfg.label_smoothing,
                smoke=self.smoke,
            ),
            f"the data {recipe.data.name!r}",
            "data",
            "data.args",
            recipe.data.args,
        )
        self.train_loader = self.task.train_loader
        if len(self.train_loader) == 0:
            raise RecipeError(f"training.batch_size {batch} is larger than the training set")
        builder = _builder_of(recipe.model.name)
        try:
            check_model_fits(self.task, recipe.model.name, builder)
        except ValueError as err:
            raise RecipeError(f"model.name: {err}") from None
        self.model_args = {**accepted_defaults(builder, self.task.model_defaults()), **recipe.model.args}
        _check_model_size(recipe.model.name, self.model_args, recipe.model.args, self.device)
        self.model = _built(
            lambda: build_model(recipe.model.name, **self.model_args).to(self.device),
            f"model {recipe.model.name!r}",
            "model.args",
            "model.args",
            recipe.model.args,
        )
        if cfg.channels_last:  # before the optimizer and the masks exist, so their state follows the layout
            self.model.to(memory_format=torch.channels_last)
        self.sharded = self._shard(recipe)  # before the optimizer and the masks: they follow the shards
        self.optimizer = build_optimizer(self.model, recipe)
        self.steps_per_epoch = len(self.train_loader)
        self.sparsifier = self._build_sparsifier(recipe)
        # The built sparsifier is the one source of the schedule's length; other methods run
        # for training.epochs.
        assert cfg.epochs is not None  # filled by validation
        own = self.sparsifier.total_steps
        self.total_steps = own if own is not None else epochs_to_steps(cfg.epochs, self.steps_per_epoch, 1)
        try:
            self.lr_schedule = build_lr_schedule(
                recipe.schedule,
                recipe.optimizer.lr,
                self.steps_per_epoch,
                self.total_steps,
                self.sparsifier.phase_starts(),
            )
        except ValueError as err:
            raise RecipeError(f"schedule: {err}") from None
        self.loop: StepLoop = loop_class(type(self.sparsifier))(self)
        self._setup_parallel(batch)
        self.forward_model: nn.Module = self.model
        if self.dp_size > 1 and not self.sharded:
            if self.sparsifier.storage == "compact":
                raise RecipeError(
                    "method.storage: compact storage changes the shapes of pruned parameters at every mask "
                    "change, which DistributedDataParallel's gradient buckets cannot follow; train with "
                    "method.storage: masked under torchrun"
                )
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(
                self.model, device_ids=ids, process_group=self.dp_group, broadcast_buffers=False
            )

    def _shard(self, recipe: Recipe) -> bool:
        """``training.parallel: fsdp`` under torchrun: FSDP2 over every rank. In one process there
        is nothing to shard (said once); methods and storages that cannot train sharded are
        refused here, before anything is built on the shards."""
        if recipe.training.parallel != "fsdp":
            return False
        cls = get_method(recipe.method.name)
        if not cls.supports_sharding:
            raise RecipeError(
                f"training.parallel: {cls.title} does not run on FSDP2-sharded models yet; use "
                "training.parallel: ddp (its partition groups replicate the model)"
            )
        if recipe.method.storage != "masked":
            raise RecipeError(
                "training.parallel: fsdp trains in masked storage only (FSDP already splits every "
                "weight across ranks); set method.storage: masked"
            )
        if self.dist is None or self.dist.world == 1:
            if self.is_main:
                tqdm.write("training.parallel: fsdp in one process: nothing to shard", file=sys.stderr)
            return False
        shard_model(self.model)
        return True

    def _build_sparsifier(self, recipe: Recipe) -> Sparsifier:
        method = recipe.method
        cls = get_method(method.name)
        settings = method_settings(method)
        # A schedule that sets its own length converts its epochs itself; others fit training.epochs.
        epochs = None if cls.schedule_epochs(settings) is not None else recipe.training.epochs
        total = None if epochs is None else epochs_to_steps(epochs, self.steps_per_epoch, 1)
        try:
            kwargs = sparsifier_arguments(
                method, RunLength(self.steps_per_epoch, total), recipe.training.seed
            )
        except ValueError as err:
            raise RecipeError(f"method: {err}") from None
        if total is not None:
            try:  # a schedule that ends after the run would silently never reach its sparsity
                cls.fit_to_run(dict(kwargs), {a.name for a in cls.step_arguments if a.name in kwargs}, total)
            except ValueError as err:  # a third-party method's own error: shown whole
                run = f"{total} optimizer steps, {self.steps_per_epoch} per epoch"
                fact = err.fact if isinstance(err, ScheduleFitError) else str(err)
                raise RecipeError(
                    f"method: the schedule does not fit in the run of training.epochs "
                    f"{recipe.training.epochs:g} ({run}): {fact}; shorten the "
                    "method's epochs or raise training.epochs"
                ) from None
        try:
            kwargs.update(loop_class(cls).sparsifier_arguments)
            # The engine checks masks across ranks itself, per data-parallel group (P-GaP's
            # partition groups differ by design), so the sparsifier's own check is off.
            return cls(self.model, self.optimizer, process_group=None, **kwargs)
        except ValueError as err:
            raise RecipeError(f"method: {err}") from None

    def _setup_parallel(self, batch: int) -> None:
        """Who trains what: the data-parallel group of this rank, as the method's loop lays it out."""
        try:
            layout = self.loop.data_parallel(self.dist)
        except ValueError as err:
            raise RecipeError(f"method: {err}") from None
        self.dp_group, self.dp_size, self.dp_rank = layout.group, layout.size, layout.rank
        if batch % self.dp_size:
            raise RecipeError(
                f"training.batch_size {batch} must be divisible by the {self.dp_size} data-parallel processes"
            )

    def _resume(self) -> Path:
        """Restore the newest checkpoint that fits this run; newer unusable ones are named in a
        warning and skipped, and none usable is an error naming why for each."""
        found = self.ckpts.latest_good(self._restore)
        if found is None:
            # the directory is named once; each reason names its file
            problems = [p.replace(f"{self.ckpts.directory}{os.sep}", "") for p in self.ckpts.problems]
            if problems:
                raise CheckpointError(
                    f"no usable checkpoint in {self.ckpts.directory}: every one is corrupt or does not fit "
                    f"this run ({'; '.join(problems)})"
                )
            raise CheckpointError(f"nothing to resume in {self.run_dir}: no checkpoints/ckpt-*.pt")
        path, _ = found
        tqdm.write(
            f"resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.batch})",
            file=sys.stderr,
        )
        return path

    def _check_resumable(self, payload: dict[str, Any]) -> None:
        """The run the checkpoint belongs to is this one (a RecipeError: no older checkpoint fixes it)."""
        changes = incompatible_changes(_current_schema(payload["recipe"]), recipe_to_dict(self.recipe))
        if changes:
            raise RecipeError(
                f"cannot resume {self.run_dir}: the recipe changed in {', '.join(changes[:5])} since the run "
                "started, which would not continue the same run; start a new run with --out"
            )
        if payload.get("smoke", False) != self.smoke:
            raise RecipeError(
                f"cannot resume {self.run_dir}: it was {'not ' if self.smoke else ''}a --smoke run"
            )

    def _restore(self, path: Path, payload: dict[str, Any]) -> None:
        """Restore one checkpoint; CheckpointError when it cannot be used (checked before any state
        is loaded where possible; a later checkpoint's load overwrites all of it)."""
        self._check_resumable(payload)
        position = payload["position"]  # load_checkpoint checked the counts' types
        step, epoch, batch = position["step"], position["epoch"], position["batch"]
        # batch == steps_per_epoch: the epoch's batches are all trained, its end not yet reached
        # (the step checkpoint that ends an epoch is taken before the epoch rolls over).
        if step > self.total_steps or batch > self.steps_per_epoch:
            raise CheckpointError(
                f"checkpoint {path} is damaged: its position (step {step}, batch {batch}) is "
                f"outside this run ({self.total_steps} steps, {self.steps_per_epoch} per epoch)"
            )
        try:
            self._load_model_and_optimizer_state(payload["model"], payload["optimizer"])
            self.sparsifier.load_state_dict(payload["sparsifier"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            if is_out_of_memory(err):
                raise
            reason = f"{type(err).__name__}: {err}" if isinstance(err, KeyError) else str(err)
            raise CheckpointError(f"checkpoint {path} does not fit this recipe's model: {reason}") from None
        self.step, self.epoch, self.batch = step, epoch, batch
        try:
            self.best_score = float(position.get("best_score", position.get("best_acc", -math.inf)))
            self.peak_score = float(position.get("peak_score", -math.inf))
            self.peak_masks = str(position.get("peak_masks", ""))
            self.elapsed = float(position["elapsed"])
            stats = position.get("epoch_stats") if self.batch else None
            if stats is not None:
                EpochStats(self.device).load_state(stats)  # fails here, not mid-epoch, if damaged
            self._resumed_stats = stats
            # Checkpoints without the flag: only the one that ends an epoch has its end pending.
            self.epoch_open = bool(position.get("epoch_open", batch >= self.steps_per_epoch))
            _set_rng_state(payload["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            if is_out_of_memory(err):
                raise
            raise CheckpointError(
                f"checkpoint {path} is damaged: its position, random or epoch state cannot be restored "
                f"({type(err).__name__}: {err})"
            ) from None

    # -- checkpoints ------------------------------------------------------------------------
    def _model_and_optimizer_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Their state dicts; sharded (FSDP2), the whole tensors gathered on every rank, keyed by
        parameter name (torch.distributed.checkpoint's full state dicts)."""
        if not self.sharded:
            return self.model.state_dict(), self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, broadcast_from_rank0=False)
        return get_state_dict(self.model, self.optimizer, options=options)

    def _load_model_and_optimizer_state(self, model: dict[str, Any], optimizer: dict[str, Any]) -> None:
        if not self.sharded:
            self.model.load_state_dict(model)
            self.optimizer.load_state_dict(optimizer)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        options = StateDictOptions(full_state_dict=True)  # every rank read the same file
        set_state_dict(
            self.model, self.optimizer, model_state_dict=model, optim_state_dict=optimizer, options=options
        )

    def _payload(self) -> dict[str, Any]:
        model_state, optimizer_state = self._model_and_optimizer_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": version.__version__,
            "recipe": recipe_to_dict(self.recipe),
            "smoke": self.smoke,
            "model": model_state,
            "model_spec": {"name": self.recipe.model.name, "args": self.model_args},
            "optimizer": optimizer_state,
            "sparsifier": self.sparsifier.state_dict(),
            "lr_schedule": {"step": self.step, "lr": self.lr_schedule.lr(max(0, self.step - 1))},
            "rng": _rng_state(),
            "position": {
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch,
                "best_score": self.best_score,
                "peak_score": self.peak_score,
                "peak_masks": self.peak_masks,
                "elapsed": self._elapsed(),
                "epoch_open": self.epoch_open,
                "epoch_stats": self.stats.state() if self.stats is not None and self.batch else None,
            },
        }

    def _checked_payload(self) -> dict[str, Any]:
        """The checkpoint payload, refused when any state in it is not finite.

        Every rank checks (they hold the same state), so all of them stop together; a diverged
        state is never written, so the newest checkpoint on disk is always a finite one.
        """
        payload = self._payload()
        for key in STATE_KEYS:
            bad = non_finite_entry(payload[key], key)
            if bad is not None:
                raise self.diverged(f"{bad} holds non-finite values")
        return payload

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes (all ranks hold the same model whenever a checkpoint is taken)."""
        self._last_ckpt_time = time.monotonic()
        payload = self._checked_payload()
        return self.ckpts.save(payload, self.step) if self.is_main else None

    def diverged(self, reason: str, step: int | None = None) -> TrainingDiverged:
        """The error that stops a diverged run: where it happened and where to continue from."""
        numbered = self.ckpts.numbered()
        if numbered:
            lower = f"{self.recipe.optimizer.lr / 10:g}"
            resume = (
                f"the last good checkpoint is {numbered[-1]}; continue from it at a lower learning rate with "
                f"growprune train --resume {self.run_dir}{' --smoke' if self.smoke else ''} "
                f"--set optimizer.lr={lower}, or add warm-up"
            )
        else:
            resume = (
                "no checkpoint was written before that, so train again with a lower optimizer.lr "
                "or schedule.warmup_epochs"
            )
        return TrainingDiverged(
            f"training diverged at step {self.step if step is None else step} ({self.sparsifier.phase}): "
            f"{reason}; {resume}"
        )

    def epoch_stats(self) -> EpochStats:
        """Running statistics for the epoch a loop starts: a resumed epoch continues its own sums."""
        self.stats = EpochStats(self.device)
        if self._resumed_stats is not None:
            self.stats.load_state(self._resumed_stats)
            self._resumed_stats = None
        return self.stats

    def checkpoint_due(self) -> bool:
        out = self.recipe.output
        if out.checkpoint_every_steps and self.step % out.checkpoint_every_steps == 0:
            return True
        minutes = out.checkpoint_every_minutes
        return bool(minutes) and time.monotonic() - self._last_ckpt_time >= 60 * minutes

    # -- metrics ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed + time.monotonic() - self._start

    def log(self, record: Record) -> None:
        if self.metrics is not None:
            self.metrics.log(record)

    def after_mask_changes(self) -> None:
        """Log new mask events; under torch.distributed check every rank holds the same masks."""
        events = self.sparsifier.history[self._logged_events :]
        self._logged_events = len(self.sparsifier.history)
        for event in events:
            self.log(event)
        if events and self.dp_size > 1:
            verify_masks_equal(self.sparsifier.masks, self.dp_group, events[-1].event)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Where forward passes run: bfloat16 autocast with ``training.precision: bf16``.

        Only the computation is in bf16; the weights, their gradients, the masks and the optimizer
        state stay fp32, so the sparsifier's guarantees are those of an fp32 run.
        """
        if self.recipe.training.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, final: bool = False) -> dict[str, float]:
        """The task's held-out scores of the current model (``final``: the full end-of-run ones)."""
        with self.autocast():
            return self.task.evaluate(self.model, final=final)

    # -- the loop ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        del frame
        self.stop_signal = signal.Signals(signum).name

    def run(self) -> dict[str, Any]:
        """Train to the end of the schedule; returns the final summary record."""
        self._start = self._last_ckpt_time = time.monotonic()
        self.memory = PeakMemoryMeter(self.device)
        self.after_mask_changes()
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        self.bar = tqdm(
            total=self.planned_steps(),
            initial=self.step,
            disable=not (self.progress and self.is_main),
            unit="step",
            dynamic_ncols=True,
            desc=self.recipe.name,
        )
        try:
            self.loop.run()
        finally:
            self.bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self._finish()

    def start_record(self) -> StartRecord:
        """What this run will do, from the built sparsifier: reports read lengths and partitions here."""
        sparsifier = self.sparsifier
        partitions = getattr(sparsifier, "partitions", None)
        return StartRecord(
            method=sparsifier.method,
            title=sparsifier.title,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            process_steps=self.planned_steps(),
            partitions=[list(p) for p in partitions] if partitions else None,
            parallel_partitions=isinstance(self.loop, RoundLoop),
            device=str(self.device),
            cpu_kernels=torch.backends.cpu.get_cpu_capability(),
            threads=torch.get_num_threads(),
            torch_version=torch.__version__,
            task=self.task_name,
        )

    def planned_steps(self) -> int:
        """Optimizer steps this process runs (the loop knows: P-GaP in one process replays K workers)."""
        return self.loop.planned_steps()

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step on this rank's share of a global batch; returns (loss, correct, count)."""
        if self.dp_size > 1:
            batch = shard_batch(*batch, self.dp_rank, self.dp_size)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_schedule.lr(self.step)
        with self.autocast():
            loss, correct, count = self.task.loss(self.forward_model, batch)
        if not torch.isfinite(loss):
            raise self.diverged(f"the training loss is {loss.item()}", step=self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.sparsifier.step()
        self.step += 1
        self.epoch_open = True
        self.bar.update(1)
        self.after_mask_changes()
        due = self.step % self.recipe.training.log_every == 0 or self.step == self.total_steps
        if due and self.log_steps:
            self._log_step(loss)
        return loss.detach(), correct, count

    def _log_step(self, loss: torch.Tensor) -> None:
        value = loss.item()
        self.log(
            StepRecord(
                step=self.step,
                epoch=self.step / self.steps_per_epoch,
                loss=value,
                lr=self.optimizer.param_groups[0]["lr"],
                phase=self.sparsifier.phase,
                time=self._elapsed(),
            )
        )
        self.bar.set_postfix_str(f"loss {value:.3f} | {self.sparsifier.phase}")

    def end_epoch(self, stats: EpochStats) -> None:
        """Evaluate, log, checkpoint; keep `best.pt` among models whose masks are final."""
        self.epoch_open = False  # the checkpoint below is past this epoch's end
        scores = self.evaluate()
        self._check_scores(scores)
        report = sparsity_report(self.model)
        self.log(
            EpochRecord(
                epoch=self.step / self.steps_per_epoch,
                step=self.step,
                **stats.summary(),
                scores=scores,
                sparsity=report.overall,
                layer_sparsity={layer.name: layer.sparsity for layer in report.layers},
                lr=self.optimizer.param_groups[0]["lr"],
                phase=self.sparsifier.phase,
                time=self._elapsed(),
            )
        )
        if self.is_main:
            tqdm.write(
                f"epoch {self.step / self.steps_per_epoch:5.2f}  {self.task.describe(scores)}  "
                f"{self.sparsifier.phase}",
                file=sys.stderr,
            )
        # Only a model whose masks are final can be "best": an intermediate GaP state is not a result.
        # best.pt first: a kill between the two writes resumes from the checkpoint before this
        # epoch's end, which ends the epoch again; the other order lost the new best.pt for good.
        score = scores[self.task.primary_metric]
        if self.sparsifier.done and score > self.best_score:
            self.best_score = score
            payload = self._checked_payload()  # every rank: gathering a sharded model's state is a collective
            if self.is_main:
                self.ckpts.save_named(payload, "best")
        self.save_checkpoint()

    def _check_scores(self, scores: dict[str, float]) -> None:
        """Stop on an evaluation that only a diverged model gives (before anything is written)."""
        bad = [f"{name} {value}" for name, value in scores.items() if not math.isfinite(value)]
        if bad:
            raise self.diverged(f"the evaluation gave {', '.join(bad)}")
        # A fall in a finite score is a warning, never a stop: on a small evaluation set a
        # pruning shock (GaP's phase change, ADMM's hard prune, a GMP step) or plain noise can
        # look like chance, and whether a given run looks so depends on the CPU's kernels
        # (AVX-512 vs AVX2 round-off). Only non-finite numbers prove divergence. The warning
        # compares with the best score under the same masks, so a pruning step's dip is quiet.
        masks = f"{self.sparsifier.phase} at sparsity {self.sparsifier.current_sparsity():.3f}"
        if masks != self.peak_masks:
            self.peak_score, self.peak_masks = -math.inf, masks
        collapse = self.task.collapsed(scores, self.peak_score)
        if collapse is not None and self.is_main:
            warnings.warn(
                f"at step {self.step} ({self.sparsifier.phase}): {collapse}; training goes on (only a "
                "non-finite loss, state or evaluation stops a run); if it stays there, lower the learning "
                "rate or add warm-up",
                stacklevel=2,
            )
        self.peak_score = max(self.peak_score, scores[self.task.primary_metric])

    def _finish(self) -> dict[str, Any]:
        scores = self.evaluate(final=True)
        self._check_scores(scores)
        report = sparsity_report(self.model)
        total = parameter_count(self.model)
        final = FinalRecord(
            step=self.step,
            scores=scores,
            score_name=self.task.final_metric,
            sparsity=report.overall,
            params_total=total,
            params_kept=total - report.zeros,
            train_seconds=self._elapsed(),
            layers=report.to_dict()["layers"],
            **self.memory.read().record_fields(),
            task=self.task_name,
        )
        payload = self._checked_payload()  # every rank (a collective when sharded)
        if self.is_main:
            (self.run_dir / "sparsity.json").write_text(json.dumps(report.to_dict(), indent=1))
            self.task.write_artifacts(self.model, self.run_dir)
            self.log(final)
            self.ckpts.save_named(payload, "final")
            assert self.metrics is not None
            self.metrics.close()
        return record_to_json(final)


def _shown_args(args: dict[str, Any]) -> str:
    text = repr(dict(args))
    return text if len(text) <= 200 else text[:197] + "..."


def _built(build: Callable[[], _T], what: str, section: str, key: str, args: dict[str, Any]) -> _T:
    """``build()`` of the run's data or model, what goes wrong with it said in the recipe's terms:
    a bad setting as ``section: why``, memory running out as the sizes ``key`` gave (``args``)."""
    try:
        return build()
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{section}: {err}") from None
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise _building_oom(what, key, args, err) from None


def _building_oom(what: str, key: str, args: dict[str, Any], err: BaseException) -> RecipeError:
    """The one line for memory running out while building the model or the data: the recipe's
    sizes are the cause (training.batch_size has not been used yet), so they are what it names."""
    # torch: "you tried to allocate N bytes", "Tried to allocate 2.00 GiB"; numpy: "Unable to allocate 1 TiB"
    found = re.search(r"(?:tried to|unable to) allocate (\d+ bytes|[\d.,]+ ?[KMGTP]?i?B)\b", str(err), re.I)
    tried = f" (tried to allocate {found.group(1)})" if found else ""
    return RecipeError(
        f"out of memory building {what} with {key} {_shown_args(args)}{tried}; use smaller {key}"
    )


def _available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` (None when it cannot be told)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            import psutil

            return int(psutil.virtual_memory().available)
    except Exception:
        return None
    return None


def _check_model_size(name: str, args: dict[str, Any], given: dict[str, Any], device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose parameters and buffers alone need
    more memory than ``device`` has free: they are counted on the meta device (no storage), so
    sizes the allocator would grant lazily and the kernel kill the process for later end in the
    same one line as an allocation that fails at once. Where the meta build fails (a builder
    that computes with real tensors), the real build decides as before."""
    states = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(name, **args)
        size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    except Exception:  # a wrong argument (the real build names it), or a builder meta cannot run
        return
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    free = _available_memory(device)
    if free is not None and size > free:
        raise RecipeError(
            f"out of memory building model {name!r} with model.args {_shown_args(given)}: its "
            f"parameters alone take {size:,} bytes, more than the {free:,} free on {device.type}; "
            "use smaller model.args"
        )


def _builder_of(name: str) -> Callable[..., nn.Module]:
    try:
        return model_builder(name)
    except ValueError as err:
        raise RecipeError(f"model.name: {err}") from None
