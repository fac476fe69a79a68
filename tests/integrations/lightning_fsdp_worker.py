"""Lightning's ModelParallelStrategy (FSDP2 via ``configure_model``) with the growprune callback,
2 CPU processes; Lightning starts the second one by running this script again. Each rank writes
``result.<rank>.json`` in the working directory for tests/integrations/test_lightning_fsdp.py (a
file each: the ranks share one stdout, where their lines can interleave)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, TensorDataset

import growprune as gp
from growprune.integrations.lightning import SparsityCallback


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

    def configure_model(self) -> None:
        mesh = self.device_mesh["data_parallel"]
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(self.net, mesh=mesh)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=generator)
    y = x[:, :4].argmax(1)
    callback = SparsityCallback("cgap", sparsity=0.8, partitions=3)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_epochs=3,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier()
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=16))
    assert callback.sparsifier is not None
    report = gp.sparsity_report(model.net)  # a collective: every rank
    masks = callback.sparsifier.masks
    result = {
        "rank": trainer.global_rank,
        "sharded": callback.sparsifier.sharded,
        "overall": report.overall,
        "layers": {row.name: row.zeros for row in report.layers},
        "masks": {name: int(mask.flatten().nonzero().sum()) for name, mask in masks.items()},
    }
    Path(f"result.{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
