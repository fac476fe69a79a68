"""ADMM pruning (Zhang et al., 2018), the prune-from-dense baseline of the GaP paper.

Train dense, then train with the penalty rho/2 * ||W - Z + U||^2 that pulls W towards its
sparse projection Z, then hard-prune by magnitude and fine-tune with fixed masks. The penalty
gradient is added to `.grad` in the optimizer pre-hook, so the user's loss stays untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from growprune.methods.base import Phase, Sparsifier, gradient_scale
from growprune.methods.errors import SparsifierStateError
from growprune.methods.settings import (
    AtLeast,
    Fixed,
    MethodSettings,
    OfBudget,
    Part,
    ScheduleFitError,
    Share,
    StepArgument,
    beyond_run,
    bounded,
)
from growprune.records import PhaseName
from growprune.sparsity.sharding import full, local, shard_like


@dataclass(kw_only=True)
class ADMMSettings(MethodSettings):
    rho: float = bounded(1e-3, gt=0)


class ADMM(Sparsifier):
    """Phases: `pretrain_steps` dense, `admm_steps` regularized, then prune and fine-tune."""

    method = "admm"
    title = "ADMM"
    settings = ADMMSettings
    pretrain_steps = StepArgument(Fixed(0), epochs="pretrain_epochs")
    admm_steps = StepArgument(
        Share(0.5, after="pretrain_steps", length=True), minimum=1, epochs="admm_epochs"
    )
    update_interval = StepArgument(Part(10, of="admm_steps"), minimum=1, epochs="update_every_epochs")
    # Zhang et al. 2018, as the GaP paper's baseline: equal thirds dense / ADMM / fine-tune, rho 1e-3
    # (the GaP authors' code), 8 Z/U updates in the ADMM third
    paper_schedule = {
        "pretrain_epochs": OfBudget(per=3),
        "admm_epochs": OfBudget(per=3),
        "rho": 1e-3,
        "update_every_epochs": OfBudget(per=24),
    }
    # one dense step, ADMM for half the run (Z and U updated every eighth of it), then the prune
    short_run = {
        "pretrain_steps": Fixed(1),
        "admm_steps": AtLeast(1, Part(2)),
        "update_interval": AtLeast(1, Part(8)),
    }

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        admm_steps: int,
        pretrain_steps: int = 0,
        rho: float = 1e-3,
        update_interval: int = 100,
        **kwargs: Any,
    ) -> None:
        self.pretrain_steps, self.admm_steps = pretrain_steps, admm_steps
        self.update_interval = update_interval
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho!r}")
        self.rho = float(rho)
        self.z: dict[str, torch.Tensor] = {}
        self.u: dict[str, torch.Tensor] = {}
        super().__init__(model, optimizer, **kwargs)

    @property
    def prune_step(self) -> int:
        return self.pretrain_steps + self.admm_steps

    @classmethod
    def check_fit(cls, kwargs: Mapping[str, Any], total: int) -> None:
        pretrain, admm = kwargs["pretrain_steps"], kwargs["admm_steps"]
        if pretrain >= total:
            raise beyond_run(
                cls.method, "pretrain_steps", pretrain, total, f"the last of the run's {total} steps"
            )
        if pretrain + admm > total:
            raise ScheduleFitError(
                f"{cls.method}: pretrain_steps + admm_steps = {pretrain} + {admm} = {pretrain + admm} is "
                f"beyond the run's {total} optimizer steps, so the final prune would never happen",
                "shorten them or train longer",
            )

    def _project(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = {n: v.abs().float() for n, v in values.items()}
        masks = self.compute_masks(self.names, scores)
        return {n: values[n] * masks[n] for n in self.names}

    @torch.no_grad()
    def _update_z_u(self, first: bool) -> None:
        # Whole tensors (gathered when FSDP2 shards the model: the projection ranks whole layers);
        # Z and U are then kept laid out as their parameters, each rank its own rows.
        weights = {t.name: self.weight_of(t.name) for t in self.targets}
        if first:
            u = {n: torch.zeros_like(w) for n, w in weights.items()}
        else:
            u = {n: full(self.u[n]) for n in self.names}
        z = self._project({n: w + u[n] for n, w in weights.items()})
        params = {t.name: t.param for t in self.targets}
        self.z = {n: shard_like(z[n], params[n]) for n in self.names}
        self.u = {n: shard_like(u[n] + weights[n] - z[n], params[n]) for n in self.names}

    def on_start(self) -> None:
        if self.pretrain_steps == 0:
            self._update_z_u(first=True)

    def on_step(self, step: int) -> None:
        if step == self.pretrain_steps:
            self._update_z_u(first=True)
        elif (
            self.pretrain_steps < step < self.prune_step
            and (step - self.pretrain_steps) % self.update_interval == 0
        ):
            self._update_z_u(first=False)
        elif step == self.prune_step:
            masks = self.compute_masks(self.names, self.magnitude_scores(self.names))
            self.z, self.u = {}, {}
            self.change_masks(masks, "prune")

    @torch.no_grad()
    def before_optimizer_step(self, step: int) -> None:
        if not self.pretrain_steps < step <= self.prune_step or not self.z:
            return
        scale = gradient_scale(self.optimizer)  # gradients may still carry GradScaler's scale
        for t in self.targets:
            if t.param.grad is not None:  # per shard under FSDP2: every term is laid out alike
                penalty = local(t.param.detach()) - local(self.z[t.name]) + local(self.u[t.name])
                if scale is not None:
                    penalty = penalty * scale.to(penalty.dtype)
                grad = local(t.param.grad)
                grad.add_(penalty.to(grad.dtype), alpha=self.rho)

    def describe_phase(self, step: int) -> Phase:
        if step < self.pretrain_steps:
            return Phase(PhaseName.DENSE, step)
        return Phase(PhaseName.ADMM if step < self.prune_step else PhaseName.FINETUNE, step)

    def extra_state(self) -> dict[str, Any]:
        return {  # whole tensors (gathered when sharded): a file from any world size loads anywhere
            "z": {n: full(z).cpu() for n, z in self.z.items()},
            "u": {n: full(u).cpu() for n, u in self.u.items()},
        }

    def check_extra_state(self, state: Mapping[str, Any], step: int) -> None:
        shapes = {t.name: tuple(t.shape) for t in self.targets}
        tables = {}
        for key in ("z", "u"):
            table = state.get(key, {})
            if not isinstance(table, Mapping):
                raise SparsifierStateError(f"ADMM state's '{key}' must be a dict of name -> tensor")
            if table and set(table) != set(shapes):
                odd = sorted(set(table) ^ set(shapes))[0]
                raise SparsifierStateError(
                    f"ADMM state's '{key}' does not cover the pruned layers (differs at '{odd}'): it "
                    "was saved for another model or other targets"
                )
            for name, value in table.items():
                if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                    raise SparsifierStateError(
                        f"ADMM state's '{key}' for '{name}' is not a floating-point tensor"
                    )
                if tuple(value.shape) != shapes[name]:
                    raise SparsifierStateError(
                        f"ADMM state's '{key}' for '{name}' has shape {tuple(value.shape)}, but the "
                        f"parameter is {shapes[name]}: it was saved for another model"
                    )
            tables[key] = table
        if bool(tables["z"]) != bool(tables["u"]):
            raise SparsifierStateError(
                "ADMM state has one of 'z' and 'u' without the other: the state is inconsistent"
            )
        if self.pretrain_steps <= step < self.prune_step and not tables["z"]:
            raise SparsifierStateError(
                f"ADMM state at optimizer step {step} is in the ADMM phase (steps {self.pretrain_steps} to "
                f"{self.prune_step}) but holds no 'z'/'u': it is incomplete; save it with state_dict()"
            )

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        params = {t.name: t.param for t in self.targets}
        self.z = {n: shard_like(z.to(params[n].device), params[n]) for n, z in state.get("z", {}).items()}
        self.u = {n: shard_like(u.to(params[n].device), params[n]) for n, u in state.get("u", {}).items()}
