"""Atomic writes (growprune.files): ordinary permissions, and nothing half-written under a real name."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
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


# -- names as long as the file system allows -----------------------------------------------------


@pytest.mark.parametrize("length", [250, 251, 252, 253, 254, 255])
def test_a_name_of_any_legal_length_is_written(tmp_path: Path, length: int) -> None:
    """The temporary name adds 14 characters; it is shortened, not the destination refused."""
    path = tmp_path / ("m" * (length - len(".safetensors")) + ".safetensors")
    assert len(path.name) == length
    atomic_write_bytes(path, b"data")
    checkpoint = atomic_torch_save({"w": torch.ones(2)}, tmp_path / ("c" * (length - 3) + ".pt"))
    assert path.read_bytes() == b"data" and torch.load(checkpoint, weights_only=True)["w"].sum() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, checkpoint.name])


@pytest.mark.parametrize(
    "name",
    ["é" * 127, "é" * 126 + "a", "a" + "é" * 127, "日本" * 42],
    ids=["2-byte", "2-byte-odd", "odd", "3-byte"],
)
def test_temporary_name_fits_in_bytes_and_keeps_whole_characters(tmp_path: Path, name: str) -> None:
    from growprune.files import is_temp_name, temp_name

    assert len(name.encode()) <= 255
    tmp = temp_name(name, "0123abcd")
    assert len(tmp.encode()) <= 255 and is_temp_name(tmp)
    assert tmp.encode().decode("utf-8")  # no character cut in half
    atomic_write_bytes(tmp_path / name, b"x")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path: Path) -> None:
    from growprune.files import remove_stale_temps, temp_name

    stale = [temp_name("ckpt-00000004.pt", "0123abcd"), temp_name("x" * 255, "deadbeef")]
    kept = ["ckpt-00000004.pt", ".hidden.tmp", "a.0123abcd.tmp", ".a.0123ABCD.tmp", ".a.012.tmp", "notes.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".dir.0123abcd.tmp").mkdir()  # not a file
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".dir.0123abcd.tmp"])


# -- a full disk is an OSError naming the file asked for ----------------------------------------


def torch_write_failure(tmp: Path) -> None:
    tmp.write_bytes(b"PK")
    raise RuntimeError(
        "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
        "file write failed"
    )


def rust_write_failure(tmp: Path) -> None:
    raise Exception(  # noqa: TRY002 - what safetensors raises is its own class, not an OSError
        "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
        'message: "No space left on device" })'
    )


def fsync_failure(tmp: Path) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp))


@pytest.mark.parametrize(
    "write", [torch_write_failure, rust_write_failure, fsync_failure], ids=["torch", "safetensors", "oserror"]
)
def test_a_full_disk_is_enospc_naming_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: Callable[[Path], None]
) -> None:
    import growprune.files as files

    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, path)

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(files.os, "statvfs", lambda directory: Full(), raising=False)
    with pytest.raises(OSError) as info:
        atomic_write(path, write)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert files.no_space_message(info.value).startswith(f"no space left on the file system of {tmp_path}")
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_torch_write_failure_with_space_left_stays_what_it_was(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
        atomic_write(tmp_path / "ckpt.pt", torch_write_failure)
