"""SparsityCallback in Lightning: automatic optimization (closure step), accumulation, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402

from growprune.integrations.lightning import SparsityCallback  # noqa: E402
from tests.integrations.conftest import QUIET_CPU_TRAINER  # noqa: E402
from tests.integrations.sparse_checks import assert_at_target, assert_masked_zero, assert_same_state  # noqa: E402
from tests.tiny_transformers import Tokens, llama  # noqa: E402


class CausalLM(pl.LightningModule):
    """A tiny Llama (from a config) as a LightningModule with the default automatic optimization."""

    def __init__(self, manual: bool = False) -> None:
        super().__init__()
        self.model = llama()
        self.automatic_optimization = not manual

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self.model(**batch).loss
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


class ZeroAtEveryBatch(pl.Callback):
    """Checks after every batch that the pruned weights are exactly zero; saves a checkpoint."""

    def __init__(self, sparsity: SparsityCallback, save_after_epoch: int = 0, path: str = "") -> None:
        self.sparsity, self.save_after_epoch, self.path = sparsity, save_after_epoch, path
        self.batches, self.steps_seen = 0, set()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        sparsifier = self.sparsity.sparsifier
        assert sparsifier is not None
        assert_masked_zero(sparsifier)
        assert sparsifier.step_count == trainer.global_step
        self.batches += 1
        self.steps_seen.add(trainer.global_step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch + 1 == self.save_after_epoch:
            trainer.save_checkpoint(self.path)


def loader(n: int = 32) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Tokens(n), batch_size=4)


def fit(
    method_args: dict[str, Any] | None = None,
    *,
    ckpt_path: str | None = None,
    save_after_epoch: int = 0,
    path: str = "",
    manual: bool = False,
    **trainer_args: Any,
) -> tuple[CausalLM, SparsityCallback, ZeroAtEveryBatch, pl.Trainer]:
    pl.seed_everything(0, verbose=False)
    module = CausalLM(manual)
    callback = SparsityCallback("cgap", **(method_args or {"sparsity": 0.8, "partitions": 3}))
    check = ZeroAtEveryBatch(callback, save_after_epoch, path)
    settings = {**QUIET_CPU_TRAINER, "max_epochs": 6, "accumulate_grad_batches": 2, "deterministic": True}
    settings.update(trainer_args)
    trainer = pl.Trainer(callbacks=[callback, check], **settings)
    trainer.fit(module, loader(), ckpt_path=ckpt_path)
    return module, callback, check, trainer


def test_automatic_optimization_with_accumulation_is_sparse_at_every_step() -> None:
    module, callback, check, trainer = fit()
    sparsifier = callback.sparsifier
    assert sparsifier is not None
    # 6 epochs x 8 batches / 2 accumulated = 24 optimizer steps: 25% fine-tuning, 3 phases of 6.
    assert trainer.estimated_stepping_batches == sparsifier.step_count == trainer.global_step == 24
    assert (sparsifier.steps_per_phase, sparsifier.finetune_steps) == (6, 6)
    assert check.batches == 48 and check.steps_seen == set(range(0, 25))  # batch ends: every other one steps
    assert [h.event for h in sparsifier.history] == ["init", "prune-grow", "prune-grow", "final-prune"]
    assert sparsifier.phase.name == "done"
    assert_at_target(sparsifier)
    assert float(trainer.callback_metrics["sparsity"]) == pytest.approx(0.8, abs=1e-4)
    assert not [k for k in module.state_dict() if k.endswith("_mask")]


def test_manual_optimization() -> None:
    _, callback, check, trainer = fit({"sparsity": 0.6}, manual=True, max_epochs=2, accumulate_grad_batches=1)
    assert callback.sparsifier is not None and callback.sparsifier.step_count == trainer.global_step == 16
    assert_at_target(callback.sparsifier)


@pytest.mark.parametrize("storage", ["masked", "compact"])
def test_ckpt_path_resume_equals_uninterrupted_run(tmp_path: Path, storage: str) -> None:
    """Checkpoint after epoch 3 (step 12, mid phase 3 of C-GaP); a fresh module and Trainer resume.
    In compact storage too: the checkpoint's model is dense, its optimizer state the kept values'."""
    path = str(tmp_path / "epoch3.ckpt")
    args = {"sparsity": 0.8, "partitions": 3, "storage": storage}
    module_a, cb_a, _, trainer_a = fit(args, save_after_epoch=3, path=path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["global_step"] == 12
    assert checkpoint["callbacks"]["SparsityCallback"]["sparsifier"]["step"] == 12
    assert not [k for k in checkpoint["state_dict"] if k.endswith("_mask")]
    CausalLM().load_state_dict(checkpoint["state_dict"])  # strict: a fresh module loads it

    module_b, cb_b, check_b, trainer_b = fit(args, ckpt_path=path)
    assert check_b.batches == 24 and check_b.steps_seen == set(range(12, 25))  # only epochs 4-6 ran
    assert cb_a.sparsifier is not None and cb_b.sparsifier is not None
    assert_same_state(module_a, module_b, cb_a.sparsifier, cb_b.sparsifier)
    state_a = trainer_a.optimizers[0].state_dict()["state"]
    state_b = trainer_b.optimizers[0].state_dict()["state"]
    assert all(torch.equal(state_a[i][k], state_b[i][k]) for i in state_a for k in state_a[i])
    assert_at_target(cb_b.sparsifier)
    compact = [t.name for t in cb_b.sparsifier.targets if t.param.shape != t.shape]
    assert bool(compact) == (storage == "compact"), compact


def test_resume_refuses_other_schedule_or_missing_state(tmp_path: Path) -> None:
    path = str(tmp_path / "epoch1.ckpt")
    fit(save_after_epoch=1, path=path, max_epochs=2)
    with pytest.raises(ValueError, match="does not match .*estimated_stepping_batches"):
        fit(ckpt_path=path, max_epochs=3)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["callbacks"]["SparsityCallback"]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="checkpoint without growprune sparsifier state"):
        fit(ckpt_path=path, max_epochs=2)


def test_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown argument 'finetune_epochs' for method 'cgap'"):
        SparsityCallback("cgap", finetune_epochs=3)
    with pytest.raises(ValueError, match="pgap .* pass merger="):
        SparsityCallback("pgap")
