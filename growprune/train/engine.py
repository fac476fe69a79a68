"""The training loop: recipe in, trained sparse model, metrics, checkpoints and report out.

Readable top to bottom: ``Trainer.__init__`` builds everything (data, model, optimizer,
sparsifier) and restores a checkpoint when resuming; ``run`` is the loop
batch -> forward/backward -> optimizer.step() -> sparsifier.step() -> metrics -> checkpoint.

Exact resume: the data order is a function of (seed, epoch, batch), the learning rate a function
of the step, and every RNG state is saved, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

import growprune
from growprune.methods import get_method
from growprune.methods.pgap import EXTERNAL_MERGE
from growprune.models.registry import build_model, model_builder
from growprune.report import sparsity_report
from growprune.sparsity.consensus import verify_masks_equal
from growprune.tasks import Batch, Task, accepted_defaults, build_task, check_model_fits
from growprune.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, CheckpointManager
from growprune.train.distributed import init_distributed, make_partition_groups, shard_batch
from growprune.train.metrics import MetricsLogger
from growprune.train.recipe import Recipe, RecipeError, recipe_to_dict
from growprune.train.schedule import build_lr_schedule, method_kwargs, total_steps

SMOKE_BATCH = 64
# Keys that may change between a run and its resume without changing what is computed.
RESUME_MUTABLE = (
    "output",
    "training.device",
    "training.log_every",
    "training.threads",
    "training.eval_batch_size",
    "evaluation",
    "description",
)


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written and the run can be resumed."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"training.device is '{name}' but CUDA is not available; use device: auto or cpu")
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
        self.ckpts = CheckpointManager(run_dir / "checkpoints", recipe.output.keep_last)
        resumed = self._find_resume_point() if resume else None

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self._build(recipe)
        self.step, self.epoch, self.batch, self.best_score, self.elapsed = 0, 0, 0, -math.inf, 0.0
        if resumed is not None:
            self._restore(*resumed)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics: MetricsLogger | None = None
        if self.is_main:
            (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
            if resumed is None:
                (run_dir / "metrics.jsonl").write_text("")
            self.metrics = MetricsLogger(run_dir, recipe.output.tensorboard, self.step if resumed else None)
        self._logged_events = len(self.sparsifier.history) if resumed else 0
        self.bar: tqdm
        self._stop_signal: str | None = None
        # Single-process P-GaP replays the same steps once per worker; only worker 0's are logged.
        self.log_steps = True

    # -- construction -----------------------------------------------------------------------
    def _build(self, recipe: Recipe) -> None:
        cfg = recipe.training
        batch = min(cfg.batch_size, SMOKE_BATCH) if self.smoke else cfg.batch_size
        self._setup_parallel(recipe, batch)
        try:
            self.task: Task = build_task(
                recipe.data,
                recipe.evaluation,
                self.device,
                batch,
                seed=cfg.seed,
                eval_batch_size=cfg.eval_batch_size,
                label_smoothing=cfg.label_smoothing,
                smoke=self.smoke,
            )
        except (TypeError, ValueError) as err:
            raise RecipeError(f"data: {err}") from None
        self.train_loader = self.task.train_loader
        if len(self.train_loader) == 0:
            raise RecipeError(f"training.batch_size {batch} is larger than the training set")
        builder = _builder_of(recipe.model.name)
        try:
            check_model_fits(self.task, recipe.model.name, builder)
        except ValueError as err:
            raise RecipeError(f"model.name: {err}") from None
        self.model_args = {**accepted_defaults(builder, self.task.model_defaults()), **recipe.model.args}
        try:
            self.model = build_model(recipe.model.name, **self.model_args).to(self.device)
        except (TypeError, ValueError) as err:
            raise RecipeError(f"model.args: {err}") from None
        self.optimizer = build_optimizer(self.model, recipe)
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = total_steps(recipe, self.steps_per_epoch)
        self.lr_schedule = build_lr_schedule(recipe, self.steps_per_epoch, self.total_steps)
        kwargs = method_kwargs(recipe.method, self.steps_per_epoch, self.total_steps, cfg.seed)
        if recipe.method.name == "pgap":
            kwargs["worker"] = self.dist.group_index if self.parallel_pgap else 0
            kwargs["merger"] = EXTERNAL_MERGE  # pgap_driver merges the workers after each round
        try:
            # The engine checks masks across ranks itself, per data-parallel group (P-GaP's
            # partition groups differ by design), so the sparsifier's own check is off.
            self.sparsifier = get_method(recipe.method.name)(
                self.model, self.optimizer, process_group=None, **kwargs
            )
        except ValueError as err:
            raise RecipeError(f"method: {err}") from None
        self.forward_model: nn.Module = self.model
        if self.dp_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(
                self.model, device_ids=ids, process_group=self.dp_group, broadcast_buffers=False
            )

    def _setup_parallel(self, recipe: Recipe, batch: int) -> None:
        """Who trains what: P-GaP partition groups, and the data-parallel group of this rank."""
        ctx = self.dist
        self.parallel_pgap = ctx is not None and recipe.method.name == "pgap"
        self.dp_group, self.dp_size, self.dp_rank = None, 1, 0
        if ctx is None:
            return
        if self.parallel_pgap:
            make_partition_groups(ctx, recipe.method.num_partitions)  # type: ignore[union-attr]
            self.dp_group, self.dp_size, self.dp_rank = ctx.group_pg, ctx.group_size, ctx.rank_in_group
        else:
            self.dp_size, self.dp_rank = ctx.world, ctx.rank
        if batch % self.dp_size:
            raise RecipeError(
                f"training.batch_size {batch} must be divisible by the {self.dp_size} data-parallel processes"
            )

    def _find_resume_point(self) -> tuple[Path, dict[str, Any]] | None:
        found = self.ckpts.latest_good()
        if found is None:
            if self.ckpts.numbered():
                raise CheckpointError(f"no usable checkpoint in {self.ckpts.directory}: every one is corrupt")
            raise CheckpointError(f"nothing to resume in {self.run_dir}: no checkpoints/ckpt-*.pt")
        path, payload = found
        changes = incompatible_changes(payload["recipe"], recipe_to_dict(self.recipe))
        if changes:
            raise RecipeError(
                f"cannot resume {self.run_dir}: the recipe changed in {', '.join(changes[:5])} since the run "
                "started, which would not continue the same run; start a new run with --out"
            )
        if payload.get("smoke", False) != self.smoke:
            raise RecipeError(
                f"cannot resume {self.run_dir}: it was {'not ' if self.smoke else ''}a --smoke run"
            )
        return path, payload

    def _restore(self, path: Path, payload: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.sparsifier.load_state_dict(payload["sparsifier"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this recipe's model: {err}") from None
        position = payload["position"]
        self.step, self.epoch, self.batch = position["step"], position["epoch"], position["batch"]
        self.best_score = position.get("best_score", position.get("best_acc", -math.inf))
        self.elapsed = position["elapsed"]
        _set_rng_state(payload["rng"])
        tqdm.write(
            f"resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.batch})",
            file=sys.stderr,
        )

    # -- checkpoints ------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": growprune.__version__,
            "recipe": recipe_to_dict(self.recipe),
            "smoke": self.smoke,
            "model": self.model.state_dict(),
            "model_spec": {"name": self.recipe.model.name, "args": self.model_args},
            "optimizer": self.optimizer.state_dict(),
            "sparsifier": self.sparsifier.state_dict(),
            "lr_schedule": {"step": self.step, "lr": self.lr_schedule.lr(max(0, self.step - 1))},
            "rng": _rng_state(),
            "position": {
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch,
                "best_score": self.best_score,
                "elapsed": self._elapsed(),
            },
        }

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes (all ranks hold the same model whenever a checkpoint is taken)."""
        self._last_ckpt_time = time.monotonic()
        return self.ckpts.save(self._payload(), self.step) if self.is_main else None

    def _checkpoint_due(self) -> bool:
        out = self.recipe.output
        if out.checkpoint_every_steps and self.step % out.checkpoint_every_steps == 0:
            return True
        minutes = out.checkpoint_every_minutes
        return bool(minutes) and time.monotonic() - self._last_ckpt_time >= 60 * minutes

    # -- metrics ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed + time.monotonic() - self._start

    def _phase_fields(self) -> dict[str, Any]:
        phase = self.sparsifier.phase
        return {
            "phase": str(phase),
            "phase_name": phase.name,
            "dense_partition": phase.dense_partition,
            "partitions": phase.partitions,
        }

    def log(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.log(record)

    def _after_mask_changes(self) -> None:
        """Log new mask events; under torch.distributed check every rank holds the same masks."""
        events = self.sparsifier.history[self._logged_events :]
        self._logged_events = len(self.sparsifier.history)
        for event in events:
            self.log({"type": "event", **event})
        if events and self.dp_size > 1:
            verify_masks_equal(self.sparsifier.masks, self.dp_group, events[-1]["event"])

    def evaluate(self, final: bool = False) -> dict[str, float]:
        """The task's held-out scores of the current model (``final``: the full end-of-run ones)."""
        return self.task.evaluate(self.model, final=final)

    # -- the loop ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        del frame
        self._stop_signal = signal.Signals(signum).name

    def run(self) -> dict[str, Any]:
        """Train to the end of the schedule; returns the final summary record."""
        self._start = self._last_ckpt_time = time.monotonic()
        self._after_mask_changes()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.bar = tqdm(
            total=self.planned_steps(),
            initial=self.step,
            disable=not (self.progress and self.is_main),
            unit="step",
            dynamic_ncols=True,
            desc=self.recipe.name,
        )
        try:
            if self.recipe.method.name == "pgap":
                from growprune.train.pgap_driver import run_rounds

                run_rounds(self)
            while self.step < self.total_steps:
                self._train_epoch()
        finally:
            self.bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self._finish()

    def planned_steps(self) -> int:
        """Optimizer steps this process runs: single-process P-GaP trains its K workers in turn."""
        sparsifier = self.sparsifier
        if self.recipe.method.name == "pgap" and not self.parallel_pgap:
            return self.total_steps + (sparsifier.num_partitions - 1) * sparsifier.gap_end  # type: ignore[attr-defined]
        return self.total_steps

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step on this rank's share of a global batch; returns (loss, correct, count)."""
        if self.dp_size > 1:
            batch = shard_batch(*batch, self.dp_rank, self.dp_size)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_schedule.lr(self.step)
        loss, correct, count = self.task.loss(self.forward_model, batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {self.step + 1} ({self.sparsifier.phase}); the last good "
                f"checkpoint is in {self.ckpts.directory}; lower optimizer.lr or add warm-up"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.sparsifier.step()
        self.step += 1
        self.bar.update(1)
        self._after_mask_changes()
        due = self.step % self.recipe.training.log_every == 0 or self.step == self.total_steps
        if due and self.log_steps:
            self._log_step(loss)
        return loss.detach(), correct, count

    def _train_epoch(self) -> None:
        self.model.train()
        stats = EpochStats(self.device)
        for batch in self.train_loader.iter_from(self.epoch, self.batch):
            stats.add(*self.train_step(batch))
            self.batch += 1
            if self._stop_signal is not None:
                path = self.save_checkpoint()
                raise Interrupted(
                    f"{self._stop_signal} at step {self.step}: checkpoint {path or 'on rank 0'} written; "
                    f"continue with growprune train --resume {self.run_dir}"
                )
            if self.step >= self.total_steps:
                break
            if self._checkpoint_due():
                self.save_checkpoint()
        if self.batch >= self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        self.end_epoch(stats)

    def _log_step(self, loss: torch.Tensor) -> None:
        value = loss.item()
        self.log(
            {
                "type": "step",
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "loss": value,
                "lr": self.optimizer.param_groups[0]["lr"],
                **self._phase_fields(),
                "time": self._elapsed(),
            }
        )
        self.bar.set_postfix_str(f"loss {value:.3f} | {self.sparsifier.phase}")

    def end_epoch(self, stats: EpochStats) -> None:
        """Evaluate, log, checkpoint; keep `best.pt` among models whose masks are final."""
        scores = self.evaluate()
        report = sparsity_report(self.model)
        self.log(
            {
                "type": "epoch",
                "epoch": self.step / self.steps_per_epoch,
                "step": self.step,
                **stats.summary(),
                **scores,
                "sparsity": report.overall,
                "layer_sparsity": {layer.name: layer.sparsity for layer in report.layers},
                "lr": self.optimizer.param_groups[0]["lr"],
                **self._phase_fields(),
                "time": self._elapsed(),
            }
        )
        if self.is_main:
            tqdm.write(
                f"epoch {self.step / self.steps_per_epoch:5.2f}  {self.task.describe(scores)}  "
                f"{self.sparsifier.phase}",
                file=sys.stderr,
            )
        self.save_checkpoint()
        # Only a model whose masks are final can be "best": an intermediate GaP state is not a result.
        score = scores[self.task.primary_metric]
        if self.sparsifier.done and score > self.best_score:
            self.best_score = score
            if self.is_main:
                self.ckpts.save_named(self._payload(), "best")

    def _finish(self) -> dict[str, Any]:
        scores = self.evaluate(final=True)
        report = sparsity_report(self.model)
        total = sum(p.numel() for p in self.model.parameters())
        final = {
            "type": "final",
            "step": self.step,
            **scores,
            "score_name": self.task.final_metric,
            "score": scores[self.task.final_metric],
            "sparsity": report.overall,
            "params_total": total,
            "params_kept": total - report.zeros,
            "train_seconds": self._elapsed(),
            "layers": report.to_dict()["layers"],
        }
        if self.is_main:
            (self.run_dir / "sparsity.json").write_text(json.dumps(report.to_dict(), indent=1))
            self.task.write_artifacts(self.model, self.run_dir)
            self.log(final)
            self.ckpts.save_named(self._payload(), "final")
            assert self.metrics is not None
            self.metrics.close()
        return final


class EpochStats:
    """Running training loss and accuracy, kept on the device to avoid a sync per step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        """One batch: its mean loss, correct predictions (items or tokens) and predictions made."""
        self.loss += loss * count
        self.correct += correct
        self.seen += count

    def summary(self) -> dict[str, float]:
        seen = max(self.seen, 1)
        return {"train_loss": float(self.loss) / seen, "train_acc": float(self.correct) / seen}


def _builder_of(name: str) -> Callable[..., nn.Module]:
    try:
        return model_builder(name)
    except ValueError as err:
        raise RecipeError(f"model.name: {err}") from None
