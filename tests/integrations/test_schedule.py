"""growprune.integrations.schedule: steps or fractions of the run -> constructor kwargs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.integrations.schedule import (
    check_arguments,
    defaults_rows,
    defaults_table,
    method_arguments,
    schedule_kwargs,
)


def test_cgap_defaults_fill_the_run_exactly() -> None:
    kw = schedule_kwargs("cgap", {"sparsity": 0.8}, 1000)
    assert kw == {
        "sparsity": 0.8,
        "partitions": 4,
        "rounds": 1,
        "steps_per_phase": 187,
        "finetune_steps": 252,
    }
    assert 4 * 187 + 252 == 1000  # the rounding remainder goes to fine-tuning: 'done' at the last step


def test_cgap_partitions_rounds_and_fractions() -> None:
    kw = schedule_kwargs("cgap", {"partitions": 3, "rounds": 2, "finetune_steps": 0.4}, 1000)
    assert (kw["steps_per_phase"], kw["finetune_steps"]) == (100, 400)
    kw = schedule_kwargs("cgap", {"partitions": [["a*"], ["b*"]], "steps_per_phase": 0.1}, 1000)
    assert (kw["steps_per_phase"], kw["finetune_steps"]) == (100, 800)  # fine-tuning = the rest
    kw = schedule_kwargs("cgap", {"steps_per_phase": 100, "finetune_steps": 100}, 1000)
    assert (kw["steps_per_phase"], kw["finetune_steps"]) == (100, 100)  # both given: kept (then 'done')


def test_pgap_phases_run_in_parallel() -> None:
    kw = schedule_kwargs("pgap", {"rounds": 2, "merger": print}, 1000)
    assert (kw["steps_per_phase"], kw["finetune_steps"]) == (375, 250)
    assert kw["merger"] is print


def test_baseline_defaults() -> None:
    assert schedule_kwargs("oneshot", {}, 1000) == {"prune_step": 0}
    assert schedule_kwargs("oneshot", {"prune_step": 0.5}, 1000) == {"prune_step": 500}
    assert schedule_kwargs("gmp", {}, 1000) == {"start_step": 0, "end_step": 750, "frequency": 10}
    assert schedule_kwargs("gmp", {"start_step": 0.2}, 1000)["end_step"] == 800
    assert schedule_kwargs("set", {}, 1000) == {"end_step": 750, "update_interval": 10}
    assert schedule_kwargs("rigl", {"end_step": 1.0}, 50) == {"end_step": 50, "update_interval": 1}
    assert schedule_kwargs("admm", {}, 1000) == {
        "pretrain_steps": 0,
        "admm_steps": 500,
        "update_interval": 50,
    }
    assert schedule_kwargs("admm", {"pretrain_steps": 0.2}, 1000)["admm_steps"] == 400
    assert schedule_kwargs("dense", {"seed": 3}, 7) == {"seed": 3}


def test_one_is_a_step_and_one_point_zero_the_run() -> None:
    assert schedule_kwargs("oneshot", {"prune_step": 1}, 80)["prune_step"] == 1
    assert schedule_kwargs("oneshot", {"prune_step": 1.0}, 80)["prune_step"] == 80


def test_every_method_and_step_argument_has_a_default_documented() -> None:
    table = defaults_table()
    for method, cls in gp.METHODS.items():
        args = {arg.name for arg in cls.step_arguments}
        if args:
            assert args == set(table[method]), method
        assert args <= set(method_arguments(method)), method


def test_the_docs_defaults_table_is_the_declarations() -> None:
    """docs/integrations.md shows every method's declared defaults, and nothing else."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "integrations.md").read_text()
    lines = text.splitlines()
    head = lines.index("| method | argument | default |")
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[head + 2 :]))
    assert table == defaults_rows()


@pytest.mark.parametrize(
    ("method", "kwargs", "total", "message"),
    [
        ("cgpa", {}, 100, "unknown method 'cgpa'; choose one of admm, cgap"),
        (
            "cgap",
            {"sparsty": 0.8},
            100,
            "unknown argument 'sparsty' for method 'cgap'; did you mean 'sparsity'?",
        ),
        ("cgap", {"state": {}}, 100, "do not pass 'state'"),
        ("cgap", {"persistent_masks": True}, 100, "do not pass 'persistent_masks'"),
        ("cgap", {"steps_per_phase": 0}, 100, "steps_per_phase must be >= 1"),
        ("cgap", {"finetune_steps": 25.0}, 100, "pass 25 for 25 steps"),
        ("cgap", {"finetune_steps": "10"}, 100, "must be an int (optimizer steps) or a float in [0, 1]"),
        ("cgap", {"rounds": 0}, 100, "rounds must be an integer >= 1"),
        ("cgap", {"partitions": 0}, 100, "partitions must be K >= 1"),
        ("cgap", {"sparsity": 1.5}, 100, "sparsity"),
        ("cgap", {"pattern": "5:4"}, 100, "5:4"),
        ("cgap", {}, 4, "too few for 4 GaP phases (1 round x 4 partitions)"),
        ("cgap", {"rounds": 2, "partitions": 3}, 7, "train for at least 8 steps"),
        ("pgap", {"finetune_steps": 10, "merger": print}, 10, "too few for 1 GaP phase"),
        ("cgap", {"steps_per_phase": 30}, 100, "need 120 optimizer steps but the run has 100"),
        ("cgap", {"finetune_steps": 200}, 100, "finetune_steps=200 is beyond the run's 100 optimizer steps"),
        ("oneshot", {"prune_step": 101}, 100, "prune_step=101 is beyond the run's 100 optimizer steps"),
        ("gmp", {"end_step": 200}, 100, "end_step=200 is beyond"),
        ("gmp", {"start_step": 50, "end_step": 40}, 100, "end_step=40 is before start_step=50"),
        ("set", {"update_interval": 80}, 100, "update_interval=80 >= end_step=75"),
        ("admm", {"pretrain_steps": 60, "admm_steps": 50}, 100, "the final prune would never happen"),
        ("cgap", {}, 0, "set the trainer's max_steps or a finite number of epochs"),
        ("cgap", {}, float("inf"), "set the trainer's max_steps or a finite number of epochs"),
    ],
)
def test_refused_with_one_line(method: str, kwargs: dict, total: float, message: str) -> None:
    with pytest.raises(ValueError) as info:
        schedule_kwargs(method, kwargs, total)  # type: ignore[arg-type]
    text = str(info.value)
    assert message in text and "\n" not in text


def test_check_arguments_needs_no_run_length() -> None:
    check_arguments("cgap", {"sparsity": 0.9, "partitions": 2, "finetune_steps": 0.1})
    with pytest.raises(ValueError, match="unknown argument 'steps_per_epoch'"):
        check_arguments("cgap", {"steps_per_epoch": 3})


@pytest.mark.parametrize("method", sorted(gp.METHODS))
def test_resolved_kwargs_build_the_method(method: str) -> None:
    """Whatever the resolver returns, the method's constructor accepts (schedule ends in the run)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    extra = {"merger": lambda sp: None} if method == "pgap" else {}
    kwargs = schedule_kwargs(method, {"sparsity": 0.5, **extra}, 200)
    sparsifier = gp.get_method(method)(model, optimizer, **kwargs)
    if sparsifier.total_steps is not None:  # a schedule with its own length fills the run exactly
        assert sparsifier.total_steps == 200
    else:
        assert method not in ("cgap", "pgap")
    sparsifier.remove()
