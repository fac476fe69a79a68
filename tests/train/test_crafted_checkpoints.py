"""A damaged or crafted checkpoint is refused with one line naming it, never resumed from (nor a
traceback): ``weights_only`` loading stops code, these checks stop nonsense."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from growprune.cli import main
from tests.test_cli_errors import BASE


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crafted")
    recipe = root / "r.yaml"
    recipe.write_text(yaml.safe_dump({**BASE, "output": {**BASE["output"], "checkpoint_every_steps": 3}}))
    assert main(["train", str(recipe), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        node = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        node = payload
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])

    return change


CRAFTED = {
    "step-missing": (_drop(("position", "step")), "every one is corrupt"),
    "step-text": (_set(("position", "step"), "abc"), "every one is corrupt"),
    "step-negative": (_set(("position", "step"), -5), "every one is corrupt"),
    "step-past-the-run": (_set(("position", "step"), 10**12), "outside this run"),
    "batch-past-the-epoch": (_set(("position", "batch"), 10**9), "outside this run"),
    "position-a-list": (_set(("position",), [1, 2]), "every one is corrupt"),
    "recipe-a-number": (_set(("recipe",), 5), "every one is corrupt"),
    "rng-missing": (_drop(("rng",)), "cannot be restored"),
    "rng-junk": (_set(("rng",), {"torch": 3}), "cannot be restored"),
    "elapsed-text": (_set(("position", "elapsed"), "x"), "every one is corrupt"),
    "optimizer-junk": (_set(("optimizer",), {"state": 5}), "does not fit this recipe's model"),
    "sparsifier-junk": (_set(("sparsifier",), {"x": 1}), "does not fit this recipe's model"),
    "model-weights-dropped": (_set(("model",), {}), "does not fit this recipe's model"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_is_refused(
    case: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, fragment = CRAFTED[case]
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    for path in (checkpoints / "final.pt", checkpoints / "best.pt"):
        path.unlink(missing_ok=True)
    *older, newest = sorted(checkpoints.glob("ckpt-*.pt"))
    for path in older:
        path.unlink()
    payload = torch.load(newest, weights_only=True)
    payload["position"]["batch"] = 0  # resume where an epoch starts, whatever the cadence
    change(payload)
    torch.save(payload, newest)
    capsys.readouterr()
    code = main(["train", "--resume", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], err
    assert not (checkpoints / "final.pt").exists()
