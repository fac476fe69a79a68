"""``export_model(..., format="compressed-tensors")``: a sparse Hugging Face model directory.

`compressed-tensors <https://github.com/neuralmagic/compressed-tensors>`_ is the format
llm-compressor writes and ``transformers`` loads (``AutoModelForCausalLM.from_pretrained`` with
the package installed decompresses the weights on load). A sparse model in it is a
``save_pretrained`` directory whose ``config.json`` carries a ``quantization_config`` with a
``sparsity_config``, and whose safetensors hold every sparse layer's weight as
``NAME.bitmask`` / ``NAME.compressed`` / ``NAME.shape`` / ``NAME.row_offsets`` (format
``sparse-bitmask``, any pattern) or ``NAME.bitmask`` / ``NAME.compressed`` / ``NAME.shape``
(``sparse-24-bitmask``, chosen when every pruned layer's mask is 2:4).

Nothing of the format is written by hand here: the compressor, the config classes and the
``config.json`` entry are compressed-tensors' own (``ModelCompressor``, ``BitmaskConfig``,
``Sparse24BitMaskConfig``), and the directory is the model's ``save_pretrained``, so the result
is what llm-compressor would write for the same weights.

Versions: compressed-tensors dropped its sparse compressors in 0.15 (its ``ModelCompressor``
writes an empty ``sparsity_config`` since), and transformers 5 no longer reads
``sparsity_config`` (it would load such a directory with the sparse layers left at their random
initialisation). transformers 4.56 to 4.57 load sparse layers by first compressing the empty
model on the ``meta`` device, which the unstructured ``sparse-bitmask`` compressor cannot do
(its row lengths depend on the values), so only 2:4 directories load there. The ``llm`` extra
therefore pins compressed-tensors 0.14 with transformers 4.55, which write and load both
layouts; any other combination is refused here before anything is written instead of producing
a directory that does not load, or loads wrong.

Sources: a live ``transformers.PreTrainedModel`` with a growprune sparsifier attached; a
Hugging Face Trainer checkpoint folder written with
:class:`growprune.integrations.huggingface.SparsityCallback` (``config.json``, the weights and
``growprune_sparsifier.pt`` with the masks), or a Trainer output directory (its newest such
checkpoint); a growprune checkpoint or run whose registry model is a ``PreTrainedModel``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from growprune.export import codec
from growprune.export.errors import ExportError, ExportUsageError
from growprune.export.source import ExportSource, check_masks, from_checkpoint, from_module

if TYPE_CHECKING:
    from growprune.export.writer import ExportSummary

FORMAT = "compressed-tensors"
EXTRA = "pip install 'growprune[llm]'"
# The sparsifier state the Hugging Face callback writes into each Trainer checkpoint folder
# (growprune.integrations.huggingface.STATE_FILE; not imported: that module needs transformers).
TRAINER_STATE_FILE = "growprune_sparsifier.pt"
_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


def _missing(err: ImportError) -> ExportError:
    return ExportError(f"format {FORMAT!r} needs the 'llm' extra (missing module {err.name!r}): {EXTRA}")


def _pretrained_class() -> type[nn.Module]:
    """``transformers.PreTrainedModel``: only its ``save_pretrained`` directory is the format."""
    try:
        from transformers import PreTrainedModel
    except ImportError as err:
        raise _missing(err) from None
    return PreTrainedModel


def _library() -> tuple[Any, Any, Any]:
    """compressed-tensors' ModelCompressor, BitmaskConfig and Sparse24BitMaskConfig.

    Raises:
        ExportError: compressed-tensors or transformers is not installed, the installed
            compressed-tensors has no sparse compressors (0.15 and later), or the installed
            transformers cannot load both sparse layouts (4.56 and later).
    """
    try:
        import compressed_tensors
        import transformers
    except ImportError as err:
        raise _missing(err) from None
    try:
        # Present up to 0.14; importing it registers the sparse-bitmask compressors.
        import compressed_tensors.compressors.sparse_compressors  # noqa: F401
        from compressed_tensors.compressors import ModelCompressor
        from compressed_tensors.config import BitmaskConfig, Sparse24BitMaskConfig
    except ImportError:
        raise ExportError(
            f"format {FORMAT!r}: compressed-tensors {compressed_tensors.__version__} has no sparse "
            f"compressors (removed in 0.15); install the versions the 'llm' extra pins: {EXTRA}"
        ) from None
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    if (major, minor) >= (4, 56):
        raise ExportError(
            f"format {FORMAT!r}: transformers {transformers.__version__} cannot load what it would write "
            "(4.56 and later build sparse layers on the meta device, which compressed-tensors' bitmask "
            f"cannot do; 5.0 ignores the sparsity_config); install the versions the 'llm' extra pins: {EXTRA}"
        )
    return ModelCompressor, BitmaskConfig, Sparse24BitMaskConfig


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """The output directory, refused up front if it cannot hold a fresh export.

    An existing non-empty directory is refused rather than written into: a ``save_pretrained``
    directory is read as a whole, and shards or a stale ``config.json`` left from another model
    would be loaded with the new weights.

    Raises:
        ExportUsageError: ``out`` is a file, a non-empty directory, lies under a file, or its
            nearest existing parent is not writable.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ExportUsageError(
            f"output {path} exists and is not a directory; format {FORMAT!r} writes a model directory "
            "(config.json + safetensors), so name a new directory"
        )
    if path.is_dir() and any(path.iterdir()):
        raise ExportUsageError(f"output directory {path} is not empty; name a new or empty directory")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise ExportUsageError(f"output {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportUsageError(
            f"output {path} cannot be written: directory {existing} is not writable (permission denied)"
        )
    return path


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _trainer_checkpoint(path: Path) -> Path | None:
    """The Hugging Face Trainer checkpoint folder `path` names (itself, or the newest
    ``checkpoint-N`` in an output directory) if it has growprune's sparsifier state, else None."""
    if not path.is_dir():
        return None
    if (path / "config.json").is_file() and (path / TRAINER_STATE_FILE).is_file():
        return path
    numbered = [
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := _CHECKPOINT_DIR.fullmatch(child.name)) and (child / TRAINER_STATE_FILE).is_file()
    ]
    return max(numbered)[1] if numbered else None


def _from_trainer_checkpoint(folder: Path) -> tuple[nn.Module, ExportSource]:
    """The causal LM of a Trainer checkpoint folder and the masks its callback saved."""
    from transformers import AutoModelForCausalLM

    try:
        payload = torch.load(folder / TRAINER_STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on damaged bytes with whatever the unpickler hit
        kind = type(err).__name__
        raise ExportError(f"{folder / TRAINER_STATE_FILE}: unreadable ({kind}: {_one_line(err)})") from None
    masks = (payload.get("sparsifier") or {}).get("masks") if isinstance(payload, dict) else None
    if not isinstance(masks, dict) or not masks:
        raise ExportError(f"{folder / TRAINER_STATE_FILE}: holds no sparsifier masks")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ExportError(f"{folder}: cannot be loaded as a causal LM ({_one_line(err)})") from None
    source = from_module(model)
    unknown = sorted(set(masks) - set(source.state))
    if unknown:
        raise ExportError(f"{folder}: masks for weights the model does not have: {', '.join(unknown[:4])}")
    source.masks = {k: v.to(torch.bool) for k, v in masks.items()}
    source.origin = f"Trainer checkpoint {folder}"
    source.info = {"checkpoint": str(folder), "step": payload.get("global_step")}
    return model, source


def _from_growprune_checkpoint(path: Path) -> tuple[nn.Module, ExportSource]:
    """A growprune checkpoint rebuilt as its registry model (which must be a PreTrainedModel)."""
    from growprune.models.registry import build_model

    source = from_checkpoint(path)
    spec = source.model_spec or {}
    model = build_model(spec["name"], **spec["args"])
    if not isinstance(model, _pretrained_class()):
        raise ExportError(
            f"{source.origin}: format {FORMAT!r} needs a Hugging Face transformers PreTrainedModel, but "
            f"model {spec['name']!r} is a {type(model).__name__}; use --format sparse"
        )
    model.load_state_dict(source.state)
    return model, source


def is_two_four(mask: torch.Tensor) -> bool:
    """Whether at most 2 of every 4 consecutive entries of each row are kept: the layout
    ``sparse-24-bitmask`` stores (row-major groups along the last dimension, as stored, so a
    transformers ``Conv1D``'s ``[in, out]`` weight is checked as it lies)."""
    if mask.dim() != 2 or mask.shape[1] % 4:
        return False
    return bool((mask.reshape(-1, 4).sum(dim=1) <= 2).all())


def _targets(model: nn.Module, source: ExportSource) -> dict[str, str]:
    """{module name: weight key} of the pruned layers, refusing masks the format cannot hold.

    compressed-tensors compresses a module's 2-D ``weight``; a mask on anything else (a bias, a
    convolution kernel, a raw parameter such as loralib's ``lora_A``) has no place in its layout.
    """
    modules = dict(model.named_modules())
    targets: dict[str, str] = {}
    for key, mask in source.masks.items():
        module_name, _, leaf = key.rpartition(".")
        if leaf != "weight" or module_name not in modules or mask.dim() != 2:
            raise ExportError(
                f"{source.origin}: '{key}' (shape {tuple(mask.shape)}) is pruned, but format {FORMAT!r} "
                "stores only the 2-D weight of a module; exclude it from the sparsifier's targets or use "
                "format='sparse'"
            )
        targets[module_name] = key
    return targets


def _record_dtype(config_file: Path, dtype: torch.dtype) -> None:
    """Make ``config.json``'s ``torch_dtype`` the stored one: ``save_pretrained`` records the live
    model's dtype, which is not what the file holds after ``dtype=`` cast it, and loaders that
    honour the config (``torch_dtype="auto"``, vLLM) would up- or down-cast on load."""
    config = json.loads(config_file.read_text())
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_compressed_tensors(
    source: nn.Module | str | os.PathLike[str], out: str | os.PathLike[str], dtype: torch.dtype
) -> ExportSummary:
    """Write `source` (see the module docstring) to the directory `out` in compressed-tensors'
    sparse format; ``transformers.AutoModelForCausalLM.from_pretrained(out)`` loads it back.

    The directory is written under a temporary name next to `out` and renamed when complete, so
    an interrupted export never leaves a directory that looks like a model.

    Raises:
        ExportError: compressed-tensors missing or of a version without sparse compression, a
            model that is not a ``transformers.PreTrainedModel``, no masks, weights nonzero where
            their mask prunes, a pruned tensor the format cannot hold, the write failed.
        ExportUsageError: `out` cannot be used (see :func:`check_out_dir`).
    """
    from growprune.export.writer import ExportSummary

    if isinstance(source, nn.Module) and not isinstance(source, _pretrained_class()):
        raise ExportError(
            f"format {FORMAT!r} needs a Hugging Face transformers PreTrainedModel (it writes a "
            f"save_pretrained directory), got {type(source).__name__}; use format='sparse'"
        )
    compressor_class, bitmask_config, two_four_config = _library()
    out_path = check_out_dir(out)
    if isinstance(source, nn.Module):
        model, src = source, from_module(source)
    else:
        path = Path(source)
        folder = _trainer_checkpoint(path)
        model, src = _from_trainer_checkpoint(folder) if folder else _from_growprune_checkpoint(path)
    if not src.masks:
        raise ExportError(
            f"{src.origin}: no masks (no sparsifier is attached, or it was removed), so nothing is known "
            f"to be pruned; export while the sparsifier is attached (before remove())"
        )
    check_masks(src)
    targets = _targets(model, src)
    two_four = all(is_two_four(src.masks[key]) for key in targets.values())
    numel = sum(src.masks[key].numel() for key in targets.values())
    zeros = sum(int((src.state[key] == 0).sum()) for key in targets.values())
    config_class = two_four_config if two_four else bitmask_config
    sparsity_config = config_class(
        targets=sorted(targets),
        global_sparsity=zeros / numel,
        sparsity_structure="2:4" if two_four else "unstructured",
    )
    compressor = compressor_class(sparsity_config=sparsity_config)
    state = {key: codec.cast(value, dtype) for key, value in src.state.items()}
    compressed = compressor.compress(model, state_dict=state)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        model.save_pretrained(staging, state_dict=compressed, safe_serialization=True)
        _record_dtype(staging / "config.json", dtype)
        compressor.update_config(str(staging))
        if out_path.is_dir():
            out_path.rmdir()  # empty, checked above
        staging.rename(out_path)
    except OSError as err:
        raise ExportError(
            f"output {out_path} could not be written ({err.strerror or err}); check the path and its space"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    itemsize = torch.empty((), dtype=dtype).element_size()
    return ExportSummary(
        path=out_path,
        format=FORMAT,
        dtype=codec.short_dtype_name(dtype),
        file_bytes=sum(f.stat().st_size for f in out_path.glob("*.safetensors")),
        tensor_bytes=sum(t.numel() * t.element_size() for t in compressed.values()),
        dense_tensor_bytes=sum(
            v.numel() * (itemsize if v.is_floating_point() else v.element_size()) for v in src.state.values()
        ),
        pruned_layers=len(targets),
        sparsity=zeros / numel,
        source=src.origin,
    )
