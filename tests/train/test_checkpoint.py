"""Atomic checkpoint writes, retention, and detection of corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from growprune.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, CheckpointManager, load_checkpoint


def payload(step: int) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": {"w": torch.full((3,), float(step))},
        "optimizer": {},
        "sparsifier": {},
        "position": {"step": step, "epoch": 0, "batch": step},
        "recipe": {},
    }


def test_keeps_last_n_and_no_temporary_files(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        manager.save(payload(step), step)
    assert [p.name for p in manager.numbered()] == ["ckpt-00000020.pt", "ckpt-00000030.pt"]
    assert not list(tmp_path.glob("*.tmp"))
    path, loaded = manager.latest_good()
    assert loaded["position"]["step"] == 30 and path.name == "ckpt-00000030.pt"


def test_truncated_checkpoint_is_named_and_skipped(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2):
        manager.save(payload(step), step)
    last = manager.numbered()[-1]
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=last.name):
        load_checkpoint(last)
    with pytest.warns(UserWarning, match="corrupt"):
        path, loaded = manager.latest_good()
    assert loaded["position"]["step"] == 1


def test_foreign_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ckpt-00000001.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a growprune checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "refusal",
    [
        PermissionError(13, "Permission denied"),
        OSError(5, "Input/output error"),
        IsADirectoryError(21, "Is a directory"),
    ],
    ids=["permission", "io-error", "directory"],
)
def test_a_file_the_system_cannot_read_is_not_called_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: OSError
) -> None:
    """A read the file system refused says so (the file may be fine); resume still falls back."""
    manager = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2):
        manager.save(payload(step), step)
    last = manager.numbered()[-1]
    real_load = torch.load

    def load(path: object, *args: object, **kwargs: object) -> object:
        if Path(str(path)) == last:
            raise refusal
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    expected = rf"{last.name} cannot be read \({refusal.strerror}\)"
    with pytest.raises(CheckpointError, match=expected) as caught:
        load_checkpoint(last)
    assert "corrupt" not in str(caught.value)
    with pytest.warns(UserWarning, match="cannot be read"):
        path, loaded = manager.latest_good()
    assert loaded["position"]["step"] == 1
