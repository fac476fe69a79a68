"""An output path that cannot be written is one line naming the path and the fix, never a traceback.

Problems with the paths as given (``--out`` a directory, under a file, in a directory that cannot
be written, a source that does not exist) are usage errors, exit 2; a write that fails for another
reason (a full disk) is exit 1. A missing parent directory is created.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from growprune.cli import main
from growprune.errors import UsageError
from growprune.export import ExportError, export_model, load


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _no_leftovers(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_out_is_an_existing_directory(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "exports"
    target.mkdir()
    with pytest.raises(
        ExportError, match=rf"{target} is a directory; .*{target / 'model.safetensors'}"
    ) as info:
        export_model(run_dir, target)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    code, err = _cli(capsys, str(run_dir), "--out", str(target))
    assert code == 2 and str(target) in _one_line(err)
    assert list(target.iterdir()) == []
    _no_leftovers(tmp_path)


def test_out_ending_in_a_separator_names_a_directory(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"names a directory") as info:
        export_model(run_dir, f"{tmp_path / 'newdir'}{os.sep}")
    assert info.value.exit_code == 2
    assert not (tmp_path / "newdir").exists()


def test_out_under_a_regular_file(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a directory")
    out = blocker / "sub" / "model.safetensors"
    with pytest.raises(ExportError, match=rf"{blocker} is a file, not a directory") as info:
        export_model(run_dir, out)
    assert info.value.exit_code == 2
    code, err = _cli(capsys, str(run_dir), "--out", str(out))
    assert code == 2 and str(out) in _one_line(err) and str(blocker) in err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_directory_without_write_permission(run_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ExportError, match=rf"{locked} is not writable") as info:
            export_model(run_dir, locked / "model.safetensors")
    finally:
        locked.chmod(0o755)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("code", "strerror", "exit_code"),
    [
        (errno.EACCES, "Permission denied", 2),
        (errno.EROFS, "Read-only file system", 2),
        (errno.ENOSPC, "No space left on device", 1),
    ],
    ids=["permission", "read-only", "disk-full"],
)
def test_write_that_fails_is_one_line(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
    strerror: str,
    exit_code: int,
) -> None:
    """The operating system refuses the write itself (as for root on a read-only mount)."""
    import growprune.export.writer as writer

    def refuse(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        raise OSError(code, strerror, str(filename))

    monkeypatch.setattr(writer, "save_file", refuse)
    out = tmp_path / "out" / "model.safetensors"
    with pytest.raises(ExportError, match=rf"{out}.*{strerror}") as info:
        export_model(run_dir, out)
    assert info.value.exit_code == exit_code
    rc, err = _cli(capsys, str(run_dir), "--out", str(out))
    assert rc == exit_code and strerror in _one_line(err)
    assert not out.exists()
    _no_leftovers(out.parent)


def test_missing_parent_directories_are_created(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "new" / "deeper" / "model.safetensors"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert out.is_file() and load(out) is not None
    assert capsys.readouterr().err == ""


def test_source_that_does_not_exist_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _cli(capsys, str(tmp_path / "no-run"), "--out", str(tmp_path / "m.safetensors"))
    assert code == 2 and "no such run directory" in _one_line(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_out_that_is_not_a_regular_file_is_left_alone(run_dir: Path, tmp_path: Path) -> None:
    """Renaming over it would replace a pipe (or, for root, a device like /dev/null) with the export."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(ExportError, match=r"exists and is not a regular file") as info:
        export_model(run_dir, pipe)
    assert info.value.exit_code == 2 and not pipe.is_file()
