"""The one sparsifier every method builds on.

A method is a schedule of mask changes. Everything else -- finding targets, spreading sparsity
over layers, scoring, masking weights/gradients/optimizer state, saving and restoring -- lives
here once, so a method is a short subclass that overrides a few hooks:

* ``on_start()``: set the initial masks (called at the end of ``__init__``);
* ``on_step(step)``: change masks when the schedule says so (``step`` counts optimizer steps);
* ``before_optimizer_step(step)``: touch gradients before the optimizer uses them (RigL
  records dense gradients, ADMM adds its penalty);
* ``describe_phase(step)``: what the schedule is doing, for progress bars and reports;
* ``extra_state()`` / ``load_extra_state()``: method tensors such as ADMM's Z and U.

Gradients of pruned weights are masked in an optimizer step pre-hook, so any element-wise
optimizer leaves pruned weights and their state at exactly zero; weights are masked again after
the step so non-element-wise optimizers cannot break invariant 1 either. For SGD, Adam and
AdamW that second pass is provably a no-op (their update of an entry whose gradient, weight and
state are zero is exactly zero, weight decay included) and it cost ~5% of an MLP step, so it
is skipped for them once their state on pruned entries has been zeroed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from growprune.sparsity.distribution import (
    DistributionSpec,
    allocate_keep_counts,
    layer_sparsities,
    validate_distribution,
    validate_sparsity,
)
from growprune.sparsity.masks import MaskSet
from growprune.sparsity.optim_state import mask_optimizer_state, reset_optimizer_state
from growprune.sparsity.partition import PartitionSpec, partition_layers
from growprune.sparsity.patterns import Pattern, check_nm_shape, nm_mask, parse_pattern, topk_mask
from growprune.sparsity.scoring import magnitude, random_scores
from growprune.sparsity.targets import find_targets, untargeted_matrices

# Exact classes (not subclasses, which may change the update rule) whose step keeps an entry at
# exactly 0 when its gradient, weight and optimizer state are all 0.
ZERO_PRESERVING_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
)

RESET_MODES = ("all", "changed")
INIT_MODES = ("random", "magnitude")


@dataclass(frozen=True)
class Phase:
    """Where a schedule stands. Partition and round numbers are 1-based, as people count."""

    name: str  # e.g. "dense", "gap", "finetune", "admm", "pruning", "sparse", "done"
    step: int
    round: int | None = None
    rounds: int | None = None
    dense_partition: int | None = None
    partitions: int | None = None

    def __str__(self) -> str:
        if self.dense_partition is not None:
            return (
                f"round {self.round}/{self.rounds}, partition {self.dense_partition}/{self.partitions} dense"
            )
        return self.name


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def check_steps(name: str, value: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Sparsifier:
    """Base class: masks, their application, and the bookkeeping shared by all methods."""

    method: ClassVar[str] = "base"
    supports_nm: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        sparsity: float | None = 0.8,
        distribution: DistributionSpec = "uniform",
        targets: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        pattern: str | Pattern = "unstructured",
        seed: int = 0,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.pattern = parse_pattern(pattern)
        self.distribution = validate_distribution(distribution)
        self.sparsity = self._resolve_sparsity(sparsity)
        self.seed = int(seed)
        self.targets = find_targets(model, targets, exclude)
        self.names = [t.name for t in self.targets]
        left_dense = untargeted_matrices(model, [a for t in self.targets for a in t.aliases], exclude)
        if left_dense and targets is None:
            warnings.warn(
                f"{len(left_dense)} weight matrices are not pruned by default and stay dense: "
                f"{', '.join(left_dense[:4])}{' ...' if len(left_dense) > 4 else ''}; name them in "
                "`targets` to prune them or in `exclude` to silence this",
                stacklevel=3,
            )
        if self.pattern.is_nm:
            for t in self.targets:
                check_nm_shape(t.name, t.shape, self.pattern, t.input_first)
        shapes = [tuple(t.shape) for t in self.targets]
        self.numels = {t.name: t.numel for t in self.targets}
        sparsities = layer_sparsities(self.names, shapes, self.sparsity, self.distribution)
        self.layer_sparsity = dict(zip(self.names, sparsities))
        self.keep_counts = self.keep_counts_at(1.0)
        self.mask_set = MaskSet(self.targets)
        self.step_count = 0
        self._removed = False
        self.history: list[dict[str, Any]] = []
        self._hook = optimizer.register_step_pre_hook(self._optimizer_pre_hook)
        self._skip_weight_pass = type(optimizer) in ZERO_PRESERVING_OPTIMIZERS
        self._grads_masked = False
        self._synced_revision = -1  # mask revision at which weights and state were last masked
        try:
            self.on_start()
        except BaseException:
            # Leave model and optimizer as they were, so that a retry with corrected arguments
            # does not fail on the mask buffers of this half-built sparsifier.
            self.remove()
            raise
        self.mask_set.apply_to_weights()
        self._zero_pruned_state()  # state from training before the sparsifier was attached

    def _resolve_sparsity(self, sparsity: float | None) -> float:
        if self.pattern.is_nm:
            if self.distribution != "uniform":
                raise ValueError(
                    f"pattern {self.pattern} fixes every layer's sparsity; use "
                    f"distribution='uniform', got {self.distribution!r}"
                )
            if not self.supports_nm:
                raise ValueError(f"method {self.method} does not support N:M patterns; use 'unstructured'")
            if sparsity is not None and abs(sparsity - self.pattern.sparsity) > 1e-9:
                raise ValueError(
                    f"sparsity {sparsity} contradicts pattern {self.pattern} (which is "
                    f"{self.pattern.sparsity:g} sparse); pass sparsity={self.pattern.sparsity:g} or None"
                )
            return self.pattern.sparsity
        if sparsity is None:
            raise ValueError("sparsity must be a number in [0, 1) (0.8 = 80% zeros), got None")
        return validate_sparsity(sparsity)

    # -- hooks for subclasses ---------------------------------------------------------------
    def on_start(self) -> None:
        """Set initial masks. Default: everything kept."""

    def on_step(self, step: int) -> None:
        """Change masks if the schedule says so at optimizer step `step` (1-based)."""

    def before_optimizer_step(self, step: int) -> None:
        """Called before optimizer step `step` runs, with the dense gradients in `.grad`."""

    def describe_phase(self, step: int) -> Phase:
        return Phase("done", step)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state

    def config(self) -> dict[str, Any]:
        """Arguments that define the schedule; a saved state must match them to be loaded."""
        return {
            "method": self.method,
            "sparsity": self.sparsity,
            "distribution": self.distribution,
            "pattern": str(self.pattern),
            "seed": self.seed,
            "targets": self.names,
        }

    # -- the training-loop API --------------------------------------------------------------
    def step(self) -> None:
        """Call right after ``optimizer.step()``: keeps masks applied and runs the schedule."""
        if self._removed:
            raise RuntimeError(f"{type(self).__name__}.step() after remove(): build a new sparsifier")
        self.step_count += 1
        if not (self._skip_weight_pass and self._grads_masked):
            self.mask_set.apply_to_weights()
        self._grads_masked = False
        self.on_step(self.step_count)

    def _optimizer_pre_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        del optimizer, args, kwargs
        self.before_optimizer_step(self.step_count + 1)
        self.mask_set.apply_to_grads()
        if self._skip_weight_pass and self.mask_set.revision != self._synced_revision:
            # A mask changed behind our back (in-place edit, model.load_state_dict): the skipped
            # post-step pass can only be trusted once weights and state match the masks again.
            self.mask_set.apply_to_weights()
            self._zero_pruned_state()
        self._grads_masked = True

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Parameter name -> bool mask (True = kept). These are the live buffers."""
        return self.mask_set.as_dict()

    @property
    def phase(self) -> Phase:
        return self.describe_phase(self.step_count)

    @property
    def done(self) -> bool:
        """True once the schedule has no more mask changes to make."""
        return self.phase.name in ("finetune", "done")

    def current_sparsity(self) -> float:
        kept = sum(self.mask_set.kept(n) for n in self.names)
        return 1.0 - kept / sum(self.numels.values())

    def remove(self) -> None:
        """Detach from model and optimizer: drop the mask buffers and the optimizer hook."""
        self._hook.remove()
        self.mask_set.remove()
        self._removed = True

    # -- mask arithmetic shared by methods --------------------------------------------------
    def keep_counts_at(self, fraction: float) -> dict[str, int]:
        """Keep-counts when every layer is at `fraction` of its final sparsity (GMP ramps)."""
        sparsities = [self.layer_sparsity[n] * fraction for n in self.names]
        counts = allocate_keep_counts([self.numels[n] for n in self.names], sparsities)
        return dict(zip(self.names, counts))

    def compute_masks(
        self,
        names: Sequence[str],
        scores: Mapping[str, torch.Tensor],
        keep: Mapping[str, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masks keeping the highest scores of `names`, in this sparsifier's pattern.

        With the `global` distribution the layers in `names` are ranked together, so their
        total keep-count is respected while each layer's share follows the scores.
        """
        keep = self.keep_counts if keep is None else keep
        if self.pattern.is_nm:
            by_name = self.mask_set.by_name
            return {n: nm_mask(scores[n], self.pattern, by_name[n].input_first) for n in names}
        if self.distribution == "global" and len(names) > 1:
            pooled = torch.cat([scores[n].reshape(-1) for n in names])
            flat = topk_mask(pooled, sum(keep[n] for n in names))
            pieces = flat.split([self.numels[n] for n in names])
            return {n: p.view_as(scores[n]) for n, p in zip(names, pieces)}
        return {n: topk_mask(scores[n], keep[n]) for n in names}

    def magnitude_scores(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        params = {t.name: t.param for t in self.targets}
        return {n: magnitude(params[n]) for n in names}

    def random_scores(self, names: Sequence[str], *purpose: object) -> dict[str, torch.Tensor]:
        params = {t.name: t.param for t in self.targets}
        return {n: random_scores(params[n].shape, params[n].device, self.seed, *purpose, n) for n in names}

    def resolve_partitions(self, partitions: PartitionSpec, mode: str) -> list[list[str]]:
        return partition_layers(self.names, [self.numels[n] for n in self.names], partitions, mode, self.seed)

    def change_masks(self, new_masks: Mapping[str, torch.Tensor], event: str, reset: str = "changed") -> None:
        """Install new masks, zero pruned weights and their optimizer state, log the event."""
        self.mask_set.update(new_masks)
        self.mask_set.apply_to_weights()
        if reset == "all":
            reset_optimizer_state(self.optimizer)
        else:
            params = {t.name: t.param for t in self.targets}
            mask_optimizer_state(self.optimizer, [(params[n], self.mask_set.mask(n)) for n in new_masks])
        self._synced_revision = self.mask_set.revision
        self.history.append(
            {
                "step": self.step_count,
                "event": event,
                "phase": str(self.phase),
                "sparsity": self.current_sparsity(),
            }
        )

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "step": self.step_count,
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "history": [dict(h) for h in self.history],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore masks and schedule position; refuses a state from another schedule."""
        saved, ours = dict(state["config"]), self.config()
        if saved != ours:
            keys = sorted(set(saved) | set(ours), key=lambda k: (k != "method", k))  # method first
            diffs = [k for k in keys if saved.get(k) != ours.get(k)]
            details = ", ".join(f"{k}: saved {saved.get(k)!r} != now {ours.get(k)!r}" for k in diffs[:3])
            raise ValueError(f"sparsifier state does not match this sparsifier ({details})")
        self.mask_set.update(state["masks"])
        self.step_count = int(state["step"])
        self.history = [dict(h) for h in state["history"]]
        self.load_extra_state(state.get("extra", {}))
        self.mask_set.apply_to_weights()
        self._zero_pruned_state()

    def _zero_pruned_state(self) -> None:
        """Make skipping the post-step weight pass safe: no stale state may move a pruned weight."""
        if self._skip_weight_pass:
            pairs = [(t.param, self.mask_set.mask(t.name)) for t in self.targets]
            mask_optimizer_state(self.optimizer, pairs)
            self._synced_revision = self.mask_set.revision

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sparsity={self.sparsity}, distribution={self.distribution!r}, "
            f"pattern='{self.pattern}', layers={len(self.targets)}, phase='{self.phase}')"
        )
