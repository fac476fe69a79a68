"""Exporting a run directory whose final.pt cannot be read: best.pt, then the newest readable
numbered checkpoint, and a one-line warning naming what was skipped; never silently."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

import growprune as gp
from growprune.cli import main
from growprune.export import ExportError, ExportWarning, export_model
from growprune.train.engine import Trainer
from growprune.train.recipe import validate_recipe


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) run: final.pt, best.pt and numbered checkpoints."""
    recipe = validate_recipe(
        {
            "name": "fallback-test",
            "data": {"name": "synthetic", "args": {"n_train": 128, "n_test": 64}},
            "model": {"name": "mlp", "args": {"hidden": [16]}},
            "optimizer": {"name": "sgd", "lr": 0.05},
            "method": {"name": "oneshot", "sparsity": 0.9},
            "training": {"epochs": 1, "batch_size": 32, "seed": 0, "threads": 1},
            "output": {"tensorboard": False, "report": False, "checkpoint_every_steps": 2},
        }
    )
    run = tmp_path_factory.mktemp("fallback") / "run"
    Trainer(recipe, run, progress=False).run()
    return run


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    ckpts = copy / "checkpoints"
    assert (ckpts / "final.pt").is_file() and (ckpts / "best.pt").is_file()
    assert len(list(ckpts.glob("ckpt-*.pt"))) >= 2
    return copy


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:500])


def _numbered(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("ckpt-*.pt"))


def _export(run: Path, out: Path) -> tuple[gp.ExportSummary, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = export_model(run, out)
    return summary, [str(w.message) for w in caught if issubclass(w.category, ExportWarning)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if not k.endswith("_mask")}


def test_intact_run_exports_final_without_a_warning(run: Path, tmp_path: Path) -> None:
    summary, said = _export(run, tmp_path / "m.safetensors")
    assert summary.source.endswith("final.pt") and said == []


def test_truncated_final_falls_back_to_best_and_says_so(run: Path, tmp_path: Path) -> None:
    final = run / "checkpoints" / "final.pt"
    _truncate(final)
    summary, said = _export(run, tmp_path / "m.safetensors")
    assert summary.source.endswith("best.pt")
    assert len(said) == 1 and f"{final} is unreadable: it is corrupt or truncated (" in said[0]
    assert said[0].endswith("exporting best.pt instead")
    loaded = gp.load(tmp_path / "m.safetensors")
    for key, value in _weights(run / "checkpoints" / "best.pt").items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_then_the_newest_readable_numbered_checkpoint(run: Path, tmp_path: Path) -> None:
    ckpts = run / "checkpoints"
    _truncate(ckpts / "final.pt")
    (ckpts / "best.pt").write_bytes(b"not a checkpoint")
    newest, older = _numbered(run)[-1], _numbered(run)[-2]
    _truncate(newest)
    summary, said = _export(run, tmp_path / "m.safetensors")
    assert summary.source.endswith(older.name)
    assert len(said) == 1, said
    for name in ("final.pt", "best.pt", newest.name):
        assert name in said[0]
    assert said[0].endswith(f"exporting {older.name} instead")


def test_none_readable_names_them_all(run: Path, tmp_path: Path) -> None:
    ckpts = run / "checkpoints"
    for path in [ckpts / "final.pt", ckpts / "best.pt", *_numbered(run)]:
        _truncate(path)
    with pytest.raises(ExportError, match="no readable checkpoint") as info:
        export_model(run, tmp_path / "m.safetensors")
    message = str(info.value)
    assert "\n" not in message
    for path in [ckpts / "final.pt", ckpts / "best.pt", *_numbered(run)]:
        assert path.name in message
    assert not (tmp_path / "m.safetensors").exists()


def test_a_checkpoint_file_named_directly_does_not_fall_back(run: Path, tmp_path: Path) -> None:
    final = run / "checkpoints" / "final.pt"
    _truncate(final)
    with pytest.raises(ExportError, match=f"{final} is corrupt or truncated"):
        export_model(final, tmp_path / "m.safetensors")


def test_cli_prints_the_fallback_as_one_warning_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    final = run / "checkpoints" / "final.pt"
    _truncate(final)
    assert main(["export", str(run), "--out", str(tmp_path / "m.safetensors")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"warning: {final} is unreadable: it is corrupt or truncated (")
    assert captured.err.rstrip().endswith("exporting best.pt instead")
    assert "best.pt" in captured.out
