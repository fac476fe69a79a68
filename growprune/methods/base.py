"""The one sparsifier every method builds on.

A method is a schedule of mask changes. Everything else -- finding targets, spreading sparsity
over layers, scoring, masking weights/gradients/optimizer state, saving and restoring -- lives
here once, so a method is a short subclass that overrides a few hooks:

* ``prepare()``: derive structure from the model (partitions), validate; no side effects;
* ``on_start()``: set the initial masks (skipped when the sparsifier is built from a saved state);
* ``on_step(step)``: change masks when the schedule says so (``step`` counts optimizer steps);
* ``before_optimizer_step(step)``: touch gradients before the optimizer uses them (RigL
  records dense gradients, ADMM adds its penalty);
* ``check_can_step(step)``: refuse a step the schedule cannot take (P-GaP without a merge);
* ``describe_phase(step)``: what the schedule is doing, for progress bars and reports;
* ``extra_state()`` / ``load_extra_state()``: method tensors such as ADMM's Z and U.

Who drives the schedule: the optimizer. Everything happens in hooks on the (unwrapped) torch
optimizer, because a user's loop, Lightning's closure step, the Hugging Face Trainer's wrapped
optimizer and AMP's GradScaler all end in ``torch.optim.Optimizer.step`` -- and only a step that
really ran reaches its hooks (GradScaler skips the call on inf gradients, accelerate skips it
between accumulation steps). So the schedule counts optimizer steps that happened, and
``sparsifier.step()`` is optional: the README's loop calls it, framework callbacks do not, both
are correct.

* Gradient hooks (``register_post_accumulate_grad_hook`` on every pruned weight): a gradient is
  masked as soon as backward has accumulated it -- inside a closure too -- so clipping and
  gradient-norm logging see the sparse gradient (RigL's update steps excepted: it reads them).
* Pre-step hook: weights, masks or optimizer state changed outside the optimizer since the last
  step (a partial ``load_state_dict``, an in-place edit, ``optimizer.load_state_dict``) are
  found by version counters and masked again; gradients that changed since their hook masked
  them (manual ones, in-place rescaling, data-parallel write-backs) are masked again. With a
  closure (Lightning, LBFGS) the gradients do not exist yet, so the hook wraps the closure and
  does this right after it has run backward.
* Post-step hook: weights are masked again (skipped for SGD, Adam and AdamW, whose update of an
  entry with zero gradient, weight and state is exactly zero, weight decay included -- the pass
  cost ~5% of an MLP step), the step is counted and the schedule runs.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import numbers
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from types import FunctionType
from typing import Any, ClassVar

import torch
from torch import nn

from growprune.methods.errors import SparsifierRemovedError, SparsifierStateError
from growprune.methods.settings import (
    BudgetValue,
    Default,
    Fixed,
    MethodSettings,
    RunLength,
    StepArgument,
    as_count,
    beyond_run,
)
from growprune.records import MaskEvent, Phase, PhaseName
from growprune.seeding import check_seed, is_bool
from growprune.sparsity.compact import (
    COMPACT_MODULES,
    ReadDenseGradient,
    compact_state,
    dense_weight,
    fit_state_to_layout,
    is_compact,
    make_compact,
    make_dense,
    mask_of,
    positions_of,
    release_scratch,
    tune_malloc,
)
from growprune.sparsity.consensus import default_group, verify_masks_equal
from growprune.sparsity.distribution import (
    DistributionSpec,
    allocate_keep_counts,
    layer_sparsities,
    validate_distribution,
    validate_sparsity,
)
from growprune.sparsity.masks import MASK_SUFFIX, MaskSet, tensor_stamp
from growprune.sparsity.optim_state import mask_optimizer_state, reset_optimizer_state, unwrap_optimizer
from growprune.sparsity.partition import PartitionSpec, partition_layers
from growprune.sparsity.patterns import Pattern, check_nm_shape, nm_mask, parse_pattern, topk_mask
from growprune.sparsity.scoring import (
    DenseGradient,
    LazyScores,
    gradient_magnitude,
    magnitude,
    random_scores,
    restrict,
)
from growprune.sparsity.sharding import (
    check_sharding,
    full,
    inside_checkpoint_state_init,
    is_sharded,
    replaced_parameter_error,
)
from growprune.sparsity.targets import find_targets, untargeted_matrices

# Exact classes (not subclasses, which may change the update rule) whose step keeps an entry at
# exactly 0 when its gradient, weight and optimizer state are all 0.
ZERO_PRESERVING_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
)

RESET_MODES = ("all", "changed")
# How a pruned layer is held: "masked" (a dense weight multiplied by its mask) or "compact"
# (kept values and their positions only: growprune.sparsity.compact).
STORAGES = ("masked", "compact")
INIT_MODES = ("random", "magnitude")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def constructor_arguments(cls: type, stop_at: type | None = None) -> list[str]:
    """Every keyword `cls`'s constructor accepts, following ``**kwargs`` up the chain of bases
    (without those of `stop_at` and above: e.g. the shared arguments of :class:`Sparsifier`)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is stop_at:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this constructor takes nothing further up the chain
    return [n for n in names if n != "self"]


def _skipped_inside(optimizer: torch.optim.Optimizer) -> bool:
    """True when GradScaler ran a fused optimizer's step that skipped itself on inf gradients.

    GradScaler does not call ``step`` for other optimizers when it finds inf/NaN gradients, so
    their hooks never see such a step; optimizers that do their own unscaling (``fused=True``)
    are always called, with ``found_inf`` set on them for the duration of the step.
    """
    found_inf = getattr(optimizer, "found_inf", None)
    return isinstance(found_inf, torch.Tensor) and bool(found_inf.item())


def gradient_scale(optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """The loss scale still in ``.grad`` during a step (GradScaler with a fused optimizer
    unscales inside the kernel), so a method adding to gradients can scale what it adds; None
    when the gradients are unscaled."""
    scale = getattr(optimizer, "grad_scale", None)
    return scale if isinstance(scale, torch.Tensor) else None


class _Undo:
    """What building a sparsifier changed: target weights and their optimizer state.

    Kept only until the first optimizer step, so that a framework's order -- restore model and
    optimizer, build the sparsifier, load its saved state -- ends exactly at the saved run.
    A weight or state entry written again after construction (the other order: model or
    optimizer loaded after the sparsifier was built) is newer than this copy and is left alone.
    A state entry is restored whole, so state that construction cleared (P-GaP's and C-GaP's
    optimizer reset) comes back too. Costs one copy of the pruned weights and of their optimizer
    state, in host memory, for that time -- or, with `spill` (compact storage, whose point is
    not to hold the dense model), in an anonymous temporary file that is gone once closed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, targets: Sequence[Any], spill: bool = False) -> None:
        self.optimizer = optimizer
        # Host memory, not the accelerator's: a GPU that just fits the model must not run out
        # because of a copy that is almost never used.
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self._file: Any = None
        if spill:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until the first step)
            with torch.no_grad():  # torch.save writes each tensor's storage as it is: no second copy
                saved = ([t.param.detach() for t in targets], [optimizer.state.get(p) for p in self.params])
                torch.save(saved, self._file)
            self._file.flush()
            self.weights = [(t.param, None) for t in targets]
            self.states: list[dict[str, tuple[Any, torch.device | None]] | None] = [None] * len(self.params)
            entries = [optimizer.state.get(p) for p in self.params]
            self._devices = [None if e is None else {k: _device_of(v) for k, v in e.items()} for e in entries]
        else:
            with torch.no_grad():
                self.weights = [(t.param, _host_copy(t.param.detach())) for t in targets]
            # Every parameter's state entry (None: it had none): a reset clears biases' state too.
            self.states = []
            for param in self.params:
                state = optimizer.state.get(param)
                self.states.append(
                    None if state is None else {k: (_host_copy(v), _device_of(v)) for k, v in state.items()}
                )
        self.weight_stamps: list[tuple[int, ...]] = []
        self.state_stamps: list[Any] = []

    def _read_spilled(self) -> None:
        """The spilled copies back into memory (only when a restore needs them)."""
        self._file.seek(0)
        weights, states = torch.load(self._file, map_location="cpu", weights_only=False)
        self.weights = [(param, value) for (param, _), value in zip(self.weights, weights)]
        for i, (state, devices) in enumerate(zip(states, self._devices)):
            self.states[i] = None if state is None else {k: (v, devices[k]) for k, v in state.items()}
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _state_stamp(self, param: torch.Tensor) -> Any:
        state = self.optimizer.state.get(param)
        if state is None:
            return None
        return {k: tensor_stamp(v) if isinstance(v, torch.Tensor) else repr(v) for k, v in state.items()}

    def seal(self) -> None:
        """Remember weights and state as construction left them; only those are rolled back."""
        self.weight_stamps = [tensor_stamp(param) for param, _ in self.weights]
        self.state_stamps = [self._state_stamp(param) for param in self.params]

    def unchanged(self) -> tuple[list[bool], list[bool]]:
        """Which weights and which state entries are still as construction left them (only
        those are rolled back): read before anything else touches them."""
        weights = [tensor_stamp(p) == stamp for (p, _), stamp in zip(self.weights, self.weight_stamps)]
        states = [self._state_stamp(p) == stamp for p, stamp in zip(self.params, self.state_stamps)]
        return weights, states

    @torch.no_grad()
    def restore(self, plan: tuple[list[bool], list[bool]] | None = None) -> None:
        weights, states = plan if plan is not None else self.unchanged()
        if self._file is not None:
            self._read_spilled()
        for (param, value), restore in zip(self.weights, weights):
            if restore:
                param.copy_(value)
        for param, entry, restore in zip(self.params, self.states, states):
            if not restore:
                continue  # the optimizer state was loaded or changed since: it is newer
            current = self.optimizer.state.get(param, {})
            if entry is None:
                self.optimizer.state.pop(param, None)
            else:
                self.optimizer.state[param] = {
                    k: _put_back(value, device, current.get(k)) for k, (value, device) in entry.items()
                }


def _host_copy(value: Any) -> Any:
    return value.to("cpu", copy=True) if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _device_of(value: Any) -> torch.device | None:
    return value.device if isinstance(value, torch.Tensor) else None


def _put_back(saved: Any, device: torch.device | None, current: Any) -> Any:
    """A saved state value back where the optimizer kept it, into the same tensor if it is still there."""
    if not isinstance(saved, torch.Tensor):
        return copy.deepcopy(saved)
    if isinstance(current, torch.Tensor) and current.shape == saved.shape and current.device == device:
        return current.copy_(saved)
    return saved.to(device, copy=True)


def check_mask(name: str, mask: Any, shape: tuple[int, ...], what: str = "mask") -> torch.Tensor:
    """A saved mask that can be installed for parameter `name` of `shape`, or SparsifierStateError."""
    if not isinstance(mask, torch.Tensor):
        raise SparsifierStateError(f"{what} for '{name}' is a {type(mask).__name__}, not a bool tensor")
    if tuple(mask.shape) != tuple(shape):
        raise SparsifierStateError(
            f"{what} for '{name}' has shape {tuple(mask.shape)}, but the parameter is {tuple(shape)}: "
            "it was saved for another model"
        )
    if mask.dtype != torch.bool:
        raise SparsifierStateError(
            f"{what} for '{name}' has dtype {mask.dtype}; masks are torch.bool (True = kept): "
            "convert it with .bool() if it holds 0/1"
        )
    if mask.layout != torch.strided:
        raise SparsifierStateError(f"{what} for '{name}' has layout {mask.layout}; pass a dense bool tensor")
    if mask.is_meta:
        # A meta tensor has a shape and no values (a model built under torch.device("meta"), or a
        # checkpoint read with map_location="meta"): there is nothing to install. A mask on any
        # real device is fine: it is copied to its parameter's device.
        raise SparsifierStateError(
            f"{what} for '{name}' is on the meta device, so it holds no values; load the saved state "
            "with map_location='cpu' (or the parameters' device)"
        )
    return mask


class Sparsifier:
    """Base class: masks, their application, and the bookkeeping shared by all methods."""

    method: ClassVar[str] = "base"
    # How reports, tables and `growprune list` name the method.
    title: ClassVar[str] = "base"
    supports_nm: ClassVar[bool] = True
    # Methods that grow pruned weights back need every target to be trained: a frozen weight
    # regrown at 0 stays 0, so the real sparsity would drift above what the masks say.
    regrows: ClassVar[bool] = False
    # Whether every data-parallel rank holds the same masks (P-GaP's workers differ by design).
    ranks_share_masks: ClassVar[bool] = True
    # Runs on FSDP2-sharded models (growprune.sparsity.sharding); False: refused in one line.
    supports_sharding: ClassVar[bool] = True
    # The method's recipe keys beyond the shared ones (see growprune.methods.settings).
    settings: ClassVar[type[MethodSettings]] = MethodSettings
    # How growprune's trainer runs it: "steps" (one model, step after step) or "rounds" (K
    # workers per round, merged at its end: P-GaP). Names a loop of growprune.train.loops.
    loop: ClassVar[str] = "steps"
    # The StepArgument class attributes of the class and its bases, in declaration order
    # (collected by __init_subclass__): integrations let users give them as fractions of the run
    # (growprune.integrations.schedule_kwargs), fit_to_run fills them from its length.
    step_arguments: ClassVar[tuple[StepArgument, ...]] = ()
    # Recipe keys (settings fields) handed to the constructor under their own name and kept as
    # attributes of that name (collected by __init_subclass__): arguments_from and config() read them.
    settings_arguments: ClassVar[tuple[str, ...]] = ()
    # settings_arguments that config() leaves out (they only shape another entry of it).
    config_omits: ClassVar[tuple[str, ...]] = ()
    # The schedule of the method's paper as recipe keys of its settings, for a run of any budget:
    # a BudgetValue (OfBudget, EverySteps) follows from the budget, any other value is as it is;
    # keys left out take the method's declared defaults for the run. See paper_settings.
    paper_schedule: ClassVar[Mapping[str, Any]] = {}
    # A short run in which each kind of the method's events happens (every phase, every kind of
    # mask change): constructor arguments, a step argument's as a Default of the run's length
    # (the StepArgument vocabulary), other ones as values. See short_schedule.
    short_run: ClassVar[Mapping[str, Any]] = {}
    _removed: bool = False  # set by remove(); a class default so that repr() works during __init__

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | Any,
        *,
        sparsity: float | None = 0.8,
        distribution: DistributionSpec = "uniform",
        targets: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        pattern: str | Pattern = "unstructured",
        seed: int = 0,
        state: Mapping[str, Any] | None = None,
        persistent_masks: bool = True,
        process_group: Any = "auto",
        allow_empty_layers: bool = False,
        storage: str = "masked",
    ) -> None:
        """`optimizer` may wrap a torch optimizer (accelerate, Lightning, DeepSpeed-style
        ``.optimizer``). `state` (from :meth:`state_dict`) resumes a saved run: the saved masks
        and schedule position are installed instead of initial masks, so a model and optimizer
        restored first (as frameworks do) are left as they were. `persistent_masks=False` keeps
        the mask buffers out of ``model.state_dict()`` (the masks still travel in this
        sparsifier's state), for frameworks that load model checkpoints into fresh models.
        `process_group`: after every mask change the ranks of this group compare mask checksums
        and a difference is an error (invariant 6); ``"auto"`` is all ranks when
        torch.distributed runs with more than one (none for P-GaP), ``None`` turns it off.
        A sparsity that would prune every weight of a layer (which cuts the network: its output
        no longer depends on its input) is refused naming the layer, unless
        ``allow_empty_layers=True``. `storage`: ``"masked"`` trains a dense weight multiplied by
        its mask; ``"compact"`` holds a pruned layer's kept values and their positions only (and
        optimizer state for those only), so sparse training takes less memory than dense
        (growprune.sparsity.compact); the same masks and losses either way."""
        self.model = model
        self.optimizer = unwrap_optimizer(optimizer)
        self.pattern = parse_pattern(pattern)
        self.distribution = validate_distribution(distribution)
        self.sparsity = self._resolve_sparsity(sparsity)
        self.seed = check_seed(seed)
        self.allow_empty_layers = bool(allow_empty_layers)
        self.storage = check_choice("storage", storage, STORAGES)
        shared = process_group != "auto" or self.ranks_share_masks
        self._rank_group = default_group(process_group) if shared else None
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
        self._check_optimizer_holds_targets()
        # The parameter objects this sparsifier was built on (the same objects the model holds,
        # so no memory; strong references, so that a deepcopy of model and hooks maps them too).
        self._built_on = [t.param for t in self.targets]
        self.sharded = check_sharding(
            model,
            {t.name: t.param for t in self.targets},
            self.title,
            supported=self.supports_sharding,
            storage=self.storage,
        )
        self._compactable = self._compactable_targets()
        shapes = [tuple(t.shape) for t in self.targets]
        self.numels = {t.name: t.numel for t in self.targets}
        sparsities = layer_sparsities(self.names, shapes, self.sparsity, self.distribution)
        self.layer_sparsity = dict(zip(self.names, sparsities))
        self.keep_counts = self.keep_counts_at(1.0)
        if not allow_empty_layers:
            self._check_no_empty_layer()
        self.step_count = 0
        self.history: list[MaskEvent] = []
        self._removed = False
        self._stamp: list[tuple[int, int]] = []  # weight versions after the last step we saw
        self._state_dirty = False  # optimizer state was loaded from outside
        self._undo: _Undo | None = None
        self._accumulates = False  # compact layers saw gradient accumulation (see _arm_capture)
        self._stateless_at_save: list[int] = []  # from a loaded state (see _drop_made_up_state)
        self._unhooked: list[Any] = []  # targets without a gradient hook yet (frozen so far)
        self._outer_step: Any = None  # frame of the optimizer step our pre-hook is inside
        self._nested_steps = 0
        self.prepare()  # structure and validation: nothing has been touched yet
        # in compact storage every layer it holds starts dense, its storage holding its mask
        held = [t.name for t in self._compactable]
        self.mask_set = MaskSet(self.targets, persistent=persistent_masks, held=held)
        self._synced_revision = -1  # mask revision at which weights and state were last masked
        self._skip_weight_pass = type(self.optimizer) in ZERO_PRESERVING_OPTIMIZERS
        self._hooks: list[Any] = []
        try:
            if state is not None:
                self.load_state_dict(state)
            else:
                # Construction zeroes weights and optimizer state; keep what it zeroes until the
                # first step so that a load_state_dict() that follows can undo it exactly.
                self._undo = _Undo(self.optimizer, self.targets, spill=self.storage == "compact")
                self.on_start()
                self._sync_weights_and_state()
                self._undo.seal()
            self._hooks = [
                self.optimizer.register_step_pre_hook(self._before_optimizer_step),
                self.optimizer.register_step_post_hook(self._after_optimizer_step),
                self.optimizer.register_load_state_dict_post_hook(self._after_optimizer_load),
            ]
            # prepended: before FSDP2's own pre-forward of a model sharded before this sparsifier
            self._hooks.append(self.model.register_forward_pre_hook(self._check_before_forward, prepend=True))
            self._unhooked = list(self.targets)
            self._hook_gradients()
        except BaseException:
            # Leave model and optimizer as they were: no buffers, no hooks, no zeroed weights.
            if self._undo is not None:
                self._undo.seal()
                plan = self._undo.unchanged()
                self._to_dense_storage()
                self._undo.restore(plan)
            self.remove()
            raise

    def _check_no_empty_layer(self) -> None:
        empty = [n for n in self.names if self.keep_counts[n] == 0]
        if empty:
            name = empty[0]
            more = f" (and {len(empty) - 1} more layers)" if len(empty) > 1 else ""
            raise ValueError(
                f"sparsity {self.layer_sparsity[name]:g} prunes every one of the {self.numels[name]} "
                f"weights of '{name}'{more}, which cuts the network; lower the sparsity, exclude the "
                "layer, or set allow_empty_layers=True (method.allow_empty_layers: true) if that is intended"
            )

    # -- storage ----------------------------------------------------------------------------
    def _compactable_targets(self) -> list[Any]:
        """The targets compact storage holds (none in masked storage); the others stay masked,
        said once in a warning naming them and why."""
        if self.storage != "compact":
            return []
        tune_malloc()
        held, refused = [], []
        for t in self.targets:
            # Exact types: a subclass's forward, or an owner such as MultiheadAttention (whose
            # out_proj is a Linear subclass it never calls), may read the weight directly.
            if type(t.module) not in COMPACT_MODULES or t.leaf != "weight":
                refused.append(f"{t.name} ({type(t.module).__name__})")
            elif len(t.aliases) > 1:
                refused.append(f"{t.name} (tied to {t.aliases[1]})")
            elif t.param.numel() > 2**31 - 1:
                refused.append(f"{t.name} (past int32 positions)")
            else:
                held.append(t)
        if refused:
            warnings.warn(
                f"compact storage holds the weights of nn.Linear and nn.Conv layers (exact types) used by "
                "their own layer only; "
                f"{len(refused)} pruned weights stay in masked storage: {', '.join(refused[:4])}"
                f"{' ...' if len(refused) > 4 else ''}",
                stacklevel=4,
            )
        return held

    def _fit_storage(self, names: Sequence[str] | None = None) -> None:
        """Compact storage follows the masks: a layer whose mask keeps everything (C-GaP's dense
        partition, GMP before its first prune) is dense, any other holds its kept values only;
        either way its storage then holds its mask (:meth:`MaskSet.hold`). Values and optimizer
        state move with it; a position new to a layer starts at 0. Layers whose storage holds
        their mask already fit it."""
        if not self._compactable:
            return
        wanted = None if names is None else set(names)
        self._fit(
            t for t in self._compactable
            if (wanted is None or t.name in wanted) and not self.mask_set.is_held(t.name)
        )  # fmt: skip

    def _install_masks(self, new_masks: Mapping[str, torch.Tensor]) -> None:
        """Install new masks. In compact storage each layer that shrinks is fitted as soon as its
        mask is in, so its real mask buffer lives only that long: a lazy mapping (SET, RigL)
        makes one new mask at a time, and the masks of compact layers are never all whole."""
        if not self._compactable:
            self.mask_set.update(new_masks)
            return
        compactable = {t.name: t for t in self._compactable}

        def installed() -> Iterator[Any]:
            for name, mask in new_masks.items():
                self.mask_set.set(name, mask)
                del mask  # the buffer holds it until the layer is fitted; nothing else may
                if name in compactable:
                    yield compactable[name]

        self._fit(installed())

    def _fit(self, targets: Iterable[Any]) -> None:
        """Fit each of `targets` to its mask as it comes: layers that shrink at once, those that
        grow after all others shrank (a phase change never holds both dense)."""
        growing = [t for t in targets if not self._shrink(t)]
        for t in growing:
            self._grow(t)
        self._storage_changed()

    def _shrink(self, target: Any) -> bool:
        """Store `target` compactly at its mask's positions and let that storage hold the mask;
        False (nothing done) if the mask keeps everything."""
        mask = self.mask_set.mask(target.name)
        if bool(mask.all()):
            return False
        make_compact(target.module, mask, self.optimizer, mask_buffer=f"{target.leaf}{MASK_SUFFIX}")
        self.mask_set.hold(target.name)
        return True

    def _grow(self, target: Any) -> None:
        """`target` dense (its mask keeps everything), its storage holding that mask."""
        make_dense(target.module, self.optimizer)
        self.mask_set.hold(target.name)

    def _storage_changed(self) -> None:
        self.mask_set.set_compact(frozenset(t.name for t in self._compactable if is_compact(t.module)))
        self._arm_capture()

    def _to_dense_storage(self) -> None:
        """Every compact layer back to a dense weight (remove(), and undoing construction); a
        mask its storage held is a real buffer again first (a dense layer's holds all True)."""
        mask_set = getattr(self, "mask_set", None)
        for t in getattr(self, "_compactable", []):
            if mask_set is not None and is_compact(t.module):
                mask_set.release(t.name)
            make_dense(t.module, self.optimizer)
        if mask_set is not None:
            mask_set.set_compact(frozenset())

    def _arm_capture(self, drop: bool = False) -> None:
        """Tell compact layers what the coming step's update reads of their dense gradient
        (RigL: the candidates it could grow; with gradient accumulation seen, the whole gradient).
        `drop`: a step has used what was gathered (right after it), so the next one starts afresh."""
        step = self.step_count + 1
        wanted = self.wants_dense_gradients(step)
        states = [(t.name, compact_state(t.module)) for t in self._compactable]
        if any(state is not None and state.accumulated for _, state in states):
            self._accumulates = True
        for name, state in states:
            if state is None:
                continue
            if wanted:
                count = None if self._accumulates else self.growth_candidates(name, step)
                state.read = ReadDenseGradient(count)
            else:
                state.read = None
            if drop or not wanted:
                state.gathered = None
            if drop:
                state.passes = 0

    def weight_of(self, name: str) -> torch.Tensor:
        """Target `name`'s weight as a dense tensor, whatever its storage (scores read this)."""
        target = self.mask_set.by_name[name]
        if is_compact(target.module):
            return dense_weight(target.module)
        return full(target.param.detach())  # gathered when sharded: every rank reads it

    def take_dense_gradients(self, names: Sequence[str]) -> dict[str, DenseGradient]:
        """What backward left of the dense gradient of each layer of `names`, taken now -- on a
        step whose update reads it (:meth:`wants_dense_gradients`), before gradients are masked:
        |gradient| as a float32 tensor (masked storage copies ``.grad``; a compact layer that
        accumulated it), or a compact layer's :class:`GrowthCandidates`. Rank either with
        :func:`top_by_gradient`."""
        taken: dict[str, DenseGradient] = {}
        for name in names:
            target = self.mask_set.by_name[name]
            state = compact_state(target.module)
            if state is None:
                grad = target.param.grad
                taken[name] = gradient_magnitude(None if grad is None else full(grad), name)
                continue
            if target.param.grad is None:
                gradient_magnitude(None, name)  # no backward ran: the same error as masked storage
            gathered, state.gathered = state.gathered, None  # the record is the caller's now
            if gathered is None:  # the layer took no part in this step's backward passes
                gathered = torch.zeros(target.shape, dtype=torch.float32, device=target.param.device)
            taken[name] = gathered.abs_() if isinstance(gathered, torch.Tensor) else gathered
        return taken

    def growth_candidates(self, name: str, step: int) -> int | None:
        """How many of layer `name`'s pruned positions, those of largest |dense gradient|, the
        update at `step` can grow, when that (and the gradient at kept positions) is all it reads
        of the dense gradient; None (the default) reads the whole gradient. Compact storage then
        gathers only those in backward instead of the layer's dense gradient (exact for one
        backward pass per step; with gradient accumulation it keeps the whole gradient)."""
        del name, step
        return None

    def _check_optimizer_holds_targets(self) -> None:
        """An optimizer over another model's parameters would leave this model untrained and its
        schedule driven by someone else's steps. (Frozen targets are fine for methods that only
        prune: they stay masked.)"""
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        # Frozen targets under an optimizer of the same model's other parameters (a LoRA
        # fine-tune: the optimizer holds the adapters, the base weights are pruned) are fine.
        if not any(id(t.param) in held for t in self.targets) and not any(
            id(p) in held for p in self.model.parameters()
        ):
            raise ValueError(
                f"the optimizer holds none of the {len(self.targets)} pruned weights (e.g. "
                f"'{self.targets[0].name}') nor any other parameter of this model: build it over this "
                "model's parameters"
            )
        if self.regrows:
            frozen = [t.name for t in self.targets if id(t.param) not in held or not t.param.requires_grad]
            if frozen:
                raise ValueError(
                    f"'{frozen[0]}' is not trained (frozen or not in the optimizer), but {self.method} "
                    "regrows pruned weights at 0 and a frozen one would stay 0; exclude it "
                    f"(exclude=['{frozen[0]}']) or train it"
                )

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
    def prepare(self) -> None:
        """Derive structure (partitions) and validate, before anything is changed."""

    def on_start(self) -> None:
        """Set initial masks. Default: everything kept. Not called when resuming from a state."""

    def on_step(self, step: int) -> None:
        """Change masks if the schedule says so at optimizer step `step` (1-based)."""

    def before_optimizer_step(self, step: int) -> None:
        """Called before optimizer step `step` runs, with the dense gradients in `.grad`."""

    def wants_dense_gradients(self, step: int) -> bool:
        """True if `before_optimizer_step(step)` must see the gradients of pruned weights.

        Gradients are otherwise masked as backward accumulates them (so clipping sees the
        sparse gradient); on such a step they are masked only after the method has read them.
        """
        del step
        return False

    def check_can_step(self, step: int) -> None:
        """Raise if optimizer step `step` must not run (called before it touches anything)."""

    def describe_phase(self, step: int) -> Phase:
        return Phase(PhaseName.DONE, step)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state

    def config(self) -> dict[str, Any]:
        """Arguments that define the schedule; a saved state must match them to be loaded: the
        shared ones, the declared step arguments and the settings handed to the constructor."""
        own = [a.name for a in self.step_arguments]
        own += [n for n in self.settings_arguments if n not in self.config_omits]
        return {
            "method": self.method,
            "sparsity": self.sparsity,
            "distribution": self.distribution,
            "pattern": str(self.pattern),
            "seed": self.seed,
            "targets": self.names,
            **{name: getattr(self, name) for name in own},
        }

    # Class-level declarations still readable after remove() (and anything private).
    _usable_after_remove: ClassVar[frozenset[str]] = frozenset({"remove", "removed"})

    # -- the training-loop API --------------------------------------------------------------
    def step(self) -> None:
        """Optional: the optimizer's hooks already did the work of this step.

        Calling it after ``optimizer.step()`` (the README's loop) is harmless and masks at once
        any weight edited since the step; it never advances the schedule, so a step that
        GradScaler skipped is not counted twice or at all.
        """
        self._check_attached()
        self._sync_if_changed()

    def _check_attached(self) -> None:
        if self._removed:
            raise SparsifierRemovedError(_removed_message(type(self).__name__, "step()"))

    def _inside_a_step(self) -> bool:
        """True when this pre-hook runs inside an optimizer step whose hooks already ran.

        torch wraps ``step`` of every optimizer class with the hooks, so an optimizer subclass
        whose ``step`` calls ``super().step()`` runs them twice per step; counted twice, the
        schedule would run at double speed. The outer call is recognised by its frame still
        being on the stack (a step that raised never reached its post-hook; then it is not).
        """
        if self._outer_step is None:
            return False
        frame = sys._getframe(2)
        while frame is not None:
            if frame is self._outer_step:
                return True
            frame = frame.f_back
        self._outer_step, self._nested_steps = None, 0
        return False

    def _before_optimizer_step(self, optimizer: Any, args: tuple, kwargs: dict) -> tuple | None:
        del optimizer
        if self._inside_a_step() or (not self.optimizer.state and inside_checkpoint_state_init()):
            self._nested_steps += 1  # a step inside ours, or one that only makes optimizer state
            return None
        self._outer_step = sys._getframe(1)
        self._check_parameters_in_place()
        if self._stateless_at_save:
            self._drop_made_up_state()
        if self._compactable:
            release_scratch()  # backward is over: the step needs the memory, the next forward the buffer
        self.check_can_step(self.step_count + 1)
        if self._unhooked:
            self._hook_gradients()
        self._sync_if_changed()
        # torch passes `args` with the optimizer itself first: (self, closure?)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._prepare_gradients()
            return None

        def closure_then_mask() -> Any:
            loss = closure()
            self._prepare_gradients()
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_mask}
        return (args[0], closure_then_mask, *args[2:]), kwargs

    def _optimizer_params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _stateless_params(self) -> list[int]:
        state = self.optimizer.state
        return [i for i, p in enumerate(self._optimizer_params()) if not state.get(p)]

    def _drop_made_up_state(self) -> None:
        """First step after a load: optimizer state of parameters that had none when the state
        was saved was made by the loader since (torch.distributed.checkpoint's zero-gradient
        step), not by training; it goes, so the step makes it afresh as the saved run did."""
        params = self._optimizer_params()
        for index in self._stateless_at_save:
            if index < len(params):
                self.optimizer.state.pop(params[index], None)
        self._stateless_at_save = []

    def _check_parameters_in_place(self, *_: Any, in_forward: bool = False) -> None:
        """A pruned parameter replaced since construction (fully_shard applied after the
        sparsifier, a wrapper, ``load_state_dict(assign=True)``) would train unmasked: refused at
        the next forward (a model pre-hook) or optimizer step, whichever comes first. In a
        forward of a model the sparsifier was built on sharded, FSDP2 itself swaps in gathered
        parameters, so there only the optimizer step checks."""
        for t, built_on in zip(self.targets, self._built_on):
            now, original = getattr(t.module, t.leaf, None), built_on
            if now is original or (in_forward and is_sharded(original)):
                continue
            raise replaced_parameter_error(t.name, now)

    def _check_before_forward(self, *_: Any) -> None:
        self._check_parameters_in_place(in_forward=True)

    def _hook_gradients(self) -> None:
        """Gradient hooks on every trainable target; a frozen one gets its hook once it is
        unfrozen (gradual unfreezing), checked before each step."""
        for t in [t for t in self._unhooked if t.param.requires_grad]:
            hook = t.param.register_post_accumulate_grad_hook(partial(self._after_grad_accumulated, t.name))
            self._hooks.append(hook)
            self._unhooked.remove(t)

    def _after_grad_accumulated(self, name: str, param: torch.Tensor) -> None:
        del param
        if not self.wants_dense_gradients(self.step_count + 1):  # RigL's update steps read them first
            self.mask_set.mask_grad(name)

    def _prepare_gradients(self) -> None:
        self.before_optimizer_step(self.step_count + 1)
        self.mask_set.apply_to_grads()

    def _after_optimizer_step(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        del args, kwargs
        if self._nested_steps:
            self._nested_steps -= 1
            return
        self._outer_step = None
        if not self._skip_weight_pass:
            self.mask_set.apply_to_weights()
        if _skipped_inside(optimizer):
            self._stamp = self.mask_set.weight_stamp()
            return  # GradScaler + fused optimizer: the kernel skipped the update, so do we
        if self._undo is not None:
            self._undo.close()
            self._undo = None  # training has moved on: construction can no longer be undone
        self.step_count += 1
        self.on_step(self.step_count)
        self._arm_capture(drop=True)
        self._stamp = self.mask_set.weight_stamp()

    def _after_optimizer_load(self, optimizer: Any) -> None:
        del optimizer
        self._state_dirty = True  # loaded state may hold momentum of pruned weights

    def _sync_if_changed(self) -> None:
        """Mask again whatever changed outside the optimizer since the last step we saw."""
        stamp = self.mask_set.weight_stamp()  # also notices mask buffers changed from outside
        if self.mask_set.revision != self._synced_revision or self._state_dirty:
            self._sync_weights_and_state()
        elif stamp != self._stamp:
            self._fit_storage()  # a weight loaded into a compact layer may hold more than its mask
            self.mask_set.apply_to_weights()
            self._stamp = self.mask_set.weight_stamp()

    def _sync_weights_and_state(self) -> None:
        """Weights and optimizer state masked to the current masks; remembered as seen."""
        if self._state_dirty:
            self._fit_loaded_optimizer_state()
        self._fit_storage()
        self.mask_set.apply_to_weights()
        mask_optimizer_state(self.optimizer, self._masked_pairs(self.names))
        self._synced_revision = self.mask_set.revision
        self._state_dirty = False
        self._stamp = self.mask_set.weight_stamp()

    def _masked_pairs(self, names: Sequence[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, mask) of the layers among `names` in masked storage."""
        return self.mask_set.masked_pairs(names)

    def _fit_loaded_optimizer_state(self) -> None:
        """Optimizer state just loaded from a checkpoint of the other storage, laid out as each
        weight is now (the checkpoint was written with the masks now installed)."""
        for t in self.targets:
            param = t.param
            entries = self.optimizer.state.get(param, {})
            tensors = [v for v in entries.values() if torch.is_tensor(v) and v.dim() > 0]
            if all(v.shape == param.shape for v in tensors):
                continue  # laid out as the weight is (the common case: same storage)
            state = compact_state(t.module)
            if state is not None:
                positions = state.positions(t.module)
            else:
                positions = positions_of(self.mask_set.mask(t.name))
            fit_state_to_layout(self.optimizer, param, positions, t.shape)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Parameter name -> bool mask (True = kept). In masked storage these are the live buffers;
        in compact storage a layer's mask is made from its storage (a new tensor each time):
        change masks through :meth:`load_state_dict` or the model's ``load_state_dict``."""
        return self.mask_set.as_dict()

    # -- the schedule's length, declared once -------------------------------------------------
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the class's StepArgument declarations and give its settings their recipe keys."""
        super().__init_subclass__(**kwargs)
        found: dict[str, StepArgument] = {}
        for klass in reversed(cls.__mro__):
            found.update((k, v) for k, v in vars(klass).items() if isinstance(v, StepArgument))
        cls.step_arguments = tuple(found.values())
        if not dataclasses.is_dataclass(cls.settings):
            return  # register_method refuses it, naming what settings must be
        declared = {f.name for f in dataclasses.fields(cls.settings)}
        missing = [a.recipe_field() for a in cls.step_arguments if a.epochs and a.epochs not in declared]
        if missing:  # the epochs keys the settings do not declare themselves (with a default of their own)
            name = f"{cls.__name__}Settings"
            cls.settings = dataclasses.make_dataclass(name, missing, bases=(cls.settings,), kw_only=True)
            cls.settings.__module__, cls.settings.__qualname__ = cls.__module__, name
        epochs = {a.epochs for a in cls.step_arguments}
        ours = constructor_arguments(cls, stop_at=Sparsifier)
        cls.settings_arguments = tuple(
            f.name for f in dataclasses.fields(cls.settings) if f.name in ours and f.name not in epochs
        )

    @classmethod
    def arguments_from(cls, settings: Any, run: RunLength) -> dict[str, Any]:
        """Constructor arguments of the method's own recipe keys (`settings`): the step arguments'
        epochs in steps (left out: their default for the run), the other settings as they are."""
        steps: dict[str, int] = {}
        for arg in cls.step_arguments:
            if arg.epochs is not None:
                steps[arg.name] = arg.from_recipe(getattr(settings, arg.epochs), run, steps)
        return {**{name: getattr(settings, name) for name in cls.settings_arguments}, **steps}

    @classmethod
    def fit_to_run(cls, kwargs: dict[str, Any], given: set[str], total: int) -> None:
        """Fill the step arguments left out of `kwargs` (`given`: the ones the user set) from the
        run's length `total`, and refuse a schedule that does not fit in it: the one place the
        declared defaults meet a run's length (recipes without a key come here through
        :meth:`StepArgument.from_recipe`, which fills the same way)."""
        del given
        for arg in cls.step_arguments:
            value = kwargs.setdefault(arg.name, arg.fill(total, kwargs))
            if arg.within_run and value > total:
                raise beyond_run(cls.method, arg.name, value, total)
        cls.check_fit(kwargs, total)

    @classmethod
    def check_fit(cls, kwargs: Mapping[str, Any], total: int) -> None:
        """The method's own checks across its step arguments (all filled) in a run of `total` steps."""
        del kwargs, total

    @classmethod
    def check_schedule_arguments(cls, kwargs: Mapping[str, Any]) -> None:
        """Cheap checks of the method's own non-step arguments, before the run's length is known."""
        del kwargs

    # -- schedules of a chosen shape, for measuring and comparing methods ----------------------
    @classmethod
    def paper_settings(cls, epochs: float, steps_per_epoch: int, **chosen: Any) -> dict[str, Any]:
        """The recipe keys of the method's published schedule (``paper_schedule``) for a budget
        of `epochs` epochs of `steps_per_epoch` optimizer steps: each ``BudgetValue`` resolved,
        in declaration order (a value may use an earlier one). `chosen` sets keys of the schedule
        otherwise (``partitions=3``: K of a model with few layers; None keeps the paper's); keys
        the schedule does not have are ignored, so one call serves every method."""
        section: dict[str, Any] = {}
        for key, value in cls.paper_schedule.items():
            if chosen.get(key) is not None:
                value = chosen[key]
            if isinstance(value, BudgetValue):
                value = value.resolve(epochs, steps_per_epoch, section)
            section[key] = value
        return section

    @classmethod
    def short_schedule(cls, total: int) -> dict[str, Any]:
        """Constructor arguments that put each kind of the method's events (``short_run``) in a
        run of `total` optimizer steps; a step argument ``short_run`` leaves out takes its
        declared default for the run. Nothing here is checked against the run: a measured loop
        of a few steps may end inside a longer schedule."""
        kwargs: dict[str, Any] = {}
        for key, value in cls.short_run.items():
            kwargs[key] = value.steps(total, kwargs) if isinstance(value, Default) else value
        for arg in cls.step_arguments:
            if arg.name not in kwargs:
                kwargs[arg.name] = arg.fill(total, kwargs)
        return kwargs

    @classmethod
    def steady_schedule(cls, sparsity: float, never: int) -> dict[str, Any]:
        """Constructor arguments that hold the method, at `sparsity`, in its steady sparse phase
        from the first step on, with no mask change after it (`never`: a step no run reaches):
        a step argument whose declared default is a fixed step (the run's start) keeps it, every
        other one is `never`. A method whose steady phase needs more overrides this."""
        del sparsity
        return {
            arg.name: arg.default.value if isinstance(arg.default, Fixed) else never
            for arg in cls.step_arguments
        }

    @classmethod
    def schedule_epochs(cls, settings: Any) -> float | None:
        """Epochs the schedule itself lasts, or None when the run's length (training.epochs) is set
        by the user and the schedule fits into it."""
        del settings
        return None

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the whole schedule, fine-tuning included; None: open-ended."""
        return None

    def phase_starts(self) -> list[int] | None:
        """First step of each phase a per-phase learning-rate schedule restarts at; None: no phases."""
        return None

    @property
    def phase(self) -> Phase:
        return self.describe_phase(self.step_count)

    @property
    def done(self) -> bool:
        """True once the schedule has no more mask changes to make."""
        return self.phase.masks_final

    def current_sparsity(self) -> float:
        kept = sum(self.mask_set.kept(n) for n in self.names)
        return 1.0 - kept / sum(self.numels.values())

    def remove(self) -> None:
        """Detach from model and optimizer: drop the mask buffers and the optimizer hooks.

        The weights keep their zeros. The sparsifier is finished: every later use of it (``step``,
        ``masks``, ``state_dict``, ``load_state_dict``, ``phase``, ...) raises
        :class:`~growprune.methods.errors.SparsifierRemovedError` saying so; ``remove()`` again is
        harmless, and ``removed`` tells whether it happened.
        """
        if self._removed:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._built_on = []  # nothing to check any more (and the parameters are not ours to hold)
        self._to_dense_storage()  # the model is an ordinary one again, weights keeping their zeros
        mask_set = getattr(self, "mask_set", None)
        if mask_set is not None:
            mask_set.remove()
        self._removed = True
        self._outer_step, self._nested_steps = None, 0  # a frame (of a step that raised) cannot be pickled
        self.__class__ = _removed_class(type(self))

    @property
    def removed(self) -> bool:
        """True once :meth:`remove` has detached this sparsifier."""
        return self._removed

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
    ) -> Mapping[str, torch.Tensor]:
        """Masks keeping the highest scores of `names`, in this sparsifier's pattern.

        With the `global` distribution the layers in `names` are ranked together, so their
        total keep-count is respected while each layer's share follows the scores. Otherwise each
        layer is ranked on its own, when its mask is read (:class:`LazyScores`): installing them
        one at a time (:meth:`change_masks`), neither the scores nor the new masks of every layer
        exist at once. Read each mask once, before its layer changes (scores may read weights).
        """
        keep = self.keep_counts if keep is None else keep
        if self.pattern.is_nm:
            by_name = self.mask_set.by_name
            return LazyScores(names, lambda n: nm_mask(scores[n], self.pattern, by_name[n].input_first))
        if self.distribution == "global" and len(names) > 1:
            pooled = torch.cat([scores[n].reshape(-1) for n in names])
            flat = topk_mask(pooled, sum(keep[n] for n in names))
            pieces = flat.split([self.numels[n] for n in names])
            return {n: p.view_as(scores[n]) for n, p in zip(names, pieces)}
        return LazyScores(names, lambda n: topk_mask(scores[n], keep[n]))

    def keep_all(self, name: str) -> torch.Tensor:
        """A mask that keeps every weight of layer `name` (a grown partition's)."""
        target = self.mask_set.by_name[name]
        return torch.ones(target.shape, dtype=torch.bool, device=target.param.device)

    def magnitude_scores(self, names: Sequence[str]) -> LazyScores:
        """|weight| of each layer of `names`, made when read (one layer's copy at a time)."""
        return LazyScores(names, lambda n: magnitude(self.weight_of(n)))

    def random_scores(self, names: Sequence[str], *purpose: object) -> LazyScores:
        """Seeded random scores of each layer of `names`, made when read."""
        by_name = self.mask_set.by_name
        return LazyScores(
            names, lambda n: random_scores(by_name[n].shape, by_name[n].param.device, self.seed, *purpose, n)
        )

    def kept_by_magnitude(self, name: str, count: int) -> torch.Tensor:
        """The mask keeping the `count` largest-magnitude weights among those layer `name` keeps
        now (ties to the lowest flat index, as :func:`topk_mask`). In compact storage it ranks the
        kept values themselves (their order is their positions'), without the dense weight."""
        target = self.mask_set.by_name[name]
        state = compact_state(target.module)
        if state is None:
            return topk_mask(restrict(magnitude(self.weight_of(name)), self.mask_set.mask(name)), count)
        positions = state.positions(target.module)
        chosen = topk_mask(magnitude(target.param), count)
        return mask_of(positions[chosen], target.shape)

    def resolve_partitions(self, partitions: PartitionSpec, mode: str) -> list[list[str]]:
        return partition_layers(self.names, [self.numels[n] for n in self.names], partitions, mode, self.seed)

    def change_masks(self, new_masks: Mapping[str, torch.Tensor], event: str, reset: str = "changed") -> None:
        """Install new masks, zero pruned weights and their optimizer state, log the event."""
        if reset == "all":
            reset_optimizer_state(self.optimizer)
        # Compact layers are fitted as their masks come in (they drop their pruned values, nothing
        # to multiply), so masking the others never builds a float copy of a mask for a layer
        # about to be compact.
        self._install_masks(new_masks)
        self.mask_set.apply_to_weights()
        if reset != "all":
            mask_optimizer_state(self.optimizer, self._masked_pairs(list(new_masks)))
        self._synced_revision = self.mask_set.revision
        self.history.append(MaskEvent(self.step_count, event, self.phase, self.current_sparsity()))
        if self._rank_group is not None:
            verify_masks_equal(self.masks, self._rank_group, f"'{event}' at optimizer step {self.step_count}")

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "step": self.step_count,
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "history": [event.to_dict() for event in self.history],
            "extra": self.extra_state(),
            # Parameters without optimizer state now (a GaP reset cleared it): a loader that makes
            # state before loading into it (torch.distributed.checkpoint steps once with zero
            # gradients) gives them state that resumes differently; it is dropped again (see
            # _drop_made_up_state), so the run resumes exactly.
            "stateless": [
                i for i, p in enumerate(self._optimizer_params()) if not self.optimizer.state.get(p)
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore masks and schedule position; refuses a state from another schedule.

        Works in either order: before the model and optimizer are restored, or after (as
        frameworks do). In the second case, if no optimizer step has run since construction,
        the weights and optimizer state that construction zeroed are put back first, so the
        result is the saved run exactly.

        All or nothing: the whole state is checked first (keys, the schedule's arguments, every
        mask's name, shape, dtype and contents, the step, the history, the method's own state),
        and a state that fails any check raises :class:`SparsifierStateError` naming the problem
        with weights, masks, optimizer state and schedule position left exactly as they were.
        """
        masks, step, history = self._check_state(state)
        extra = state.get("extra") or {}
        if self._undo is not None:
            plan = self._undo.unchanged()
            self._to_dense_storage()  # the saved weights are dense copies
            self._undo.restore(plan)
            self._undo = None
        self.mask_set.update(masks)
        self.step_count = step
        self.history = history
        self.load_extra_state(extra)
        stateless = state.get("stateless")
        self._stateless_at_save = [int(i) for i in stateless] if isinstance(stateless, list) else []
        self._state_dirty = True  # an optimizer restored before us may hold the other storage's layout
        self._sync_weights_and_state()

    def _check_state(self, state: Any) -> tuple[dict[str, torch.Tensor], int, list[MaskEvent]]:
        """Everything :meth:`load_state_dict` installs, checked without changing anything."""
        if not isinstance(state, Mapping):
            raise SparsifierStateError(
                f"sparsifier state must be the dict made by state_dict(), got {type(state).__name__}"
            )
        for key in ("config", "step", "masks", "history"):
            if key not in state:
                raise SparsifierStateError(
                    f"sparsifier state has no '{key}': it was not made by state_dict()"
                )
        if not isinstance(state["config"], Mapping):
            raise SparsifierStateError(
                "sparsifier state's 'config' is not a dict: it was not made by state_dict()"
            )
        saved, ours = dict(state["config"]), self.config()
        if saved != ours:
            keys = sorted(set(saved) | set(ours), key=lambda k: (k != "method", k))  # method first
            diffs = [k for k in keys if saved.get(k) != ours.get(k)]
            details = ", ".join(f"{k}: saved {saved.get(k)!r} != now {ours.get(k)!r}" for k in diffs[:3])
            raise SparsifierStateError(
                f"sparsifier state does not match this sparsifier ({details}); build the sparsifier "
                "with the arguments of the run that saved it"
            )
        step = as_count(state["step"])
        if step is None or step < 0:
            raise SparsifierStateError(
                "sparsifier state's 'step' must be an integer >= 0 (optimizer steps), got "
                f"{type(state['step']).__name__} {state['step']!r}"
            )
        masks = self._check_saved_masks(state["masks"])
        history = self._check_history(state["history"], step)
        extra = state.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise SparsifierStateError(
                f"sparsifier state's 'extra' must be a dict, got {type(extra).__name__}"
            )
        self.check_extra_state(extra, step)
        return masks, step, history

    def _check_saved_masks(self, saved: Any) -> dict[str, torch.Tensor]:
        if not isinstance(saved, Mapping):
            raise SparsifierStateError(
                f"sparsifier state's 'masks' must be a dict of parameter name -> bool tensor, got "
                f"{type(saved).__name__}"
            )
        missing = [n for n in self.names if n not in saved]
        if missing:
            raise SparsifierStateError(
                f"sparsifier state has no mask for '{missing[0]}'"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + ": it was saved for another model or other targets"
            )
        unknown = [n for n in saved if n not in self.numels]
        if unknown:
            raise SparsifierStateError(
                f"sparsifier state has a mask for '{unknown[0]}', which this sparsifier does not prune: "
                "it was saved for another model or other targets"
            )
        masks = {}
        for target in self.targets:
            name, mask = target.name, saved[target.name]
            masks[name] = check_mask(name, mask, tuple(target.shape), "sparsifier state's mask")
            if not self.allow_empty_layers and mask.numel() and not bool(mask.any()):
                raise SparsifierStateError(
                    f"sparsifier state's mask for '{name}' prunes every weight of the layer, which cuts "
                    "the network; load it with allow_empty_layers=True if that is intended"
                )
        return masks

    @staticmethod
    def _check_history(saved: Any, step: int) -> list[MaskEvent]:
        if not isinstance(saved, Sequence) or isinstance(saved, (str, bytes)):
            raise SparsifierStateError(
                f"sparsifier state's 'history' must be a list, got {type(saved).__name__}"
            )
        return [_check_history_entry(i, entry, step) for i, entry in enumerate(saved)]

    def check_extra_state(self, state: Mapping[str, Any], step: int) -> None:
        """Raise :class:`SparsifierStateError` if `state` (from :meth:`extra_state`, saved at
        optimizer step `step`) cannot be loaded by :meth:`load_extra_state`. Must change
        nothing: it runs before anything of a saved state is installed."""
        del state, step

    def __repr__(self) -> str:
        if self._removed:
            return f"{type(self).__name__}(removed)"
        return (
            f"{type(self).__name__}(sparsity={self.sparsity}, distribution={self.distribution!r}, "
            f"pattern='{self.pattern}', layers={len(self.targets)}, phase='{self.phase}'"
            + (f", storage='{self.storage}')" if self.storage != "masked" else ")")
        )


_HISTORY_KEYS = ("step", "event", "phase", "sparsity")  # MaskEvent.to_dict()
_PHASE_COUNTS = ("round", "rounds", "dense_partition", "partitions")  # Phase's optional fields


def _check_history_entry(i: int, entry: Any, step: int) -> MaskEvent:
    """History entry `i` of a saved state (``MaskEvent.to_dict()``) at optimizer step `step`, checked
    strictly (unlike ``MaskEvent.from_dict``, which reads run logs leniently): a wrong entry means
    the state was edited or made by something else, and would otherwise surface later in reports."""

    def refuse(problem: str) -> SparsifierStateError:
        return SparsifierStateError(f"sparsifier state's history entry {i} {problem}")

    if not isinstance(entry, Mapping):
        raise refuse(f"is a {type(entry).__name__}, not a dict")
    for key in ("step", "event"):
        if key not in entry:
            raise refuse(f"has no '{key}': it was not made by state_dict()")
    unknown = [k for k in entry if k not in _HISTORY_KEYS]
    if unknown:
        raise refuse(
            f"has the unknown field {unknown[0]!r} (fields: {', '.join(_HISTORY_KEYS)}): it was not "
            "made by state_dict()"
        )
    at = as_count(entry["step"])
    if at is None or at < 0:
        raise refuse(f"has 'step' {entry['step']!r}; it must be an integer >= 0 (an optimizer step)")
    event = entry["event"]
    if not isinstance(event, str) or not event:
        raise refuse(f"has 'event' {event!r}; it must be the event's name, a non-empty string")
    if at > step:
        raise refuse(
            f"('{event}') is at optimizer step {at}, after the state's step {step}: the state is inconsistent"
        )
    sparsity = entry.get("sparsity")
    if sparsity is not None:
        if is_bool(sparsity) or not isinstance(sparsity, numbers.Real):
            raise refuse(f"has 'sparsity' {sparsity!r}; it must be a number in [0, 1] or None")
        sparsity = float(sparsity)
        if not (math.isfinite(sparsity) and 0.0 <= sparsity <= 1.0):
            raise refuse(f"has 'sparsity' {sparsity!r}; it must be a number in [0, 1] or None")
    return MaskEvent(at, event, _check_history_phase(entry.get("phase"), refuse), sparsity)


def _check_history_phase(phase: Any, refuse: Any) -> Phase | None:
    if phase is None:
        return None
    if not isinstance(phase, Mapping):
        raise refuse(f"has 'phase' of type {type(phase).__name__}; it must be a dict or None")
    unknown = [k for k in phase if k not in ("name", "step", *_PHASE_COUNTS)]
    if unknown:
        raise refuse(f"has the unknown phase field {unknown[0]!r}: it was not made by state_dict()")
    name = phase.get("name")
    if not isinstance(name, str) or not name:
        raise refuse(f"has phase 'name' {name!r}; it must be a non-empty string")
    counts: dict[str, int | None] = {}
    for key in ("step", *_PHASE_COUNTS):
        value = phase.get(key)
        if value is None and key != "step":
            counts[key] = None
            continue
        count = as_count(value)
        if count is None or count < 0:
            raise refuse(f"has phase '{key}' {value!r}; it must be an integer >= 0")
        counts[key] = count
    return Phase(name, **counts)  # type: ignore[arg-type]


def _removed_message(cls_name: str, what: str) -> str:
    return (
        f"this {cls_name} was removed with remove(), so {what} is no longer available (its masks and "
        "optimizer hooks are gone); build a new sparsifier on the model, or read what you need "
        "before remove()"
    )


_REMOVED_CLASSES: dict[type, type] = {}


def _class_level(cls: type, name: str) -> bool:
    """A class declaration (``method``, ``title``, ``settings``, a classmethod): valid after remove()."""
    try:
        value = inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    if isinstance(value, (classmethod, staticmethod)):
        return True
    return not isinstance(value, (property, FunctionType)) and not hasattr(value, "__get__")


def _removed_class(cls: type) -> type:
    """`cls` as a removed sparsifier becomes: a subclass (isinstance still holds, same name) whose
    public attributes raise SparsifierRemovedError instead of failing somewhere deep inside with an
    AttributeError. Swapped in by remove(), so attached sparsifiers pay nothing for it."""
    found = _REMOVED_CLASSES.get(cls)
    if found is not None:
        return found
    usable = cls._usable_after_remove  # type: ignore[attr-defined]

    def __getattribute__(self: Any, name: str) -> Any:
        if name.startswith("_") or name in usable or _class_level(cls, name):
            return object.__getattribute__(self, name)
        kind = inspect.getattr_static(cls, name, None)
        what = f"{name}()" if isinstance(kind, FunctionType) else name
        error = SparsifierRemovedError(_removed_message(cls.__name__, what))
        error.name, error.obj = name, self  # as an AttributeError: which attribute, of what
        raise error

    def __reduce_ex__(self: Any, protocol: Any) -> tuple[Any, ...]:
        # This class is made at run time, so pickle cannot find it by name (it would find `cls`,
        # a different object): record `cls` and rebuild the removed class from it when loading.
        # copy.copy/deepcopy go through here too.
        del protocol
        return (_new_removed, (cls,), dict(object.__getattribute__(self, "__dict__")))

    found = type(
        cls.__name__,
        (cls,),
        {
            "__getattribute__": __getattribute__,
            "__reduce_ex__": __reduce_ex__,
            "__qualname__": cls.__qualname__,
            "__module__": cls.__module__,
        },
    )
    _REMOVED_CLASSES[cls] = found
    return found


def _new_removed(cls: type) -> Any:
    """An empty removed `cls` sparsifier, which unpickling fills with its saved ``__dict__``."""
    return object.__new__(_removed_class(cls))
