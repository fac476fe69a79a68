"""``load``: a file written by ``export_model`` -> the model, with exactly the exported weights.

Every check runs before the model is touched, and each failure names the file and the problem:
unreadable or truncated file, missing growprune metadata, a format newer than this reader,
layout entries that do not match the stored tensors, a checksum mismatch, or a model that
cannot be rebuilt (then ``model=`` supplies it).

Nothing in the metadata is trusted: it is not covered by the checksum, and whoever crafts a file
can recompute the checksum anyway. Every layout entry is checked against the tensor stored for
it (shape, dtype, element and kept counts, computed without overflow), the sparsity table against
the decoded masks, and the model the metadata names is built on the ``meta`` device first (no
memory) and compared tensor by tensor with the file; building stops early if it grows beyond the
file's tensor count. Only a model that matches the file is built for real, so a file cannot make
``load`` allocate more than it holds (plus buffers the model derives, bounded by the same size).
Every failure is one :class:`ExportError` line; strings taken from the file are quoted and cut.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


# A shape with more dimensions, or more elements, than this is not a tensor anyone stored.
MAX_DIMS = 64
MAX_NUMEL = 2**48
# Buffers a model derives rather than stores (e.g. a position table) may add this much to the
# elements the file holds; building stops after this many registrations per stored tensor.
DERIVED_SLACK = 2**20
REGISTRATIONS_PER_TENSOR, REGISTRATIONS_SLACK = 4, 256


def _brief(value: object, limit: int = 120) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters: for values taken from a file."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _line(value: object, limit: int = 200) -> str:
    """``str(value)`` (an exception's message, a version) on one line, cut to ``limit`` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else f"{text[:limit]}..."


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
            f"({type(err).__name__}: {_line(err, 300)})"
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
        raise ExportError(
            f"{path}: not a readable safetensors file ({type(err).__name__}: {_line(err, 300)})"
        ) from None
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
            except (ValueError, RecursionError) as err:  # JSONDecodeError; too many digits or levels
                if isinstance(err, RecursionError):
                    reason = "nested too deeply"
                elif isinstance(err, json.JSONDecodeError):
                    reason = _line(err)
                else:  # the only other ValueError: an integer of more digits than Python converts
                    reason = "a number too long to read"
                raise ExportError(
                    f"{path}: metadata field {key} is not valid JSON ({reason}); the file is damaged"
                ) from None
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise ExportError(
            f"{path}: format_version {_brief(meta['format_version'], 40)} is not an integer; "
            "the file is damaged"
        ) from None
    if version > fileformat.FORMAT_VERSION:
        raise ExportError(
            f"{path}: written in export format {version} by growprune {_line(meta['version'], 40)}; "
            "this growprune reads "
            f"format {fileformat.FORMAT_VERSION} and older, upgrade growprune"
        )
    if meta["format"] not in fileformat.FORMATS:
        raise ExportError(f"{path}: unknown export format {_brief(meta['format'], 40)}")
    if meta["dtype"] not in codec.DTYPES:
        raise ExportError(f"{path}: unknown dtype {_brief(meta['dtype'], 40)} in metadata")
    if not isinstance(meta["layout"], dict):
        raise ExportError(f"{path}: metadata field layout is not a mapping; the file is damaged")
    for key in ("recipe", "sparsity", "source"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise ExportError(f"{path}: metadata field {key} is not a mapping; the file is damaged")
    meta["model"] = _model_spec(path, meta["model"])
    return meta


def _model_spec(path: Path, spec: Any) -> dict[str, Any] | None:
    """``{"name": str, "args": {str: ...}}`` or None (a live model exported without a builder)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ExportError(
            f"{path}: metadata field model is not a mapping but {_brief(spec, 60)}; the file is damaged"
        )
    name, args = spec.get("name"), spec.get("args", {})
    if not isinstance(name, str):
        raise ExportError(
            f"{path}: metadata field model has name {_brief(name, 60)}, not a string; the file is damaged"
        )
    if not isinstance(args, dict):
        raise ExportError(
            f"{path}: metadata field model has args {_brief(args, 60)}, not a mapping; the file is damaged"
        )
    return {"name": name, "args": args}


def _expect(
    path: Path, tensors: dict[str, torch.Tensor], key: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    if key not in tensors:
        raise ExportError(f"{path}: tensor {_brief(key)} named in the layout is missing; the file is damaged")
    tensor = tensors[key]
    if tensor.dtype != dtype or tuple(tensor.shape) != shape:
        raise ExportError(
            f"{path}: tensor {_brief(key)} is {tensor.dtype} {tuple(tensor.shape)} "
            f"but the layout says {dtype} {_brief(shape)}"
        )
    return tensor


def _layout_entry(path: Path, key: str, entry: Any) -> tuple[tuple[int, ...], int, torch.dtype, str]:
    """(shape, element count, dtype, encoding) of one layout entry, each checked for type and range."""
    where = f"{path}: layout entry for {_brief(key)}"
    if not isinstance(entry, dict):
        raise ExportError(f"{where} is {_brief(entry, 60)}, not a mapping; the file is damaged")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)  # bool is not a dimension
    ):
        raise ExportError(
            f"{where} has shape {_brief(shape, 60)}, not a list of at most {MAX_DIMS} non-negative "
            "integers; the file is damaged"
        )
    numel = math.prod(shape)  # Python integers: no overflow to a small or negative count
    if numel > MAX_NUMEL:
        raise ExportError(
            f"{where} has shape {_brief(shape, 60)} of {numel} elements, more than any file holds; "
            "the file is damaged"
        )
    dtype, encoding = entry.get("dtype"), entry.get("encoding")
    if not isinstance(dtype, str) or dtype not in codec.TENSOR_DTYPES:
        raise ExportError(
            f"{where} has dtype {_brief(dtype, 40)}, not one of {', '.join(codec.TENSOR_DTYPES)}; "
            "the file is damaged"
        )
    if encoding not in ("dense", "bitmask"):
        raise ExportError(f"{path}: unknown encoding {_brief(encoding, 40)} for {_brief(key)}")
    return tuple(shape), numel, codec.TENSOR_DTYPES[dtype], encoding


def _decode(path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    file_dtype = codec.DTYPES[meta["dtype"]]
    for key, entry in meta["layout"].items():
        shape, numel, dtype, encoding = _layout_entry(path, key, entry)
        if dtype.is_floating_point and dtype != file_dtype:
            raise ExportError(
                f"{path}: tensor {_brief(key)} is {codec.tensor_dtype_name(dtype)} but the file's dtype is "
                f"{meta['dtype']}; the file is damaged"
            )
        if encoding == "dense":
            state[key] = _expect(path, tensors, key, dtype, shape)
            used.add(key)
        else:
            mkey, vkey = fileformat.MASK_KEY.format(key), fileformat.VALUES_KEY.format(key)
            # The stored mask has ceil(numel / 8) bytes, so numel is bounded by the file's size.
            packed = _expect(path, tensors, mkey, torch.uint8, (codec.packed_size(numel),))
            kept = int(codec.unpack_mask(packed, numel).sum())
            if "kept" in entry and (type(entry["kept"]) is not int or entry["kept"] != kept):
                raise ExportError(
                    f"{path}: layout entry for {_brief(key)} says kept={_brief(entry['kept'], 40)} but its "
                    f"mask keeps {kept}; the file is damaged"
                )
            values = _expect(path, tensors, vkey, dtype, (kept,))
            state[key], masks[key] = codec.decode_sparse(packed, values, shape)
            masks[key] = masks[key].reshape(shape)
            used.update((mkey, vkey))
    extra = sorted(set(tensors) - used)
    if extra:
        raise ExportError(
            f"{path}: tensors not described by the layout: {', '.join(_brief(k, 60) for k in extra[:5])}; "
            "the file is damaged"
        )
    return state, masks


def _check_sparsity_table(path: Path, meta: dict[str, Any], state: dict, masks: dict) -> None:
    """The recorded per-layer counts agree with the tensors (shape, numel, zeros, kept_by_mask)."""
    table = meta.get("sparsity")
    if table is None:
        return
    layers = table.get("layers", {})
    if not isinstance(layers, dict):
        raise ExportError(f"{path}: metadata sparsity table has no mapping of layers; the file is damaged")
    for name, row in layers.items():
        if name not in state:
            raise ExportError(
                f"{path}: metadata sparsity table lists {_brief(name)}, which the file does not hold; "
                "the metadata was altered"
            )
        if not isinstance(row, dict):
            raise ExportError(
                f"{path}: metadata sparsity table row for {_brief(name)} is {_brief(row, 60)}, "
                "not a mapping; the file is damaged"
            )
        tensor = state[name]
        actual = {
            "shape": list(tensor.shape),
            "numel": tensor.numel(),
            "zeros": int((tensor == 0).sum()),
            **({"kept_by_mask": int(masks[name].sum())} if name in masks else {}),
        }
        for field, value in actual.items():
            if field in row and row[field] != value:
                raise ExportError(
                    f"{path}: metadata sparsity table says {field}={_brief(row[field], 40)} for "
                    f"{_brief(name)} but the file holds {value}; the metadata was altered"
                )
    for total in ("numel", "zeros"):
        counted = sum(row.get(total, 0) for row in layers.values())  # rows checked above
        if total in table and table[total] != counted:
            raise ExportError(
                f"{path}: metadata sparsity table says {total}={_brief(table[total], 40)} in all but its "
                f"layers add up to {_brief(counted, 40)}; the metadata was altered"
            )


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
    _check_sparsity_table(path, meta, state, masks)
    return ExportedFile(path, meta, state, masks)


class _TooLarge(Exception):
    """Raised inside a meta build that registers more tensors and modules than allowed."""


@contextmanager
def _registration_limit(limit: int) -> Iterator[None]:
    """Stop module construction in this thread after ``limit`` parameter, buffer and submodule
    registrations: a model far larger than the file is refused before it is fully built."""
    from torch.nn.modules import module as torch_module

    thread, count = threading.get_ident(), 0

    def hook(module: nn.Module, name: str, value: Any) -> None:
        nonlocal count
        if value is not None and threading.get_ident() == thread:
            count += 1
            if count > limit:
                raise _TooLarge

    handles = [
        torch_module.register_module_parameter_registration_hook(hook),
        torch_module.register_module_buffer_registration_hook(hook),
        torch_module.register_module_module_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Every way the (meta) model's state differs from the file's tensors, model order first."""
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    for key, shape in built.items():
        if key not in state:
            problems.append(f"{_brief(key)} is {shape} in the model but not in the file")
        elif tuple(state[key].shape) != shape:
            problems.append(f"{_brief(key)} is {shape} in the model, {tuple(state[key].shape)} in the file")
    problems += [f"the file holds {_brief(k)}, which the model lacks" for k in state if k not in built]
    return problems


def _check_spec_against_file(exported: ExportedFile, name: str, args: dict[str, Any]) -> None:
    """Build the model on the meta device (no memory) and compare it with the stored tensors.

    Raises:
        ExportError: the builder fails, the model grows beyond the file's tensor count, a tensor
            of the model is missing from the file or differs in shape (or the file holds one the
            model lacks), or buffers the model derives rather than stores exceed the file's size.
    """
    path, state = exported.path, exported.state
    spec = f"the model {_brief(name)} built with the arguments in the metadata ({_brief(args)})"
    altered = "the metadata was altered or written by something other than growprune export"
    limit = REGISTRATIONS_PER_TENSOR * len(state) + REGISTRATIONS_SLACK
    from growprune.models import registry

    try:
        with torch.device("meta"), _registration_limit(limit):
            model = registry.build_model(name, **args)
    except _TooLarge:
        raise ExportError(
            f"{path}: {spec} has more parameters, buffers and modules than {limit}, for "
            f"{len(state)} tensors in the file; {altered}"
        ) from None
    except (TypeError, ValueError) as err:  # the builder's own checks of its arguments
        raise ExportError(
            f"{path}: cannot rebuild {spec}: {type(err).__name__}: {_line(err)}; "
            "pass model=<an nn.Module of the same architecture> to growprune.load"
        ) from None
    except Exception as err:  # e.g. a builder that reads tensor values (.item()) while building
        raise ExportError(
            f"{path}: cannot build {spec} on the meta device, where growprune.load checks it against "
            f"the file before allocating memory ({type(err).__name__}: {_line(err)}); "
            "pass model=<an nn.Module of the same architecture> to growprune.load"
        ) from None
    problems = _mismatch(model, state)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(
            f"{path}: {spec} does not match the tensors in the file: {problems[0]}{more}; {altered}"
        )
    persistent = set(model.state_dict())
    derived = [(k, b) for k, b in model.named_buffers() if k not in persistent]
    stored = sum(t.numel() for t in state.values())
    if derived and sum(b.numel() for _, b in derived) > stored + DERIVED_SLACK:
        key, buffer = max(derived, key=lambda kb: kb[1].numel())
        raise ExportError(
            f"{path}: {spec} derives buffers not stored in the file ({_brief(key)} is "
            f"{tuple(buffer.shape)}) larger than the {stored} elements the file holds; {altered}"
        )


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
    name, args = spec["name"], spec["args"]
    if name not in registry.list_models():
        raise ExportError(
            f"{path}: needs model builder {_brief(name)} with arguments {_brief(args)}, which this growprune "
            f"does not have (known: {', '.join(registry.list_models())}); register it with "
            "growprune.models.register_model(name, builder) or pass "
            "model=<an nn.Module of the same architecture> to growprune.load"
        )
    _check_spec_against_file(exported, name, args)
    try:
        return registry.build_model(name, **args)
    except Exception as err:  # built on meta with the same arguments, so not expected
        raise ExportError(
            f"{path}: cannot rebuild model {_brief(name)} with arguments {_brief(args)} "
            f"({type(err).__name__}: {_line(err)}); pass model=<module> to growprune.load"
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
