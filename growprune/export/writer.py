"""``export_model``: a checkpoint, run directory or live model -> one safetensors file.

The file is written to a temporary name and renamed, as checkpoints are, so an interrupted
export never leaves a half-written file that looks complete. The output path is checked before
anything is read (a directory, a path under a file, a directory that cannot be written are
refused with one line); missing parent directories are created.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from growprune.export import codec, compressed, fileformat
from growprune.export.errors import ExportError, ExportUsageError
from growprune.export.source import ExportSource, check_masks, from_checkpoint, from_module
from growprune.files import atomic_write, no_space_message
from growprune.version import __version__


@dataclass(frozen=True)
class ExportSummary:
    """What was written, and how it compares with the dense file of the same dtype."""

    path: Path
    format: str
    dtype: str
    file_bytes: int
    tensor_bytes: int
    dense_tensor_bytes: int
    pruned_layers: int
    sparsity: float
    source: str

    @property
    def ratio(self) -> float:
        """Tensor bytes relative to a dense export in the same dtype (header excluded)."""
        return self.tensor_bytes / self.dense_tensor_bytes if self.dense_tensor_bytes else 1.0

    def __str__(self) -> str:
        return (
            f"wrote {self.path} ({self.format}, {self.dtype}): {self.file_bytes / 1e6:.3f} MB, tensors "
            f"{self.ratio:.3f}x of a dense {self.dtype} export; {self.pruned_layers} pruned layer(s), "
            f"sparsity {self.sparsity:.4f} (from {self.source})"
        )


def _sparsity_table(source: ExportSource, dtype: torch.dtype) -> dict[str, Any]:
    layers = {}
    for name in source.masks:
        weight = codec.cast(source.state[name], dtype)
        zeros = int((weight == 0).sum())
        layers[name] = {
            "shape": list(weight.shape),
            "numel": weight.numel(),
            "zeros": zeros,
            "kept_by_mask": int(source.masks[name].sum()),
            "sparsity": zeros / weight.numel() if weight.numel() else 0.0,
        }
    numel = sum(v["numel"] for v in layers.values())
    zeros = sum(v["zeros"] for v in layers.values())
    return {"layers": layers, "numel": numel, "zeros": zeros, "overall": zeros / numel if numel else 0.0}


# A write refused for these reasons is a problem with the path chosen, not with the disk.
_PATH_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}
)


def check_out(out: str | os.PathLike[str]) -> Path:
    """The output path, refused up front if no file can be written there.

    Raises:
        ExportUsageError: the path is (or ends like) a directory, lies under a regular file, names
            something other than a regular file, or its nearest existing directory is not writable.
    """
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(tuple(s for s in (os.sep, os.altsep) if s)):
        raise ExportUsageError(
            f"output {text} names a directory (it ends with a separator); name the file to write, "
            f"e.g. {path / 'model.safetensors'}"
        )
    if path.is_dir():
        raise ExportUsageError(
            f"output {path} is a directory; name the file to write in it, e.g. {path / 'model.safetensors'}"
        )
    if path.exists() and not path.is_file():
        raise ExportUsageError(
            f"output {path} exists and is not a regular file (a device, pipe or socket); choose a file path"
        )
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise ExportUsageError(
            f"output {path} cannot be created: {existing} is a file, not a directory; "
            "choose an output path inside a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportUsageError(
            f"output {path} cannot be written: directory {existing} is not writable (permission denied); "
            "choose an output path in a directory you can write to"
        )
    return path


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    try:
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    except OSError as err:
        no_space = no_space_message(err)
        if no_space is not None:
            raise ExportError(no_space) from None
        reason = err.strerror or str(err)
        if err.errno in _PATH_ERRNOS:
            raise ExportUsageError(
                f"output {path} could not be written ({reason}); choose an output path you can write to"
            ) from None
        raise ExportError(
            f"output {path} could not be written ({reason}); check the space and health of its file system"
        ) from None


def build_tensors(
    source: ExportSource, fmt: str, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of the file and its layout entry per state key."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for key, value in source.state.items():
        stored = codec.cast(value, dtype)
        entry = {
            "shape": list(value.shape),
            "dtype": codec.tensor_dtype_name(stored.dtype),
            "encoding": "dense",
        }
        if fmt == "sparse" and key in source.masks:
            packed, values = codec.encode_sparse(value, source.masks[key], dtype)
            tensors[fileformat.MASK_KEY.format(key)] = packed
            tensors[fileformat.VALUES_KEY.format(key)] = values
            entry.update(encoding="bitmask", kept=values.numel())
        else:
            tensors[key] = stored
        layout[key] = entry
    return tensors, layout


def export_model(
    source: nn.Module | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str = "sparse",
    dtype: str | torch.dtype = "fp32",
    model_name: str | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> ExportSummary:
    """Export a run directory, checkpoint file or live model to ``out`` (safetensors).

    Args:
        source: run directory (uses checkpoints/final.pt, else best.pt, else the newest),
            checkpoint file, or an ``nn.Module`` (masks attached or already removed).
        format: ``"sparse"`` (bitmask + kept values for every masked tensor), ``"dense"``, or
            ``"compressed-tensors"``: ``out`` is then a Hugging Face model directory that
            ``transformers`` loads (a ``PreTrainedModel`` source, or a Trainer checkpoint folder
            with the callback's masks; see :mod:`growprune.export.compressed`).
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"`` for floating tensors.
        model_name, model_args: registry builder of a live model, so that :func:`growprune.load`
            can rebuild it; for checkpoints, ``model_args`` adds or overrides recipe arguments.

    Raises:
        ExportError: masks and weights disagree, the model cannot be rebuilt, unreadable input,
            the file could not be written. :class:`ExportUsageError` (a subclass) for arguments
            that cannot be used as given: ``out`` a directory, under a file or not writable, a
            source path that does not exist, an unknown format or dtype.
    """
    if format not in (*fileformat.FORMATS, compressed.FORMAT):
        raise ExportUsageError(
            f"format must be one of {', '.join((*fileformat.FORMATS, compressed.FORMAT))}, got {format!r}"
        )
    try:
        torch_dtype = codec.dtype_from_name(dtype)
    except ValueError as err:
        raise ExportUsageError(str(err)) from None
    if format == compressed.FORMAT:
        if model_name is not None or model_args:
            raise ExportUsageError(
                f"model_name= and model_args= are for growprune's own formats; {compressed.FORMAT!r} "
                "records the model in its config.json"
            )
        return compressed.export_compressed_tensors(source, out, torch_dtype)
    out_path = check_out(out)
    if isinstance(source, nn.Module):
        src = from_module(source, model_name, model_args)
    else:
        if model_name is not None:
            raise ExportUsageError(
                "model_name= is for live models; a checkpoint names its model in its recipe"
            )
        src = from_checkpoint(Path(source), model_args)
    if format == "sparse" and not src.masks:
        raise ExportError(
            f"{src.origin}: no masks (no sparsifier is attached, or it was removed), so nothing is known "
            "to be pruned; export while the sparsifier is attached (before remove()), or with format='dense'"
        )
    check_masks(src)
    tensors, layout = build_tensors(src, format, torch_dtype)
    sparsity = _sparsity_table(src, torch_dtype)
    meta = {
        "format": format,
        "format_version": str(fileformat.FORMAT_VERSION),
        "version": __version__,
        "dtype": codec.short_dtype_name(torch_dtype),
        "model": json.dumps(src.model_spec, default=str),
        "recipe": json.dumps(src.recipe, default=str),
        "sparsity": json.dumps(sparsity),
        "layout": json.dumps(layout),
        "source": json.dumps({"origin": src.origin, **src.info}),
        "sha256": fileformat.digest(tensors),
    }
    writes = not src.gathered or not dist.is_initialized() or dist.get_rank() == 0
    if writes:
        _write(out_path, tensors, {fileformat.PREFIX + k: v for k, v in meta.items()})
    file_bytes = [out_path.stat().st_size if writes else 0]
    if src.gathered and dist.is_initialized():  # every rank reports the size rank 0 wrote
        dist.broadcast_object_list(file_bytes, src=0)
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    dense_bytes = sum(
        v.numel() * (itemsize if v.is_floating_point() else v.element_size()) for v in src.state.values()
    )
    return ExportSummary(
        path=out_path,
        format=format,
        dtype=meta["dtype"],
        file_bytes=file_bytes[0],
        tensor_bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
        dense_tensor_bytes=dense_bytes,
        pruned_layers=len(src.masks),
        sparsity=sparsity["overall"],
        source=src.origin,
    )
