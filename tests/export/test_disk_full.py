"""A full disk or an exceeded quota while exporting is one line saying so and what to do; the
file asked for is not created (or left as it was) and no temporary file stays. Long legal names
are written."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from growprune.cli import main
from growprune.export import ExportError, export_model, load


def oserror(code: int) -> Callable[..., None]:
    def refuse(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        raise OSError(code, os.strerror(code), str(filename))

    return refuse


def rust_error(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
    raise Exception(  # noqa: TRY002 - safetensors raises its own class
        "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
        'message: "No space left on device" })'
    )


# (id, the failing save_file, start of the message after the output's directory)
CASES = [
    ("enospc", oserror(errno.ENOSPC), "no space left on the file system of"),
    ("edquot", oserror(errno.EDQUOT), "disk quota exceeded on the file system of"),
    ("safetensors-error", rust_error, "no space left on the file system of"),
]


@pytest.mark.parametrize(("save_file", "start"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_full_disk_is_one_line(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    save_file: Callable[..., None],
    start: str,
) -> None:
    import growprune.export.writer as writer

    out = tmp_path / "out" / "model.safetensors"
    export_model(run_dir, out)  # an earlier export, which must stay as it was
    before = out.read_bytes()
    monkeypatch.setattr(writer, "save_file", save_file)
    with pytest.raises(ExportError, match=f"{start} {out.parent}: writing {out} failed"):
        export_model(run_dir, out)
    capsys.readouterr()
    code = main(["export", str(run_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {start} ") and "free space there or choose another output directory" in err
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["model.safetensors"]


@pytest.mark.parametrize("length", [250, 252, 255])
def test_export_to_a_name_of_any_legal_length(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], length: int
) -> None:
    out = tmp_path / "out" / ("m" * (length - len(".safetensors")) + ".safetensors")
    assert main(["export", str(run_dir), "--out", str(out)]) == 0, capsys.readouterr().err
    assert load(out) is not None
    assert [p.name for p in out.parent.iterdir()] == [out.name]
