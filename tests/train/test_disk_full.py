"""A full disk while training or resuming is one line naming the file system and the fix; the
checkpoints already written, and the run's records, stay intact, and the run resumes once there
is space. Memory running out while a checkpoint is read is named as such, not as a corrupt file."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import growprune.files as files
from growprune.checkpoint import load_checkpoint
from growprune.cli import main

RECIPE = {
    "name": "full",
    "data": {"name": "synthetic", "args": {"n_train": 256, "n_test": 128, "dim": 16}},
    "model": {"name": "mlp", "args": {"hidden": [32]}},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "method": {"name": "gmp", "sparsity": 0.8, "start_epoch": 0, "end_epoch": 2},
    "training": {"batch_size": 32, "epochs": 3},
    "output": {"tensorboard": False, "report": False, "checkpoint_every_steps": 4, "keep_last": 10},
}
TORCH_WRITE_FAILED = (
    "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
    "file write failed"
)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main([*args, "--no-progress"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.startswith(("error", "warning"))]


def contents(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "checkpoints").glob("*.pt"))}


class Full:
    f_bavail, f_frsize = 0, 4096


# (id, what the failing write raises, the line's start)
CASES: list[tuple[str, BaseException, str]] = [
    (
        "enospc",
        OSError(errno.ENOSPC, "No space left on device"),
        "error: no space left on the file system of",
    ),
    (
        "edquot",
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        "error: disk quota exceeded on the file system of",
    ),
    ("torch-writer", RuntimeError(TORCH_WRITE_FAILED), "error: no space left on the file system of"),
]


@pytest.mark.parametrize(("failure", "start"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_full_disk_at_a_checkpoint_then_at_the_resume(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: BaseException,
    start: str,
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_dir = tmp_path / "run"
    real_save = torch.save
    saved: dict[str, Any] = {"count": 0}

    def save(obj: Any, tmp: Path) -> None:
        saved["count"] += 1
        if saved["count"] == 4:  # the fourth checkpoint meets a full disk
            saved["before"] = contents(run_dir)
            Path(tmp).write_bytes(b"PK\x03\x04 half")
            if isinstance(failure, OSError):
                raise OSError(failure.errno, failure.strerror, str(tmp))
            raise failure
        real_save(obj, tmp)

    monkeypatch.setattr(files.torch, "save", save)
    monkeypatch.setattr(files.os, "statvfs", lambda directory: Full(), raising=False)
    code, lines = run(["train", str(recipe), "--out", str(run_dir)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"{start} {run_dir / 'checkpoints'}: writing {run_dir / 'checkpoints'}"), lines
    assert "free space there or choose another output directory" in lines[0]
    assert contents(run_dir) == saved["before"] and len(saved["before"]) == 2  # steps 4 and 8
    for path in (run_dir / "checkpoints").iterdir():
        load_checkpoint(path)  # every file there is whole (no temporary file left)
    records = (run_dir / "metrics.jsonl").read_bytes()

    # The resume's own first write (the recipe it records) meets the full disk too.
    monkeypatch.setattr(torch, "save", real_save)

    def fsync(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "_fsync", fsync)
    code, lines = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: no space left on the file system of {run_dir}: writing {run_dir}"), (
        lines
    )
    assert contents(run_dir) == saved["before"]
    assert (run_dir / "metrics.jsonl").read_bytes() == records
    assert not [p for p in run_dir.rglob("*.tmp")]

    monkeypatch.undo()  # space again: the run continues from its last checkpoint
    code, lines = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0 and lines == [], lines
    assert (run_dir / "checkpoints" / "final.pt").is_file()


@pytest.mark.parametrize(
    "message",
    [
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)",
        "CUDA out of memory. Tried to allocate 4.00 GiB",
    ],
    ids=["cpu", "cuda"],
)
def test_out_of_memory_reading_a_checkpoint_is_not_a_corrupt_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_dir = tmp_path / "run"
    assert run(["train", str(recipe), "--out", str(run_dir)], capsys)[0] == 0

    def load(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "load", load)
    code, lines = run(["train", "--resume", str(run_dir)], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: out of memory"), lines
    assert os.path.exists(run_dir / "checkpoints" / "final.pt")
