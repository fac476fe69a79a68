"""Atomic writes (growprune.files): ordinary permissions, and nothing half-written under a real name."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import growprune as gp
from growprune.files import atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_text
from growprune.train.checkpoint import CheckpointManager, load_checkpoint


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pruned_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    gp.OneShot(model, torch.optim.SGD(model.parameters(), lr=0.1), sparsity=0.5)
    return model


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=oct)
def test_checkpoints_and_exports_get_the_umask_mode(
    tmp_path: Path, umask: None, mask: int, expected: int
) -> None:
    os.umask(mask)
    ckpt = CheckpointManager(tmp_path / "checkpoints").save({"format": 1, "x": torch.ones(3)}, step=1)
    named = CheckpointManager(tmp_path / "checkpoints").save_named({"x": torch.ones(3)}, "final")
    export = gp.export_model(pruned_model(), tmp_path / "model.safetensors").path
    text = atomic_write_text(tmp_path / "cache" / "vocab.json", "{}")
    for path in (ckpt, named, export, text):
        assert mode(path) == expected, (path.name, oct(mode(path)))
    assert sorted(p.name for p in tmp_path.rglob(".*.tmp")) == []


def test_overwrite_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.bin"  # parents are created
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    text = atomic_write_text(tmp_path / "t.txt", "line\r\nünï\n")
    assert text.read_bytes() == "line\r\nünï\n".encode()  # newlines as given, UTF-8
    payload = {"w": torch.arange(4)}
    atomic_torch_save(payload, tmp_path / "ckpt.pt")
    assert torch.equal(torch.load(tmp_path / "ckpt.pt", weights_only=True)["w"], payload["w"])
    assert [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, path)
    seen: list[Path] = []

    def half_write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == path.parent and tmp.name.startswith(".ckpt.pt.")
        tmp.write_bytes(b"PK\x03\x04 half a zip")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, half_write)
    assert not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_failed_first_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "model.safetensors", lambda tmp: 1 / 0)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_written_through_the_helper_loads(tmp_path: Path) -> None:
    payload = {
        "format": 1,
        "model": {"w": torch.ones(2)},
        "optimizer": {},
        "sparsifier": {},
        "position": {"step": 3, "epoch": 0, "batch": 3},
        "recipe": {},
    }
    path = CheckpointManager(tmp_path).save(payload, step=3)
    assert path.name == "ckpt-00000003.pt"
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
