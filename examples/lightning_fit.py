"""Sparse training with Lightning: C-GaP on a tiny classifier, automatic optimization, with a resume.

    pip install growprune[lightning]
    python examples/lightning_fit.py

The only growprune line is the callback; Lightning's default loop (``optimizer.step(closure)``)
and gradient accumulation need nothing else. The run saves a checkpoint after 3 of 6 epochs; a
second Trainer with a fresh module resumes from it (``fit(ckpt_path=...)``) and must end with
exactly the weights and masks of the uninterrupted run. Exits non-zero if the sparsity is not
the target or the resumed run differs.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from torch import nn

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl

import growprune as gp
from growprune.integrations.lightning import SparsityCallback

SPARSITY = 0.8
EPOCHS = 6


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(32, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, 4),
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 32, generator=g)
    y = (x[:, :4] + 0.5 * x[:, 4:8]).argmax(dim=1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


class SaveAfterEpoch(pl.Callback):
    def __init__(self, epoch: int, path: str) -> None:
        self.epoch, self.path = epoch, path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            trainer.save_checkpoint(self.path)


def fit(callbacks: list[pl.Callback], ckpt_path: str | None = None) -> Classifier:
    pl.seed_everything(0, verbose=False)
    model = Classifier()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accumulate_grad_batches=2,
        deterministic=True,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return model


def main() -> int:
    torch.set_num_threads(1)  # tiny model: one thread is fastest (and immune to busy cores)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, "epoch3.ckpt")
        # C-GaP over 4 partitions; phase lengths and fine-tuning derive from the run's optimizer steps.
        sparsity = SparsityCallback("cgap", sparsity=SPARSITY, partitions=4)
        model = fit([sparsity, SaveAfterEpoch(3, checkpoint)])
        print(gp.sparsity_report(model))

        resumed_sparsity = SparsityCallback("cgap", sparsity=SPARSITY, partitions=4)
        resumed = fit([resumed_sparsity], ckpt_path=checkpoint)

    a, b = model.state_dict(), resumed.state_dict()
    same_weights = all(torch.equal(a[k], b[k]) for k in a)
    masks_a, masks_b = sparsity.sparsifier.masks, resumed_sparsity.sparsifier.masks
    same_masks = all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)
    overall = gp.sparsity_report(model).overall
    print(
        f"phase {sparsity.sparsifier.phase}, sparsity {overall:.4f}; resumed run equals the "
        f"uninterrupted one: weights {same_weights}, masks {same_masks}"
    )
    if abs(overall - SPARSITY) > 1e-3 or not (same_weights and same_masks):
        print("error: wrong sparsity or the resumed run differs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
