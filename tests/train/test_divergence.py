"""A diverged run stops, exits 1, names the step, phase and the checkpoint to continue from, and
never writes (nor rotates a good checkpoint away for) a state that is not finite."""

from __future__ import annotations

import math
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from growprune.checkpoint import STATE_KEYS, load_checkpoint, non_finite_entry
from growprune.tasks.classification.task import ClassificationTask
from growprune.train.checkpoint import CheckpointManager
from growprune.train.engine import Trainer, TrainingDiverged
from growprune.train.recipe import validate_recipe
from tests.helpers import GROWPRUNE, gap_method, run_captured

CNN = {
    "name": "diverge",
    "data": {"name": "synthetic_images", "args": {"n_train": 512, "n_test": 256, "height": 12, "width": 12}},
    "model": {"name": "small_cnn", "args": {"width": 8}},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "method": gap_method("cgap", partitions=2, finetune_epochs=3),
    "training": {"batch_size": 32, "threads": 1},
    "output": {"tensorboard": False, "report": False, "keep_last": 2},
}


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(CNN))
    sets = [arg for item in overrides for arg in ("--set", item)]
    out = str(tmp_path / "run")
    return run_captured([*GROWPRUNE, "train", str(recipe), "--out", out, "--no-progress", *sets])


def all_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("*.pt"))


def test_diverged_buffers_are_never_checkpointed(tmp_path: Path) -> None:
    """lr=1e6 with a checkpoint every step: BatchNorm running variances go inf, which train-mode
    BatchNorm hides from the loss. The run stops at the first such state, and the checkpoint it
    names is finite and still there (no good checkpoint was rotated away by a diverged one)."""
    result = train(tmp_path, "optimizer.lr=1e6", "output.checkpoint_every_steps=1")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert last.startswith("error: training diverged at step ") and "partition" in last, last
    assert "holds non-finite values" in last or "training loss is" in last, last
    named = Path(last.split("the last good checkpoint is ")[1].split(";")[0])
    assert named.is_file() and named in all_checkpoints(tmp_path / "run")
    for path in all_checkpoints(tmp_path / "run"):
        payload = load_checkpoint(path)
        assert all(non_finite_entry(payload[k], k) is None for k in STATE_KEYS), path
    assert "--resume" in last and "optimizer.lr=" in last


def test_divergence_before_any_checkpoint_says_so(tmp_path: Path) -> None:
    """With the default (time-based) checkpoints nothing was written yet: the message must not
    send the user to a checkpoint folder that does not exist."""
    result = train(tmp_path, "optimizer.lr=1e6")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "no checkpoint was written" in last and "--resume" not in last, last
    assert all_checkpoints(tmp_path / "run") == []


def test_resume_at_a_lower_learning_rate(tmp_path: Path) -> None:
    """optimizer.lr may change on resume, which is what the divergence message offers."""
    assert train(tmp_path, "output.checkpoint_every_steps=8").returncode == 0
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "final.pt").unlink()
    resumed = run_captured(
        [*GROWPRUNE, "train", "--resume", str(run_dir), "--no-progress", "--set", "optimizer.lr=0.01"]
    )
    assert resumed.returncode == 0, resumed.stderr
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["optimizer"]["lr"] == 0.01


def make_trainer(tmp_path: Path) -> Trainer:
    recipe = validate_recipe({**CNN, "output": {**CNN["output"], "checkpoint_every_minutes": None}})
    return Trainer(recipe, tmp_path / "run", progress=False)


def test_evaluation_at_chance_after_learning_warns_and_trains_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finite score back at chance is a warning, never a stop: whether a legitimate run dips
    there (a prune shock on a small evaluation set) depends on the CPU's round-off. The run ends
    normally, with every checkpoint written."""
    trainer = make_trainer(tmp_path)
    scores = iter([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])
    monkeypatch.setattr(trainer, "evaluate", lambda final=False: {"test_loss": 1.0, "test_acc": next(scores)})
    fell = r"test accuracy fell to 0\.1000, chance level .* after reaching 0\.9"
    with pytest.warns(UserWarning, match=fell):
        final = trainer.run()
    assert final["test_acc"] == 0.1
    assert (trainer.run_dir / "checkpoints" / "final.pt").is_file()


def test_a_pruning_shock_is_not_divergence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accuracy at chance right after the masks changed (a GaP phase change here) is the schedule
    at work; the run goes on without even a warning."""
    trainer = make_trainer(tmp_path)
    scores = iter([0.9, 0.1, 0.1, 0.9, 0.9, 0.9])  # phase 1, phase 2, fine-tuning x 3, final
    monkeypatch.setattr(trainer, "evaluate", lambda final=False: {"test_loss": 1.0, "test_acc": next(scores)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert trainer.run()["test_acc"] == 0.9
    assert not [w for w in caught if "chance level" in str(w.message)]


def test_non_finite_evaluation_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = make_trainer(tmp_path)
    monkeypatch.setattr(trainer, "evaluate", lambda final=False: {"test_loss": math.nan, "test_acc": 0.5})
    with pytest.raises(TrainingDiverged, match=r"step \d+ \(.*\): the evaluation gave test_loss nan"):
        trainer.run()
    assert all_checkpoints(trainer.run_dir) == []


def test_chance_level_is_the_commonest_class_within_noise() -> None:
    from growprune.data.dataset import InMemoryDataset

    labels = torch.tensor([0] * 600 + [1] * 200 + [2] * 200)
    data = InMemoryDataset(torch.zeros(len(labels), 2), labels, num_classes=3, name="t")
    task = ClassificationTask(data, data, batch_size=10, eval_batch_size=100, augment=None, seed=0)
    # chance 0.6, noise 3 * sqrt(0.24 / 1000) = 0.046
    assert task.collapsed({"test_acc": 0.62}, peak=0.95) is not None
    assert task.collapsed({"test_acc": 0.70}, peak=0.95) is None  # a bad epoch, not chance
    assert task.collapsed({"test_acc": 0.60}, peak=0.65) is None  # never well above chance
    assert task.collapsed({"test_acc": 0.60}, peak=-math.inf) is None


def test_resume_skips_a_diverged_checkpoint_written_by_an_older_version(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    good = trainer.save_checkpoint()
    assert good is not None
    payload = torch.load(good, weights_only=True)
    payload["model"]["features.1.running_var"].fill_(math.inf)
    torch.save(payload, good.with_name("ckpt-99999999.pt"))
    with pytest.warns(UserWarning, match="holds a diverged state"):
        found = CheckpointManager(good.parent).latest_good()
    assert found is not None and found[0] == good
