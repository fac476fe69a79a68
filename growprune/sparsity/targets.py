"""Which parameters are pruned, and why every other weight matrix stays dense.

The default follows the GaP paper and every sparse-training library users compare with: the
weight matrices of convolutions, linear layers (also transformers' ``Conv1D``, GPT-2's linear
layer stored ``[in, out]``) and attention projections. Biases, norms and embeddings stay dense
because they are a tiny share of the parameters and pruning them hurts accuracy far more than it
saves. A weight tied to an embedding (a language model's output head) is the embedding, so it
stays dense too, even though one of its names belongs to an ``nn.Linear``. Anything else can be
requested by name pattern; a request the library cannot serve is an error, never a silent skip.
:func:`dense_matrices` says, for each weight matrix left dense, why.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from growprune.sparsity.compact import dense_shape

DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)
# MultiheadAttention keeps its input projection as raw parameters; out_proj is an nn.Linear.
ATTENTION_PARAM_NAMES = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
DEFAULT_KINDS = "Linear/Conv/Conv1D/attention"
# Where LoRA adapters live, recognised by exact path components (never substrings: a layer named
# `flora_up` or `explorer_down` is an ordinary layer):
# * PEFT's LoRA (and DoRA) inside a wrapped layer: `lora_A`/`lora_B` are ModuleDicts of nn.Linear
#   (or Conv) keyed by adapter name (`q.lora_A.default.weight`), the embedding variants
#   ParameterDicts; the wrapped layer's own weight is `base_layer.weight`. loralib keeps `lora_A`/
#   `lora_B` as raw parameters of the layer, which the same names cover.
# * kohya-ss / diffusers LoRA networks: `x.lora_down.weight`, `x.lora_up.weight`.
LORA_ADAPTER_NAMES = frozenset(
    {
        "lora_A",
        "lora_B",
        "lora_embedding_A",
        "lora_embedding_B",
        "lora_magnitude_vector",
        "lora_down",
        "lora_up",
    }
)
# `down`/`up` are adapter matrices only inside a LoRA container: `x.lora.down`, diffusers'
# `to_q.lora_layer.down` (LoRACompatibleLinear) and `to_q_lora.down` (its attention processors).
# A `down`/`up` anywhere else (a U-Net's up/down blocks) is an ordinary layer.
LORA_PAIR_PARTS = frozenset({"down", "up"})
LORA_CONTAINER_NAMES = frozenset({"lora", "lora_layer"})


def _peft_tuner_layer() -> type | None:
    """peft's ``BaseTunerLayer`` if the model's code already imported peft (never imported here)."""
    loaded = sys.modules.get("peft.tuners.tuners_utils")
    found = getattr(loaded, "BaseTunerLayer", None)
    return found if isinstance(found, type) else None


def _is_lora_container(part: str) -> bool:
    return part in LORA_CONTAINER_NAMES or (part.endswith("_lora") and len(part) > len("_lora"))


def lora_adapter_part(model: nn.Module, name: str) -> str | None:
    """The adapter a parameter belongs to (``"lora_A"``, ``"lora_down"``, ``"lora.up"``, ...) when
    `name` lies inside a LoRA / PEFT adapter or is one, else None.

    Recognised by peft's own declaration when peft is loaded (a ``BaseTunerLayer`` lists its
    adapter sub-modules in ``adapter_layer_names``, which covers LoRA and its relatives), and by
    LoRA's names otherwise (:data:`LORA_ADAPTER_NAMES`, ``down``/``up`` inside a
    :data:`LORA_CONTAINER_NAMES` module or one named ``*_lora``), matched against whole path
    components, without importing peft.
    """
    tuner = _peft_tuner_layer()
    module: nn.Module | None = model
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in LORA_ADAPTER_NAMES:
            return part
        if part in LORA_PAIR_PARTS and i > 0 and _is_lora_container(parts[i - 1]):
            return f"{parts[i - 1]}.{part}"
        if i == len(parts) - 1:
            break  # the parameter itself: not a module
        if (
            tuner is not None
            and isinstance(module, tuner)
            and part in tuple(getattr(module, "adapter_layer_names", ()) or ())
        ):
            return part
        module = module._modules.get(part) if module is not None else None
    return None


def _lora_alias(model: nn.Module, names: Iterable[str]) -> tuple[str, str] | None:
    """(alias, adapter part) for the first of `names` inside a LoRA adapter, if any."""
    for n in names:
        part = lora_adapter_part(model, n)
        if part is not None:
            return n, part
    return None


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2 and relatives): a linear layer whose weight is ``[in, out]``.

    Recognised without importing transformers (it is an optional dependency and slow to import):
    by isinstance when the model's code already imported it, else by class name plus its ``nf``
    (output features) attribute and a 2-D weight, which is the whole of its interface we rely on.
    """
    loaded = sys.modules.get("transformers.pytorch_utils")
    conv1d_type = getattr(loaded, "Conv1D", None)
    if conv1d_type is not None and isinstance(module, conv1d_type):
        return True
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
    )


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
        """The weight's shape as the model defines it (the dense one in compact storage)."""
        return dense_shape(self.module, self.leaf)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_path, _, leaf = name.rpartition(".")
    return (model.get_submodule(module_path) if module_path else model), leaf


def _is_default_kind(module: nn.Module, leaf: str) -> bool:
    """A Linear/Conv/Conv1D weight or an attention projection (embedding ties are checked apart)."""
    if leaf == "weight" and (isinstance(module, DEFAULT_MODULE_TYPES) or is_conv1d(module)):
        return True
    return isinstance(module, nn.MultiheadAttention) and leaf in ATTENTION_PARAM_NAMES


def _embedding_alias(model: nn.Module, names: Iterable[str]) -> str | None:
    """The first of `names` (aliases of one parameter) that is an embedding's weight, if any."""
    return next((n for n in names if isinstance(_owner(model, n)[0], EMBEDDING_TYPES)), None)


def _is_default_target(model: nn.Module, names: Sequence[str]) -> bool:
    """Some alias is a default kind and no alias is an embedding: a head tied to the token
    embedding is the embedding table itself, and pruning it prunes the input vocabulary.
    LoRA adapter matrices are not default targets either: they are a low-rank update, and
    ``merge_and_unload`` adds their dense product to the base weight, so pruning them makes
    nothing sparse; the wrapped layer's ``base_layer.weight`` is the target."""
    if _embedding_alias(model, names) is not None or _lora_alias(model, names) is not None:
        return False
    return any(_is_default_kind(*_owner(model, n)) for n in names)


def _input_first(model: nn.Module, names: Sequence[str]) -> bool:
    """True when the parameter is stored ``[in, out]`` (a Conv1D weight) under all its names.

    A tensor that a Conv1D reads as ``[in, out]`` and another module as ``[out, in]`` has no one
    input dimension for N:M groups, so that is an error rather than a guess.
    """
    layouts = {n: is_conv1d(_owner(model, n)[0]) for n in names}
    if len(set(layouts.values())) > 1:
        conv = next(n for n, first in layouts.items() if first)
        other = next(n for n, first in layouts.items() if not first)
        raise ValueError(
            f"cannot prune '{names[0]}': it is read as [in, out] by Conv1D ('{conv}') and as [out, in] "
            f"by another module ('{other}'), so its input dimension is ambiguous; exclude it"
        )
    return any(layouts.values())


def _parametrized_defaults(model: nn.Module) -> list[str]:
    """Linear/Conv layers whose weight is computed by a parametrization (weight_norm, ...).

    Their `weight` is not a tensor growprune can mask in place, so by default they are an error
    that names them rather than a layer left dense without a word.
    """
    from torch.nn.utils import parametrize

    return [
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if (isinstance(module, DEFAULT_MODULE_TYPES) or is_conv1d(module))
        and parametrize.is_parametrized(module, "weight")
        and lora_adapter_part(model, f"{name}.weight") is None
    ]


DenseKind = Literal[
    "excluded", "not_named", "embedding", "tied_to_embedding", "lora_adapter", "not_selected", "other"
]
# Kinds that are dense by design or by the user's choice; the others are warned about.
DENSE_BY_DESIGN: frozenset[str] = frozenset(
    {"excluded", "not_named", "embedding", "tied_to_embedding", "lora_adapter"}
)


@dataclass(frozen=True)
class DenseMatrix:
    """A weight matrix (>= 2-D, floating point) that is not pruned, and why.

    `kind` is machine-readable: ``excluded`` (an `exclude` pattern), ``not_named`` (explicit
    `targets` do not name it), ``embedding``, ``tied_to_embedding`` (one of its names is an
    embedding's weight), ``lora_adapter`` (a LoRA/PEFT adapter matrix), ``not_selected`` (a
    default kind that the attached sparsifier does not prune, i.e. its own `targets`/`exclude`
    left it out) or ``other`` (not a default kind: LSTM,
    ConvTranspose, raw parameters). `reason` says the same for a person. One entry per tensor,
    under its first name; `aliases` are all the names it is reachable under (tied weights).
    """

    name: str
    shape: tuple[int, ...]
    kind: DenseKind
    reason: str
    aliases: tuple[str, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _aliases(model: nn.Module) -> list[list[str]]:
    """Every parameter's names in registration order, one list per tensor (tied weights share)."""
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return list(by_id.values())


def _matching(names: Sequence[str], patterns: Sequence[str]) -> str | None:
    return next((p for p in patterns for n in names if fnmatch.fnmatchcase(n, p)), None)


def _dense_reason(
    model: nn.Module, names: Sequence[str], include: Sequence[str], excluded: Sequence[str]
) -> tuple[DenseKind, str]:
    """Why the parameter reachable as `names` is not pruned: the first rule that keeps it dense."""
    pattern = _matching(names, excluded)
    if pattern is not None:
        return "excluded", f"excluded by pattern '{pattern}'"
    if include:
        return "not_named", "not named in `targets`"
    embedding = _embedding_alias(model, names)
    others = [n for n in names if n != embedding]
    if embedding == names[0]:
        tied = f" (tied to {', '.join(repr(n) for n in others)})" if others else ""
        return "embedding", f"embedding{tied}"
    if embedding is not None:
        return "tied_to_embedding", f"tied to embedding '{embedding}'"
    lora = _lora_alias(model, names)
    if lora is not None:
        return "lora_adapter", (
            f"LoRA adapter matrix ({lora[1]}): a low-rank update whose merge adds a dense product to "
            "the base weight, so the base layer's weight is pruned instead; prune after "
            "merge_and_unload() for a sparse merged model"
        )
    if any(_is_default_kind(*_owner(model, n)) for n in names):
        return "not_selected", f"a {DEFAULT_KINDS} weight the sparsifier's `targets`/`exclude` left out"
    return "other", f"not a {DEFAULT_KINDS} weight ({type(_owner(model, names[0])[0]).__name__})"


def dense_matrices(
    model: nn.Module,
    taken: Iterable[str],
    targets: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
) -> list[DenseMatrix]:
    """Every weight matrix (>= 2-D, floating point) of `model` not in `taken`, with the reason.

    `taken` holds the pruned parameters' names (any alias). `targets` and `exclude` are the
    patterns the pruned set was chosen with (as for :func:`find_targets`); they only make the
    reasons precise, they do not choose anything here.
    """
    taken = set(taken)
    include, excluded = _as_patterns(targets), _as_patterns(exclude)
    params = dict(model.named_parameters(remove_duplicate=False))
    found = []
    for names in _aliases(model):
        param = params[names[0]]
        if taken.intersection(names) or param.dim() < 2 or not param.is_floating_point():
            continue
        kind, reason = _dense_reason(model, names, include, excluded)
        found.append(DenseMatrix(names[0], tuple(param.shape), kind, reason, tuple(names)))
    return found


def untargeted_matrices(
    model: nn.Module, taken: Iterable[str], exclude: str | Sequence[str] | None = None
) -> list[str]:
    """Names of weight matrices left dense that are neither embeddings (nor tied to one) nor excluded.

    Embeddings stay dense by design; anything else here (LSTM/GRU weights, ConvTranspose, custom
    modules' raw parameters) is warned about so that it is never dense without anyone noticing.
    `taken` holds the pruned parameters' names (any alias).
    """
    return [d.name for d in dense_matrices(model, taken, None, exclude) if d.kind not in DENSE_BY_DESIGN]


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
    means the default set: Linear/Conv/Conv1D weights and attention projections, minus embeddings,
    anything tied to one and LoRA adapter matrices (a PEFT layer's ``base_layer.weight`` is
    pruned). `exclude` patterns are removed afterwards. Every pattern must match something, so
    that a typo cannot leave a layer dense without anyone noticing. A Conv1D weight
    (default or named) gets ``input_first=True``, so N:M groups run along its input dimension.
    """
    if targets is not None and not isinstance(targets, str) and len(targets) == 0:
        raise ValueError(
            "targets is an empty list, which would prune nothing; leave it out for the default targets"
        )
    include = _as_patterns(targets)
    excluded = _as_patterns(exclude)
    aliases = _aliases(model)
    all_names = [n for names in aliases for n in names]

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
    for names in aliases:
        canonical = names[0]
        module, leaf = _owner(model, canonical)
        if include:
            wanted = any(fnmatch.fnmatchcase(n, p) for n in names for p in include)
        else:
            wanted = _is_default_target(model, names)
        if not wanted or any(fnmatch.fnmatchcase(n, p) for n in names for p in excluded):
            continue
        _check_can_handle(canonical, getattr(module, leaf))
        chosen.append(Target(canonical, module, leaf, tuple(names), _input_first(model, names)))
    if not chosen:
        raise ValueError(
            f"no prunable parameters found: the model has no {DEFAULT_KINDS} weights left after "
            "`exclude` (embeddings and weights tied to them stay dense by default); pass "
            "`targets=[...]` name patterns to choose some"
        )
    return chosen
