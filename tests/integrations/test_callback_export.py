"""``callback.export(path)`` after a real Trainer / Lightning run writes a sparse file that reads
back with the sparsifier's masks and zeros, although the callbacks keep the masks out of the
model's state_dict (``persistent_masks=False``). Table-driven over framework x method; tiny models,
a few steps each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from growprune.errors import GrowpruneError
from growprune.export import load, read_metadata
from growprune.export.reader import read_export
from tests.integrations.conftest import QUIET_CPU_TRAINER
from tests.tiny_transformers import Tokens, cpu_training_args, gpt2, llama


def hf_run(tmp_path: Path, method: str, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, Any, Any]:
    """A tiny GPT-2 trained 4 steps by transformers.Trainer; (model, callback, fresh-model factory)."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer

    from growprune.integrations.huggingface import SparsityCallback

    torch.manual_seed(0)
    model = gpt2()
    callback = SparsityCallback(method, **kwargs)
    args = cpu_training_args(tmp_path / "run", max_steps=4, save_strategy="no")
    Trainer(model=model, args=args, train_dataset=Tokens(16), callbacks=[callback]).train()
    return model, callback, gpt2


def lightning_run(tmp_path: Path, method: str, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, Any, Any]:
    """A tiny Llama LightningModule fitted 4 steps; (module, callback, fresh-module factory)."""
    pl = pytest.importorskip("lightning.pytorch")

    from growprune.integrations.lightning import SparsityCallback

    class CausalLM(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = llama()

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self.model(**batch).loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    pl.seed_everything(0, verbose=False)
    module = CausalLM()
    callback = SparsityCallback(method, **kwargs)
    trainer = pl.Trainer(max_steps=4, callbacks=[callback], **QUIET_CPU_TRAINER)
    trainer.fit(module, torch.utils.data.DataLoader(Tokens(16), batch_size=4))
    return module, callback, CausalLM


@dataclass
class Row:
    id: str
    run: Callable[[Path, str, dict[str, Any]], tuple[torch.nn.Module, Any, Any]]
    method: str
    kwargs: dict[str, Any]


ROWS = [
    Row("trainer-oneshot", hf_run, "oneshot", {"sparsity": 0.5}),
    Row("trainer-cgap", hf_run, "cgap", {"sparsity": 0.8, "partitions": 2}),
    Row("lightning-gmp", lightning_run, "gmp", {"sparsity": 0.7, "end_step": 2, "frequency": 1}),
    Row("lightning-oneshot", lightning_run, "oneshot", {"sparsity": 0.5}),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_callback_export_is_sparse(row: Row, tmp_path: Path) -> None:
    model, callback, fresh = row.run(tmp_path, row.method, row.kwargs)
    sparsifier = callback.sparsifier
    assert not any(k.endswith("_mask") for k in model.state_dict())  # the callbacks' choice
    out = tmp_path / "model.safetensors"
    summary = callback.export(out)
    assert summary.format == "sparse" and summary.pruned_layers >= len(sparsifier.names)
    assert read_metadata(out)["format"] == "sparse"
    exported = read_export(out)
    for name, mask in sparsifier.masks.items():
        assert torch.equal(exported.masks[name], mask.cpu()), name
        assert torch.count_nonzero(exported.state[name][~mask.cpu()]) == 0, name
    assert summary.sparsity == pytest.approx(sparsifier.current_sparsity(), abs=0.02)
    loaded = load(out, model=fresh())
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("framework", ["huggingface", "lightning"])
def test_export_before_training_is_one_clear_error(framework: str, tmp_path: Path) -> None:
    module = pytest.importorskip(f"growprune.integrations.{framework}", exc_type=ImportError)
    callback = module.SparsityCallback("oneshot", sparsity=0.5)
    with pytest.raises(GrowpruneError, match=r"no sparsifier yet.*after trainer\.(train|fit)\(\)"):
        callback.export(tmp_path / "m.safetensors")
