"""``load``: a file written by ``export_model`` -> the model, with exactly the exported weights.

Every check runs before the model is touched, and each failure names the file and the problem:
unreadable or truncated file, missing growprune metadata, a format newer than this reader,
layout entries that do not match the stored tensors, a checksum mismatch, or a model that
cannot be rebuilt (then ``model=`` supplies it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from growprune.export import codec, fileformat
from growprune.export.errors import ExportError
from growprune.sparsity.masks import MASK_SUFFIX


@dataclass
class ExportedFile:
    """Decoded contents of an export: metadata and the plain state dict in the stored dtype."""

    path: Path
    metadata: dict[str, Any]
    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    @property
    def model_spec(self) -> dict[str, Any] | None:
        return self.metadata["model"]


def _read_raw(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except Exception as err:  # safetensors raises its own error type, OSError, or ValueError
        raise ExportError(
            f"{path}: not a readable safetensors file, it is truncated or corrupt "
            f"({type(err).__name__}: {err})"
        ) from None
    return metadata, tensors


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The growprune metadata of an export, JSON fields decoded (reads the header only)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = handle.metadata() or {}
    except Exception as err:
        raise ExportError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    return _parse_metadata(path, raw)


def _parse_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    ours = {k[len(fileformat.PREFIX) :]: v for k, v in raw.items() if k.startswith(fileformat.PREFIX)}
    if not ours:
        raise ExportError(
            f"{path}: a safetensors file without growprune metadata; it was not written by growprune export"
        )
    missing = [k for k in fileformat.REQUIRED_METADATA if k not in ours]
    if missing:
        raise ExportError(f"{path}: growprune metadata lacks {', '.join(missing)}; the file is damaged")
    meta: dict[str, Any] = dict(ours)
    for key in ("model", "recipe", "sparsity", "layout", "source"):
        if key in ours:
            try:
                meta[key] = json.loads(ours[key])
            except json.JSONDecodeError as err:
                raise ExportError(
                    f"{path}: metadata field {key} is not valid JSON ({err}); the file is damaged"
                ) from None
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise ExportError(f"{path}: format_version {meta['format_version']!r} is not an integer") from None
    if version > fileformat.FORMAT_VERSION:
        raise ExportError(
            f"{path}: written in export format {version} by growprune {meta['version']}; "
            "this growprune reads "
            f"format {fileformat.FORMAT_VERSION} and older, upgrade growprune"
        )
    if meta["format"] not in fileformat.FORMATS:
        raise ExportError(f"{path}: unknown export format {meta['format']!r}")
    if meta["dtype"] not in codec.DTYPES:
        raise ExportError(f"{path}: unknown dtype {meta['dtype']!r} in metadata")
    if not isinstance(meta["layout"], dict):
        raise ExportError(f"{path}: metadata field layout is not a mapping; the file is damaged")
    return meta


def _expect(
    path: Path, tensors: dict[str, torch.Tensor], key: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    if key not in tensors:
        raise ExportError(f"{path}: tensor {key!r} named in the layout is missing; the file is damaged")
    tensor = tensors[key]
    if tensor.dtype != dtype or tuple(tensor.shape) != shape:
        raise ExportError(
            f"{path}: tensor {key!r} is {tensor.dtype} {tuple(tensor.shape)} "
            f"but the layout says {dtype} {shape}"
        )
    return tensor


def _decode(path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, entry in meta["layout"].items():
        try:
            shape = tuple(int(d) for d in entry["shape"])
            dtype = codec.TENSOR_DTYPES[entry["dtype"]]
            encoding = entry["encoding"]
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{path}: layout entry for {key!r} is malformed: {entry!r}") from None
        numel = int(torch.Size(shape).numel())
        if encoding == "dense":
            state[key] = _expect(path, tensors, key, dtype, shape)
            used.add(key)
        elif encoding == "bitmask":
            mkey, vkey = fileformat.MASK_KEY.format(key), fileformat.VALUES_KEY.format(key)
            packed = _expect(path, tensors, mkey, torch.uint8, (codec.packed_size(numel),))
            kept = int(codec.unpack_mask(packed, numel).sum())
            values = _expect(path, tensors, vkey, dtype, (kept,))
            state[key], masks[key] = codec.decode_sparse(packed, values, shape)
            masks[key] = masks[key].reshape(shape)
            used.update((mkey, vkey))
        else:
            raise ExportError(f"{path}: unknown encoding {encoding!r} for {key!r}")
    extra = sorted(set(tensors) - used)
    if extra:
        raise ExportError(
            f"{path}: tensors not described by the layout: {', '.join(extra[:5])}; the file is damaged"
        )
    return state, masks


def read_export(path: str | os.PathLike[str]) -> ExportedFile:
    """Read, verify and decode an export without building a model."""
    path = Path(path)
    raw_meta, tensors = _read_raw(path)
    meta = _parse_metadata(path, raw_meta)
    if fileformat.digest(tensors) != meta["sha256"]:
        raise ExportError(
            f"{path}: checksum mismatch, the tensor data is corrupt (sha256 differs from the metadata)"
        )
    state, masks = _decode(path, meta, tensors)
    return ExportedFile(path, meta, state, masks)


def _build(exported: ExportedFile) -> nn.Module:
    from growprune.models import registry

    spec = exported.model_spec
    path = exported.path
    if spec is None:
        raise ExportError(
            f"{path}: exported from a live model without a registry builder, "
            "so it cannot be rebuilt by name; "
            "pass model=<an nn.Module of the same architecture> to growprune.load"
        )
    name, args = spec.get("name"), spec.get("args", {})
    if name not in registry.list_models():
        raise ExportError(
            f"{path}: needs model builder {name!r} with arguments {args}, which this growprune does not have "
            f"(known: {', '.join(registry.list_models())}); register it with "
            "growprune.models.register_model(name, builder) or pass "
            "model=<an nn.Module of the same architecture> to growprune.load"
        )
    try:
        return registry.build_model(name, **args)
    except (TypeError, ValueError) as err:
        raise ExportError(
            f"{path}: cannot rebuild model {name!r} with arguments {args} ({err}); "
            "pass model=<module> to growprune.load"
        ) from None


def _with_mask_buffers(module: nn.Module, exported: ExportedFile) -> dict[str, torch.Tensor]:
    """A supplied model with a sparsifier attached gets its mask buffers from the file as well."""
    state = dict(exported.state)
    for key in module.state_dict():
        stem = key[: -len(MASK_SUFFIX)]
        if key.endswith(MASK_SUFFIX) and key not in state and stem in state:
            state[key] = exported.masks.get(stem, state[stem] != 0)
    return state


def _check_fits(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: model {expected[k]}, file {tuple(state[k].shape)}"
        for k in expected
        if k in state and expected[k] != tuple(state[k].shape)
    ]
    if problems:
        raise ExportError(
            f"{path}: the weights do not fit the model: {'; '.join(problems[:4])}"
            f"{' ...' if len(problems) > 4 else ''}"
        )


def load(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the exported model (either format) and load its weights exactly; returns it in eval mode.

    Args:
        path: a file written by ``growprune export`` / :func:`growprune.export_model`.
        model: the module to load into, when the file's builder is unknown here (or to reuse one).
        dtype: floating dtype of the returned model; default: the dtype stored in the file, so the
            weights are bit-for-bit the exported ones (fp16/bf16 -> fp32 is exact as well).
        device: where the returned model lives.

    The result is a plain model: no mask buffers, pruned weights are exact zeros.
    """
    exported = read_export(path)
    target = codec.dtype_from_name(exported.metadata["dtype"] if dtype is None else dtype)
    module = _build(exported) if model is None else model
    state = _with_mask_buffers(module, exported)
    _check_fits(exported.path, module, state)
    module.to(dtype=target)
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()
