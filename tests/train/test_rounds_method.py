"""A second method that trains in rounds runs through the trainer's rounds loop without an edit to
growprune/train (issue 28): the loop asks the method only what ``RoundsMethod`` declares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.methods import METHODS, MethodSettings, RoundsMethod
from growprune.records import FinalRecord, MergeRecord, Phase, PhaseName, read_records
from growprune.train.engine import Trainer
from growprune.train.loops import RoundLoop
from growprune.train.recipe import validate_recipe


@dataclass(kw_only=True)
class TakeTurnsSettings(MethodSettings):
    rounds: int = 2
    steps_per_round: int = 2


class TakeTurns(RoundsMethod):
    """Two workers; worker k owns every other pruned layer (k, k + 2, ...). Each round both train
    the whole (pruned) model; the merge keeps each worker's own layers and prunes by magnitude."""

    method = "take_turns_test"
    title = "Take turns"
    settings = TakeTurnsSettings
    num_workers = 2

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        rounds: int = 2,
        steps_per_round: int = 2,
        merger: Any = None,
        **kwargs: Any,
    ) -> None:
        self.rounds, self.steps_per_round, self.merger = rounds, steps_per_round, merger
        self.merged_rounds, self.worker, self.merge_non_partition = 0, 0, "average"
        self.begun: list[tuple[int, int]] = []  # what the loop asked for, in order
        super().__init__(model, optimizer, **kwargs)

    def begin_round(self, round_index: int, worker: int) -> None:
        self.begun.append((round_index, worker))
        self.worker, self.step_count = worker, round_index * self.steps_per_round

    def partition_owner(self) -> dict[str, int]:
        return {alias: i % self.num_workers for i, t in enumerate(self.targets) for alias in t.aliases}

    def prune_after_merge(self) -> None:
        masks = self.compute_masks(self.names, self.magnitude_scores(self.names))
        self.change_masks(masks, "merge-prune", reset="all")
        self.merged_rounds = self.step_count // self.steps_per_round

    def describe_phase(self, step: int) -> Phase:
        return Phase("rounds" if step < self.rounds_end else PhaseName.FINETUNE, step)

    def extra_state(self) -> dict[str, Any]:
        return {"merged_rounds": self.merged_rounds}

    def load_extra_state(self, state: Any) -> None:
        self.merged_rounds = int(state.get("merged_rounds", 0))


@pytest.fixture
def take_turns() -> Any:
    gp.register_method(TakeTurns)
    yield TakeTurns
    METHODS.pop(TakeTurns.method, None)


def test_a_registered_rounds_method_trains_in_rounds(tmp_path: Path, take_turns: type[TakeTurns]) -> None:
    recipe = validate_recipe(
        {
            "name": "rounds-test",
            "data": {"name": "synthetic", "args": {"n_train": 128, "n_test": 64}},
            "model": {"name": "mlp", "args": {"hidden": [32, 16]}},
            "optimizer": {"name": "sgd", "lr": 0.05},
            "method": {"name": "take_turns_test", "sparsity": 0.5, "rounds": 2, "steps_per_round": 2},
            "training": {"epochs": 2, "batch_size": 32, "seed": 0, "threads": 1},
            "output": {"tensorboard": False, "report": False},
        }
    )
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    assert isinstance(trainer.loop, RoundLoop)
    sparsifier = trainer.sparsifier
    assert isinstance(sparsifier, take_turns)
    assert sparsifier.merger == "external"  # the loop, not an optimizer-step hook, merges
    assert trainer.loop.planned_steps() == 8 + 4  # 2 epochs of 4 steps, the 4 round steps twice

    trainer.run()

    # one process played both workers in every round, then fine-tuned to the run's end
    assert sparsifier.begun == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sparsifier.merged_rounds == 2 and trainer.step == 8
    records = read_records(tmp_path / "run" / "metrics.jsonl").records
    assert [r.round for r in records if isinstance(r, MergeRecord)] == [1, 2]
    final = next(r for r in records if isinstance(r, FinalRecord))
    assert final.sparsity == pytest.approx(0.5, abs=0.02)
