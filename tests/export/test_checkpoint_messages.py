"""A checkpoint that cannot be read is named in one neutral line, without torch's advice to load it
with ``weights_only=False``: following that advice on a file someone sent you runs their code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from growprune.checkpoint import CheckpointError, load_checkpoint
from growprune.export import ExportError, export_model
from tests.export.conftest import HIDDEN, pruned_mlp, write_run


class Payload:
    """Unpickles to a call of ``print``: the shape of a code-execution payload, harmlessly."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("unpickled!",))


def _check_neutral(message: str) -> None:
    assert "\n" not in message and "\x1b" not in message, message
    assert "weights_only" not in message, message
    assert "add_safe_globals" not in message and "safe_globals" not in message, message
    assert "trust" not in message, message


def test_disallowed_global_is_named_without_weights_only_advice(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoints" / "final.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": 1, "model": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    _check_neutral(str(info.value))
    assert str(path) in str(info.value) and "'print'" in str(info.value)
    with pytest.raises(ExportError) as exported:
        export_model(tmp_path / "run", tmp_path / "m.safetensors")
    _check_neutral(str(exported.value))
    assert "'print'" in str(exported.value)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: good[:300], id="truncated"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: os.urandom(400), id="random-bytes"),
    ],
)
def test_damaged_checkpoint_message_is_one_neutral_line(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    path = write_run(tmp_path / "run", pruned_mlp(hidden=[8]), {"name": "mlp", "args": {"hidden": HIDDEN}})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(path)
    _check_neutral(str(info.value))
    assert str(path) in str(info.value)
