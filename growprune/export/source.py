"""What an export is made from: a run directory, a checkpoint file, or a live model.

A checkpoint keeps the model's state dict with the mask buffers (``fc.weight_mask`` next to
``fc.weight``) and the resolved recipe, but not every constructor argument: the input size and
class count come from the data when the run starts. Rather than load a data set at export time,
those few arguments are read off the weight shapes and the guess is verified by building the
model and comparing every shape, so an export either names a model that rebuilds exactly or
fails saying which argument is missing.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from growprune.bounded import regular_file
from growprune.checkpoint import CheckpointError, load_checkpoint, numbered_checkpoints
from growprune.export.errors import ExportError, ExportUsageError, ExportWarning
from growprune.models.registry import build_model, list_models, model_builder
from growprune.sparsity.masks import MASK_SUFFIX, MASKED_MODULE_ATTR, stored_mask
from growprune.sparsity.sharding import full, is_sharded

# Constructor arguments the training engine fills in from the data (see train/engine.py).
DATA_ARGS = ("in_features", "in_channels", "num_classes")
RUN_CHECKPOINTS = ("final.pt", "best.pt")


@dataclass
class ExportSource:
    """A plain state dict (no mask buffers), the masks of its pruned tensors, and provenance."""

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    origin: str
    model_spec: dict[str, Any] | None = None  # {"name": ..., "args": {...}}
    recipe: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    gathered: bool = False  # whole tensors of a sharded model: every rank has them, rank 0 writes


def checkpoint_candidates(path: Path) -> list[Path]:
    """A checkpoint file as given; in a run directory, its checkpoints in the order export prefers
    them: ``final.pt``, ``best.pt``, then the numbered ones, newest first."""
    if path.is_file():
        return [path]
    if not os.path.lexists(path):
        raise ExportUsageError(f"{path}: no such run directory or checkpoint file")
    if not path.is_dir():  # a FIFO, a link to /dev/zero, a dangling link or a loop: named as such
        regular_file(
            path,
            max_bytes=2**62,
            fail=lambda where, why: ExportUsageError(
                f"{where} {why.replace('the file itself', 'a checkpoint file or a run directory')}"
            ),
        )
    directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = [directory / name for name in RUN_CHECKPOINTS if (directory / name).is_file()]
    found += reversed(numbered_checkpoints(directory))
    if not found:
        raise ExportError(
            f"{path}: no checkpoints found (looked for {', '.join(RUN_CHECKPOINTS)} and ckpt-*.pt)"
        )
    return found


def _what_is_wrong(path: Path, err: CheckpointError) -> str:
    """The predicate of the CheckpointError naming ``path``: "is corrupt or truncated (...)"."""
    text, prefix = str(err), f"checkpoint {path} "
    return text[len(prefix) :] if text.startswith(prefix) else f"fails to load ({text})"


def read_checkpoint(path: Path) -> tuple[Path, dict[str, Any], list[Path]]:
    """The checkpoint to export, its payload, and the unreadable ones skipped to get there.

    A checkpoint file is read as given. In a run directory an unreadable ``final.pt`` (truncated,
    corrupt, not a growprune checkpoint) is skipped for ``best.pt``, then for the newest numbered
    checkpoint that reads, with an :class:`ExportWarning` naming what was skipped and why: the
    weights exported are then not the final ones, which must not go unnoticed.

    Raises:
        ExportError: the file given, or every checkpoint of the run, is unreadable (each named
            with its reason).
    """
    if path.is_file():
        try:
            return path, load_checkpoint(path), []
        except CheckpointError as err:
            raise ExportError(str(err)) from None
    skipped: list[tuple[Path, str]] = []
    for ckpt in checkpoint_candidates(path):
        try:
            payload = load_checkpoint(ckpt)
        except CheckpointError as err:
            skipped.append((ckpt, _what_is_wrong(ckpt, err)))
            continue
        if skipped:
            (first, why), rest = skipped[0], skipped[1:]
            also = "".join(f"; {p.name} is unreadable too: it {r}" for p, r in rest)
            warnings.warn(
                f"{first} is unreadable: it {why}{also}; exporting {ckpt.name} instead",
                ExportWarning,
                stacklevel=4,  # the caller of export_model
            )
        return ckpt, payload, [p for p, _ in skipped]
    (first, why), rest = skipped[0], skipped[1:]
    also = "".join(f"; {p.name} {r}" for p, r in rest)
    raise ExportError(f"{path}: no readable checkpoint: {first} {why}{also}; restore a copy or train again")


def split_masks(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """State dict with mask buffers -> (state without masks, {param name: bool mask})."""
    masks: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        stem = key[: -len(MASK_SUFFIX)]
        if key.endswith(MASK_SUFFIX) and stem in state and value.dtype == torch.bool:
            masks[stem] = value
    plain = {
        k: v for k, v in state.items() if not (k.endswith(MASK_SUFFIX) and k[: -len(MASK_SUFFIX)] in masks)
    }
    return plain, masks


def check_masks(source: ExportSource) -> None:
    """Refuse weights that are nonzero where their mask prunes: such a model is not the sparse one."""
    for name, mask in source.masks.items():
        weight = source.state[name]
        if tuple(mask.shape) != tuple(weight.shape):
            raise ExportError(
                f"{source.origin}: mask of '{name}' has shape {tuple(mask.shape)} but the weight "
                f"{tuple(weight.shape)}"
            )
        bad = (weight.detach() != 0) & ~mask.to(weight.device)
        count = int(bad.sum())
        if count:
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ExportError(
                f"{source.origin}: masks and weights disagree in '{name}': {count} weight(s) are nonzero "
                f"where the mask prunes them (first at index {first}); this is not a consistent sparse "
                "model, refusing to export it"
            )


def from_checkpoint(path: Path, model_args: Mapping[str, Any] | None = None) -> ExportSource:
    """Read a growprune checkpoint (or the right one in a run directory)."""
    ckpt, payload, skipped = read_checkpoint(Path(path))
    state, masks = split_masks(payload["model"])
    recipe = payload.get("recipe") or {}
    model = recipe.get("model") or {}
    if "name" not in model:
        raise ExportError(f"checkpoint {ckpt}: its recipe has no model.name, so the model cannot be rebuilt")
    source = ExportSource(
        state=state,
        masks=masks,
        origin=f"checkpoint {ckpt}",
        recipe=recipe,
        info={
            "checkpoint": str(ckpt),
            "step": payload.get("position", {}).get("step"),
            "trained_with": payload.get("version"),
            **({"skipped_unreadable": [p.name for p in skipped]} if skipped else {}),
        },
    )
    # The engine records the constructor arguments it resolved from the data (e.g. a translation
    # model's vocabulary size); older checkpoints have only the recipe's.
    resolved = (payload.get("model_spec") or {}).get("args") or {}
    args = {**dict(model.get("args") or {}), **dict(resolved), **dict(model_args or {})}
    source.model_spec = resolve_model_spec(str(model["name"]), args, state, source.origin)
    return source


def attached_masks(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The masks of the sparsifier attached to a live model, persistent buffers or not, under every
    key of `state` (the model's state dict) their parameter is saved as.

    A sparsifier built with ``persistent_masks=False`` (what the Trainer and Lightning callbacks
    do, so that framework checkpoints load into fresh models) keeps its masks out of
    ``model.state_dict()``, but they are still buffers of the modules, recorded under
    :data:`~growprune.sparsity.masks.MASKED_MODULE_ATTR`.
    """
    masks: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for leaf, buffer in getattr(module, MASKED_MODULE_ATTR, {}).items():
            key = f"{module_name}.{leaf}" if module_name else leaf
            mask = stored_mask(module, leaf, buffer)  # gathered when sharded (FSDP2)
            if key in state and isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
                masks[key] = mask.detach()
    return masks


def from_module(
    model: nn.Module, model_name: str | None = None, model_args: Mapping[str, Any] | None = None
) -> ExportSource:
    """A live model (masks attached or not, persistent or not); the builder is known only if the
    caller names it. A model sharded with FSDP2 gives its whole tensors, gathered from every rank
    (so every rank must export it; rank 0 writes the file)."""
    raw = model.state_dict()
    sharded = any(is_sharded(v) for v in raw.values())
    state, masks = split_masks({k: full(v.detach()) for k, v in raw.items()})
    for key, mask in attached_masks(model, state).items():
        masks.setdefault(key, mask)
    source = ExportSource(state=state, masks=masks, origin=f"model {type(model).__name__}", gathered=sharded)
    if model_name is not None:
        source.model_spec = resolve_model_spec(model_name, dict(model_args or {}), state, source.origin)
    return source


def _guess_data_args(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Input size, input channels and class count as the weight shapes imply them."""
    weights = [v for k, v in state.items() if v.is_floating_point() and v.dim() >= 2 and k.endswith("weight")]
    guesses: dict[str, int] = {}
    if weights:
        guesses["num_classes"] = int(weights[-1].shape[0])
        linear = [w for w in weights if w.dim() == 2]
        conv = [w for w in weights if w.dim() > 2]
        if linear:
            guesses["in_features"] = int(linear[0].shape[1])
        if conv:
            guesses["in_channels"] = int(conv[0].shape[1])
    return guesses


def resolve_model_spec(
    name: str, args: dict[str, Any], state: Mapping[str, torch.Tensor], origin: str
) -> dict[str, Any]:
    """Complete the builder arguments and prove that they rebuild a model of exactly these shapes."""
    if name not in list_models():
        raise ExportError(
            f"{origin}: model {name!r} is not in growprune's model registry (known: "
            f"{', '.join(list_models())}), so growprune.load could not rebuild it; register the builder "
            "with growprune.models.register_model(name, builder), or export from Python with "
            "export_model(model, out) and load with growprune.load(path, model=<your module>)"
        )
    accepted = inspect.signature(model_builder(name)).parameters
    guessed = {k: v for k, v in _guess_data_args(state).items() if k in accepted and k in DATA_ARGS}
    full = {**{k: v for k, v in guessed.items() if k not in args}, **args}
    filled = sorted(set(full) - set(args))
    try:
        built = build_model(name, **full)
    except (TypeError, ValueError) as err:
        raise ExportError(f"{origin}: cannot rebuild model {name!r} with arguments {full}: {err}") from None
    expected = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [
        f"{k}: built {expected[k]}, stored {found[k]}"
        for k in expected
        if k in found and expected[k] != found[k]
    ]
    if problems:
        hint = (
            f" (filled in from the weight shapes: {', '.join(f'{k}={full[k]}' for k in filled)})"
            if filled
            else ""
        )
        raise ExportError(
            f"{origin}: model {name!r} built with {full}{hint} does not match the stored weights: "
            f"{'; '.join(problems[:4])}{' ...' if len(problems) > 4 else ''}; supply the missing "
            "constructor arguments with --model-arg KEY=VALUE (model_args= in Python)"
        )
    return {"name": name, "args": full}
