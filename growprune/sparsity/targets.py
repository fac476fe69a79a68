"""Which parameters are pruned.

The default follows the GaP paper and every sparse-training library users compare with: the
weight matrices of convolutions, linear layers and attention projections. Biases, norms and
embeddings stay dense because they are a tiny share of the parameters and pruning them hurts
accuracy far more than it saves. Anything else can be requested by name pattern; a request
the library cannot serve is an error, never a silent skip.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)
# MultiheadAttention keeps its input projection as raw parameters; out_proj is an nn.Linear.
ATTENTION_PARAM_NAMES = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class Target:
    """One prunable parameter: where it lives and how to find it again."""

    name: str  # canonical (first registered) dotted name
    module: nn.Module  # module that owns the parameter under `leaf`
    leaf: str  # attribute name of the parameter on `module`
    aliases: tuple[str, ...]  # every dotted name the parameter is reachable under (tied weights)
    # True when the weight is stored [in, out] (transformers' Conv1D): N:M groups and sparse
    # kernels must then run along the first dimension instead of the last ones.
    input_first: bool = False

    @property
    def param(self) -> nn.Parameter:
        return getattr(self.module, self.leaf)

    @property
    def shape(self) -> torch.Size:
        return self.param.shape

    @property
    def numel(self) -> int:
        return self.param.numel()


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_path, _, leaf = name.rpartition(".")
    return (model.get_submodule(module_path) if module_path else model), leaf


def _is_default_target(module: nn.Module, leaf: str) -> bool:
    if isinstance(module, DEFAULT_MODULE_TYPES) and leaf == "weight":
        return True
    return isinstance(module, nn.MultiheadAttention) and leaf in ATTENTION_PARAM_NAMES


def _parametrized_defaults(model: nn.Module) -> list[str]:
    """Linear/Conv layers whose weight is computed by a parametrization (weight_norm, ...).

    Their `weight` is not a tensor growprune can mask in place, so by default they are an error
    that names them rather than a layer left dense without a word.
    """
    from torch.nn.utils import parametrize

    return [
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, DEFAULT_MODULE_TYPES) and parametrize.is_parametrized(module, "weight")
    ]


def untargeted_matrices(
    model: nn.Module, taken: Iterable[str], exclude: str | Sequence[str] | None = None
) -> list[str]:
    """Weight matrices (>= 2-D, floating point) that are not pruned, not embeddings, not excluded.

    Embeddings stay dense by design; anything else here (LSTM/GRU weights, ConvTranspose, custom
    modules' raw parameters) is reported so that it is never dense without anyone noticing.
    `taken` holds the pruned parameters' names (any alias).
    """
    taken = set(taken)
    excluded = _as_patterns(exclude)
    embeddings = (nn.Embedding, nn.EmbeddingBag)
    found = []
    for name, param in model.named_parameters():
        if name in taken or param.dim() < 2 or not param.is_floating_point():
            continue
        if isinstance(_owner(model, name)[0], embeddings) or any(
            fnmatch.fnmatchcase(name, p) for p in excluded
        ):
            continue
        found.append(name)
    return found


def _as_patterns(patterns: str | Iterable[str] | None) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    return list(patterns)


def _check_can_handle(name: str, param: torch.Tensor) -> None:
    if isinstance(param, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"cannot prune '{name}': it is an uninitialized lazy parameter; run one forward pass "
            "before creating the sparsifier"
        )
    if not param.is_floating_point():
        raise ValueError(f"cannot prune '{name}': dtype {param.dtype} is not floating point")
    if param.dim() < 2:
        raise ValueError(
            f"cannot prune '{name}': it is {param.dim()}-D (a bias or norm scale); only weight "
            "tensors with 2 or more dimensions can be pruned; exclude it from `targets`"
        )
    if param.layout != torch.strided:
        raise ValueError(f"cannot prune '{name}': layout {param.layout} is not a dense tensor")


def find_targets(
    model: nn.Module,
    targets: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
) -> list[Target]:
    """Resolve the prunable parameters of `model`, in registration order.

    `targets` are fnmatch patterns over parameter names (e.g. ``"encoder.*.weight"``); ``None``
    means the default set (Linear/Conv weights and attention projections). `exclude` patterns
    are removed afterwards. Every pattern must match something, so that a typo cannot leave a
    layer dense without anyone noticing.
    """
    include = _as_patterns(targets)
    excluded = _as_patterns(exclude)
    aliases: dict[int, list[str]] = {}
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        key = id(param)
        aliases.setdefault(key, []).append(name)
        first.setdefault(key, name)
    all_names = [n for names in aliases.values() for n in names]

    for pattern in include + excluded:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in all_names):
            hint = difflib.get_close_matches(pattern, all_names, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ValueError(f"pattern '{pattern}' matches no parameter of the model{extra}")

    if not include:
        blocked = [
            n for n in _parametrized_defaults(model) if not any(fnmatch.fnmatchcase(n, p) for p in excluded)
        ]
        if blocked:
            raise ValueError(
                f"cannot prune '{blocked[0]}': its weight is computed by a parametrization (e.g. "
                "weight_norm); remove the parametrization, name its tensor in `targets` (e.g. "
                f"'{blocked[0].rsplit('.', 1)[0]}.parametrizations.weight.original*'), or exclude it"
            )
    chosen: list[Target] = []
    for key, names in aliases.items():
        canonical = first[key]
        module, leaf = _owner(model, canonical)
        if include:
            wanted = any(fnmatch.fnmatchcase(n, p) for n in names for p in include)
        else:
            wanted = any(_is_default_target(*_owner(model, n)) for n in names)
        if not wanted or any(fnmatch.fnmatchcase(n, p) for n in names for p in excluded):
            continue
        _check_can_handle(canonical, getattr(module, leaf))
        chosen.append(Target(canonical, module, leaf, tuple(names)))
    if not chosen:
        raise ValueError(
            "no prunable parameters found: the model has no Linear/Conv/attention weights left "
            "after `exclude`; pass `targets=[...]` name patterns to choose some"
        )
    return chosen
