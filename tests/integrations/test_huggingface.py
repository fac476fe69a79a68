"""SparsityCallback in transformers.Trainer: tiny GPT-2/BERT/Llama from configs, random tokens."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from growprune.integrations import huggingface  # noqa: E402
from growprune.integrations.huggingface import STATE_FILE, SparsityCallback  # noqa: E402
from tests.integrations.sparse_checks import assert_at_target, assert_masked_zero, assert_same_state  # noqa: E402
from tests.tiny_transformers import Tokens, bert, cpu_training_args, gpt2, llama  # noqa: E402


class ZeroAtEveryStep(TrainerCallback):
    """Checks after every optimizer step that the pruned weights are exactly zero."""

    def __init__(self, sparsity: SparsityCallback) -> None:
        self.sparsity, self.steps = sparsity, 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.sparsity.sparsifier is not None
        assert_masked_zero(self.sparsity.sparsifier)
        assert self.sparsity.sparsifier.step_count == state.global_step
        self.steps += 1


def run(
    out: Path,
    method: str = "cgap",
    *,
    model_fn: Any = gpt2,
    data: torch.utils.data.Dataset | None = None,
    resume: str | bool | None = None,
    callback_kwargs: dict[str, Any] | None = None,
    **train_args: Any,
) -> tuple[torch.nn.Module, SparsityCallback, Trainer, ZeroAtEveryStep]:
    torch.manual_seed(0)
    model = model_fn()
    callback = SparsityCallback(method, **(callback_kwargs or {"sparsity": 0.8, "partitions": 2}))
    check = ZeroAtEveryStep(callback)
    args = cpu_training_args(out, **{"logging_steps": 2, "save_strategy": "no", **train_args})
    trainer = Trainer(model=model, args=args, train_dataset=data or Tokens(), callbacks=[callback, check])
    trainer.train(resume_from_checkpoint=resume)
    return model, callback, trainer, check


def test_gpt2_cgap_with_gradient_accumulation(tmp_path: Path) -> None:
    model, callback, trainer, check = run(
        tmp_path, max_steps=12, gradient_accumulation_steps=2, save_strategy="steps", save_steps=6
    )
    sparsifier = callback.sparsifier
    assert sparsifier is not None and sparsifier.method == "cgap"
    # 12 optimizer steps (24 batches): 25% fine-tuning, 2 phases of 4 steps, rest fine-tuning.
    assert (sparsifier.steps_per_phase, sparsifier.finetune_steps) == (4, 4)
    assert sparsifier.step_count == trainer.state.global_step == check.steps == 12
    assert sparsifier.phase.name == "done"
    assert [h.event for h in sparsifier.history] == ["init", "prune-grow", "final-prune"]
    assert_at_target(sparsifier)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("sparsity" in e and "sparsity_phase" in e for e in logged)
    assert logged[0]["sparsity_phase"].startswith("round 1/1, partition")
    assert logged[-1]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    # Masks are not in the model's state_dict nor in the saved checkpoints; the sparsifier state is.
    assert not [k for k in model.state_dict() if k.endswith("_mask")]
    for step in (6, 12):
        folder = tmp_path / f"checkpoint-{step}"
        assert (folder / STATE_FILE).is_file()
        saved_model = load_file(folder / "model.safetensors")
        assert saved_model and not [k for k in saved_model if k.endswith("_mask")]
    saved = torch.load(tmp_path / "checkpoint-6" / STATE_FILE, weights_only=True)
    assert saved["global_step"] == 6 and saved["sparsifier"]["step"] == 6


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    """Checkpoint at step 5 (mid phase 2 of C-GaP); fresh model and Trainer resume to step 12."""
    common: dict[str, Any] = dict(
        max_steps=12, gradient_accumulation_steps=2, save_strategy="steps", save_steps=5
    )
    model_a, cb_a, trainer_a, _ = run(tmp_path / "a", **common)
    assert cb_a.sparsifier is not None
    checkpoint = tmp_path / "a" / "checkpoint-5"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 5

    # A path into another run's folder: found in the Trainer's loop, not guessed from output_dir.
    model_b, cb_b, trainer_b, check_b = run(tmp_path / "b", resume=str(checkpoint), **common)
    # resume_from_checkpoint=True: the last checkpoint in output_dir.
    shutil.copytree(checkpoint, tmp_path / "c" / "checkpoint-5")
    model_c, cb_c, trainer_c, _ = run(tmp_path / "c", resume=True, **common)

    assert check_b.steps == 7  # only the steps after the checkpoint ran
    for model, callback, trainer in ((model_b, cb_b, trainer_b), (model_c, cb_c, trainer_c)):
        assert callback.sparsifier is not None
        assert_same_state(model_a, model, cb_a.sparsifier, callback.sparsifier)
        state_a, state = trainer_a.optimizer.state_dict()["state"], trainer.optimizer.state_dict()["state"]
        assert all(torch.equal(state_a[i][k], state[i][k]) for i in state_a for k in state_a[i])
    assert cb_a.sparsifier.phase.name == "done"
    assert_at_target(cb_a.sparsifier)


def test_compact_storage_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    """storage="compact" through the callback (a Llama: its projections are nn.Linear): the
    Trainer's checkpoint holds the dense model and the kept values' optimizer state, and a
    resumed run ends bitwise where the uninterrupted one does."""
    common: dict[str, Any] = dict(max_steps=12, save_strategy="steps", save_steps=5)
    kwargs = {"sparsity": 0.8, "partitions": 2, "storage": "compact"}
    model_a, cb_a, trainer_a, _ = run(tmp_path / "a", model_fn=llama, callback_kwargs=kwargs, **common)
    checkpoint = tmp_path / "a" / "checkpoint-5"
    model_b, cb_b, trainer_b, check_b = run(
        tmp_path / "b", model_fn=llama, callback_kwargs=kwargs, resume=str(checkpoint), **common
    )
    assert check_b.steps == 7 and cb_a.sparsifier is not None and cb_b.sparsifier is not None
    assert_same_state(model_a, model_b, cb_a.sparsifier, cb_b.sparsifier)
    state_a, state_b = trainer_a.optimizer.state_dict()["state"], trainer_b.optimizer.state_dict()["state"]
    assert all(torch.equal(state_a[i][k], state_b[i][k]) for i in state_a for k in state_a[i])
    assert_at_target(cb_b.sparsifier)
    assert any(t.param.shape != t.shape for t in cb_b.sparsifier.targets)  # held compactly


def test_resume_refuses_missing_or_mismatched_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common: dict[str, Any] = dict(max_steps=8, save_strategy="steps", save_steps=3)
    run(tmp_path / "a", **common)
    checkpoint = tmp_path / "a" / "checkpoint-3"

    # Another schedule (the run's length changed): refused, with what to keep equal.
    with pytest.raises(ValueError, match=r"does not match .*max_steps / num_train_epochs .* same ones"):
        run(tmp_path / "b", resume=str(checkpoint), **{**common, "max_steps": 10})

    # The Trainer's loop not found (a Trainer subclass with its own loop): output_dir is guessed,
    # and when it holds no state the error names the escape hatch.
    monkeypatch.setattr(huggingface, "_find_trainer", lambda: (None, None, None))
    with pytest.raises(FileNotFoundError, match=r"holds no growprune sparsifier state .* resume_from="):
        run(tmp_path / "c", resume=str(checkpoint), **common)
    _, callback, _, _ = run(
        tmp_path / "d",
        resume=str(checkpoint),
        callback_kwargs={"sparsity": 0.8, "partitions": 2, "resume_from": str(checkpoint)},
        **common,
    )
    assert callback.sparsifier is not None and callback.sparsifier.step_count == 8

    # A checkpoint saved without the callback.
    monkeypatch.undo()
    os.remove(checkpoint / STATE_FILE)
    with pytest.raises(FileNotFoundError, match="saved without SparsityCallback"):
        run(tmp_path / "e", resume=str(checkpoint), **common)


def test_bert_num_train_epochs_gmp(tmp_path: Path) -> None:
    """No max_steps: the length comes from num_train_epochs (2 epochs x 8 batches / 2 accumulated)."""
    model, callback, trainer, check = run(
        tmp_path,
        "gmp",
        model_fn=bert,
        data=Tokens(32, classes=2),
        num_train_epochs=2,
        gradient_accumulation_steps=2,
        callback_kwargs={"sparsity": 0.75},
    )
    sparsifier = callback.sparsifier
    assert sparsifier is not None
    assert trainer.state.max_steps == sparsifier.step_count == check.steps == 8
    assert (sparsifier.start_step, sparsifier.end_step, sparsifier.frequency) == (0, 6, 1)
    assert sparsifier.phase.name == "finetune"
    assert_at_target(sparsifier)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("oneshot", {"sparsity": 0.7}),
        ("set", {"sparsity": 0.7}),
        ("rigl", {"sparsity": 0.7, "update_interval": 2}),
        ("admm", {"sparsity": 0.7}),
        ("cgap", {"sparsity": 0.7, "partitions": 3, "rounds": 2, "finetune_steps": 0.1}),
        ("cgap", {"pattern": "2:4", "sparsity": None, "partitions": 2}),
    ],
)
def test_llama_methods_end_at_target(tmp_path: Path, method: str, kwargs: dict[str, Any]) -> None:
    model, callback, trainer, check = run(
        tmp_path, method, model_fn=llama, max_steps=14, callback_kwargs=kwargs
    )
    sparsifier = callback.sparsifier
    assert sparsifier is not None and sparsifier.step_count == check.steps == 14
    assert sparsifier.phase.name in ("finetune", "done")
    assert_at_target(sparsifier)
    assert not [k for k in model.state_dict() if k.endswith("_mask")]


def test_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown method 'gap'"):
        SparsityCallback("gap", sparsity=0.8)
    with pytest.raises(
        ValueError, match="unknown argument 'partition' for method 'cgap'; did you mean 'partitions'"
    ):
        SparsityCallback("cgap", partition=4)
    with pytest.raises(ValueError, match="pgap .* pass merger="):
        SparsityCallback("pgap", sparsity=0.8)
    with pytest.raises(ValueError, match="do not pass 'state'"):
        SparsityCallback("gmp", state={})


def test_report_to_integrations_see_the_sparsity(tmp_path: Path) -> None:
    """The callback moves itself before the reporters (which the Trainer puts before user callbacks)."""
    seen: list[dict[str, Any]] = []

    class Reporter(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            seen.append(dict(logs))

    torch.manual_seed(0)
    callback = SparsityCallback("oneshot", sparsity=0.5)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        per_device_train_batch_size=4,
    )
    trainer = Trainer(model=llama(), args=args, train_dataset=Tokens(8), callbacks=[Reporter(), callback])
    trainer.train()
    assert trainer.callback_handler.callbacks[0] is callback
    assert seen and all(entry.get("sparsity") == pytest.approx(0.5, abs=1e-3) for entry in seen)
