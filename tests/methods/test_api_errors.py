"""The sparsifier API's user errors, table-driven: each row is a mistake, the error it must raise
(a GrowpruneError subclass, one line naming the problem) and what must be left untouched.

* ``load_state_dict`` checks the whole state before changing anything: one bad mask (or history
  entry) among good ones leaves weights, masks, optimizer state and schedule position bitwise as
  they were; steps are integers of any type (numpy's, 0-d tensors), never bools or floats;
* a loaded all-zero mask obeys ``allow_empty_layers``;
* seeds are integers (no float, not even 2.0, no bool), everywhere a seed is taken;
* every public use of a sparsifier after ``remove()`` is one clear error (an AttributeError too,
  so ``hasattr`` is False), and a removed sparsifier survives pickle and deepcopy.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import growprune as gp
from growprune.errors import GrowpruneError
from growprune.integrations.schedule import check_arguments
from growprune.methods.errors import SparsifierRemovedError, SparsifierStateError
from growprune.seeding import SeedError, stream_seed
from growprune.sparsity.partition import partition_layers

METHOD_ARGS: dict[str, tuple[type[gp.Sparsifier], dict[str, Any]]] = {
    "cgap": (gp.CGaP, {"partitions": 2, "steps_per_phase": 2, "rounds": 1, "finetune_steps": 2}),
    "gmp": (gp.GMP, {"start_step": 0, "end_step": 6, "frequency": 1}),
    "set": (gp.SET, {"end_step": 8, "update_interval": 2}),
    "rigl": (gp.RigL, {"end_step": 8, "update_interval": 2}),
    "admm": (gp.ADMM, {"admm_steps": 6, "update_interval": 2}),
    "oneshot": (gp.OneShot, {"prune_step": 1}),
    "pgap": (gp.PGaP, {"partitions": 2, "steps_per_phase": 8, "rounds": 1}),
}


def build(
    method: str, init: int = 0, **overrides: Any
) -> tuple[nn.Module, torch.optim.Optimizer, gp.Sparsifier]:
    """A small MLP (initialised from `init`), SGD with momentum, and the method's sparsifier."""
    torch.manual_seed(init)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    cls, kwargs = METHOD_ARGS[method]
    return model, optimizer, cls(model, optimizer, sparsity=0.5, **{**kwargs, **overrides})


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 12, generator=generator)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer, sparsifier: gp.Sparsifier) -> dict[str, Any]:
    """Everything a failed load must leave alone, copied."""
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "masks": {k: v.clone() for k, v in sparsifier.masks.items()},
        "optimizer": {
            i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in optimizer.state[p].items()}
            for i, p in enumerate(model.parameters())
            if p in optimizer.state
        },
        "step": sparsifier.step_count,
        "history": list(sparsifier.history),
        "phase": str(sparsifier.phase),
        "extra": {k: repr(v) for k, v in sparsifier.extra_state().items()},
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key in ("weights", "masks"):
        assert before[key].keys() == after[key].keys()
        for name in before[key]:
            assert torch.equal(before[key][name], after[key][name]), f"{key} '{name}' changed"
    assert before["optimizer"].keys() == after["optimizer"].keys(), "optimizer state entries changed"
    for i, state in before["optimizer"].items():
        for k, v in state.items():
            other = after["optimizer"][i][k]
            assert torch.equal(v, other) if isinstance(v, torch.Tensor) else v == other, (
                f"optimizer {i}.{k} changed"
            )
    for key in ("step", "history", "phase", "extra"):
        assert before[key] == after[key], f"{key} changed"


def last_mask(state: dict[str, Any]) -> str:
    return list(state["masks"])[-1]


def with_mask(
    state: dict[str, Any], value: Callable[[torch.Tensor], Any], name: str | None = None
) -> dict[str, Any]:
    """A copy of `state` with one mask (the last by default, so the good ones come first) replaced."""
    masks = dict(state["masks"])
    name = name or last_mask(state)
    masks[name] = value(masks[name])
    return {**state, "masks": masks}


def without_mask(state: dict[str, Any]) -> dict[str, Any]:
    masks = dict(state["masks"])
    del masks[last_mask(state)]
    return {**state, "masks": masks}


def with_extra_mask(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "masks": {**state["masks"], "9.weight": torch.ones(2, 2, dtype=torch.bool)}}


def with_history(state: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """A copy of `state` whose history gets a second entry: a good one with `change` (KeyError as
    a value: the field is left out), so the first, good entry comes before the bad one."""
    good = state["history"][0]
    entry = {k: v for k, v in {**good, **change}.items() if v is not KeyError}
    return {**state, "history": [good, entry, *state["history"][1:]]}


def with_extra(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**state, "extra": {**state["extra"], **changes}}


@dataclass
class BadState:
    id: str
    method: str
    corrupt: Callable[[dict[str, Any]], Any]
    fragment: str  # the one-line error must contain it
    trained: bool = True  # load into a sparsifier that has stepped (else: just built, undo pending)
    overrides: dict[str, Any] = field(default_factory=dict)


BAD_STATES = [
    BadState("shape-cgap", "cgap", lambda s: with_mask(s, lambda m: m[:-1]), "has shape"),
    BadState(
        "shape-cgap-fresh", "cgap", lambda s: with_mask(s, lambda m: m[:-1]), "has shape", trained=False
    ),
    BadState("shape-gmp", "gmp", lambda s: with_mask(s, lambda m: m.t()), "has shape"),
    BadState(
        "shape-set-fresh", "set", lambda s: with_mask(s, lambda m: m.flatten()), "has shape", trained=False
    ),
    BadState("dtype-float-rigl", "rigl", lambda s: with_mask(s, lambda m: m.float()), "torch.bool"),
    BadState(
        "meta-device-gmp",
        "gmp",
        lambda s: with_mask(s, lambda m: torch.empty(m.shape, dtype=torch.bool, device="meta")),
        "is on the meta device",
    ),
    BadState(
        "meta-device-first-mask-cgap-fresh",
        "cgap",
        lambda s: with_mask(s, lambda m: m.to("meta"), name="0.weight"),
        "'0.weight' is on the meta device",
        trained=False,
    ),
    BadState(
        "dtype-uint8-oneshot", "oneshot", lambda s: with_mask(s, lambda m: m.to(torch.uint8)), "torch.bool"
    ),
    BadState("not-a-tensor-admm", "admm", lambda s: with_mask(s, lambda m: m.tolist()), "not a bool tensor"),
    BadState("missing-mask-pgap", "pgap", without_mask, "no mask for"),
    BadState("unknown-mask-gmp", "gmp", with_extra_mask, "does not prune"),
    BadState("empty-mask-cgap", "cgap", lambda s: with_mask(s, torch.zeros_like), "prunes every weight"),
    BadState(
        "empty-mask-set-fresh",
        "set",
        lambda s: with_mask(s, torch.zeros_like),
        "allow_empty_layers",
        trained=False,
    ),
    BadState("step-float", "gmp", lambda s: {**s, "step": 3.0}, "'step' must be an integer"),
    BadState("step-numpy-float", "set", lambda s: {**s, "step": np.float64(3)}, "got float64"),
    BadState("step-bool", "rigl", lambda s: {**s, "step": True}, "got bool True"),
    BadState("step-numpy-bool", "gmp", lambda s: {**s, "step": np.bool_(True)}, "'step' must be an integer"),
    BadState("step-bool-tensor", "cgap", lambda s: {**s, "step": torch.tensor(True)}, "got Tensor"),
    BadState("step-str", "oneshot", lambda s: {**s, "step": "3"}, "got str '3'"),
    BadState(
        "step-negative-fresh", "cgap", lambda s: {**s, "step": -1}, "'step' must be an integer", trained=False
    ),
    BadState(
        "config-schedule",
        "cgap",
        lambda s: {**s, "config": {**s["config"], "steps_per_phase": 3}},
        "steps_per_phase",
    ),
    BadState(
        "config-seed-fresh",
        "rigl",
        lambda s: {**s, "config": {**s["config"], "seed": 7}},
        "seed",
        trained=False,
    ),
    BadState("no-config", "admm", lambda s: {k: v for k, v in s.items() if k != "config"}, "no 'config'"),
    BadState(
        "history-after-step",
        "gmp",
        lambda s: {**s, "history": [*s["history"], {**s["history"][-1], "step": 99}]},
        "after the state's step",
    ),
    BadState("history-not-list", "oneshot", lambda s: {**s, "history": 5}, "'history' must be a list"),
    *[
        BadState(f"history-{id}", method, lambda s, change=change: with_history(s, change), fragment)
        for id, method, change, fragment in [
            ("step-negative", "gmp", {"step": -1}, "entry 1 has 'step' -1"),
            ("step-nan", "cgap", {"step": float("nan")}, "entry 1 has 'step' nan"),
            ("step-bool", "set", {"step": True}, "entry 1 has 'step' True"),
            ("step-str", "rigl", {"step": "1"}, "entry 1 has 'step' '1'"),
            ("step-none", "oneshot", {"step": None}, "entry 1 has 'step' None"),
            ("step-float", "cgap", {"step": 1.0}, "entry 1 has 'step' 1.0"),
            ("no-step", "gmp", {"step": KeyError}, "entry 1 has no 'step'"),
            ("no-event", "gmp", {"event": KeyError}, "entry 1 has no 'event'"),
            ("event-none", "cgap", {"event": None}, "entry 1 has 'event' None"),
            ("event-int", "pgap", {"event": 3}, "entry 1 has 'event' 3"),
            ("event-empty", "set", {"event": ""}, "entry 1 has 'event' ''"),
            ("sparsity-str", "gmp", {"sparsity": "x"}, "entry 1 has 'sparsity' 'x'"),
            ("sparsity-nan", "rigl", {"sparsity": float("nan")}, "entry 1 has 'sparsity' nan"),
            ("sparsity-above-1", "cgap", {"sparsity": 1.5}, "entry 1 has 'sparsity' 1.5"),
            ("sparsity-bool", "gmp", {"sparsity": False}, "entry 1 has 'sparsity' False"),
            ("phase-not-dict", "gmp", {"phase": "gap"}, "entry 1 has 'phase' of type str"),
            ("phase-step-str", "cgap", {"phase": {"name": "gap", "step": "2"}}, "phase 'step' '2'"),
            ("phase-no-name", "cgap", {"phase": {"step": 2}}, "phase 'name' None"),
            ("unknown-field", "set", {"when": 3}, "unknown field 'when'"),
        ]
    ],
    BadState("history-empty-entry", "gmp", lambda s: {**s, "history": [{}]}, "entry 0 has no 'step'"),
    BadState(
        "history-not-a-dict-fresh",
        "oneshot",
        lambda s: {**s, "history": [7]},
        "entry 0 is a int",
        trained=False,
    ),
    BadState("not-a-dict", "set", lambda s: [s], "must be the dict"),
    BadState(
        "admm-z-shape",
        "admm",
        lambda s: with_extra(s, z={**s["extra"]["z"], "4.weight": torch.zeros(2)}),
        "'z' for '4.weight' has shape",
    ),
    BadState("admm-z-missing", "admm", lambda s: with_extra(s, z={}, u={}), "holds no 'z'/'u'"),
    BadState(
        "pgap-sparse-mask",
        "pgap",
        lambda s: with_extra(s, sparse_masks={"0.weight": torch.ones(3, dtype=torch.bool)}),
        "sparse mask for '0.weight' has shape",
    ),
    BadState("pgap-merged-rounds", "pgap", lambda s: with_extra(s, merged_rounds=5), "merged_rounds"),
]


@pytest.mark.parametrize("case", BAD_STATES, ids=lambda c: c.id)
def test_bad_state_is_refused_and_changes_nothing(case: BadState) -> None:
    """The saved state comes from another point of the run (3 steps), so a load that installed
    anything at all would show in the masks, the step or the weights."""
    model, optimizer, sparsifier = build(case.method, **case.overrides)
    train(model, optimizer, 3)
    good = sparsifier.state_dict()
    model, optimizer, sparsifier = build(case.method, init=1, **case.overrides)
    if case.trained:
        train(model, optimizer, 1, seed=5)
    before = snapshot(model, optimizer, sparsifier)
    with pytest.raises(SparsifierStateError) as caught:
        sparsifier.load_state_dict(case.corrupt(good))
    message = str(caught.value)
    assert isinstance(caught.value, GrowpruneError) and "\n" not in message
    assert case.fragment in message, message
    assert_same(before, snapshot(model, optimizer, sparsifier))
    # and the sparsifier still works: the good state loads and training goes on
    sparsifier.load_state_dict(good)
    assert sparsifier.step_count == 3
    train(model, optimizer, 1)


@pytest.mark.parametrize("method", ["cgap", "gmp", "rigl"])
def test_bad_state_in_constructor_leaves_model_untouched(method: str) -> None:
    model, optimizer, sparsifier = build(method)
    train(model, optimizer, 3)
    bad = with_mask(sparsifier.state_dict(), lambda m: m[:-1])
    sparsifier.remove()
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("_mask")}
    cls, kwargs = METHOD_ARGS[method]
    with pytest.raises(SparsifierStateError, match="has shape"):
        cls(model, optimizer, sparsity=0.5, state=bad, **kwargs)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])


# -- allow_empty_layers on load --------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "how"),
    [("cgap", "load"), ("gmp", "load"), ("set", "state="), ("oneshot", "state=")],
)
def test_loaded_empty_mask_obeys_allow_empty_layers(method: str, how: str) -> None:
    model, optimizer, sparsifier = build(method)
    train(model, optimizer, 2)
    state = with_mask(sparsifier.state_dict(), torch.zeros_like, name="2.weight")
    sparsifier.remove()
    cls, kwargs = METHOD_ARGS[method]
    for allow in (False, True):
        model, optimizer, sparsifier = build(method, init=1, allow_empty_layers=allow)
        if how == "state=":
            sparsifier.remove()
        try:
            if how == "load":
                sparsifier.load_state_dict(state)
            else:
                sparsifier = cls(
                    model, optimizer, sparsity=0.5, state=state, allow_empty_layers=allow, **kwargs
                )
        except SparsifierStateError as error:
            assert not allow
            assert "'2.weight' prunes every weight" in str(error) and "allow_empty_layers=True" in str(error)
            continue
        assert allow
        assert not sparsifier.masks["2.weight"].any() and not model[2].weight.any()


# -- seeds -----------------------------------------------------------------------------------
SEED_TAKERS: dict[str, Callable[[Any], Any]] = {
    "cgap": lambda seed: build("cgap", seed=seed),
    "rigl": lambda seed: build("rigl", seed=seed),
    "oneshot": lambda seed: build("oneshot", seed=seed),
    "partition_layers": lambda seed: partition_layers(["a", "b", "c"], [1, 1, 1], 2, "random", seed),
    "stream_seed": lambda seed: stream_seed(seed, 1),
    "callback_arguments": lambda seed: check_arguments("gmp", {"sparsity": 0.5, "seed": seed}),
}
BAD_SEEDS = [1.5, 2.0, np.float64(3.0), True, np.bool_(False), torch.tensor(True), "3", None]


@pytest.mark.parametrize("taker", sorted(SEED_TAKERS))
@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_non_integer_seed_is_refused(taker: str, seed: Any) -> None:
    with pytest.raises(SeedError, match="must be an integer") as caught:
        SEED_TAKERS[taker](seed)
    assert isinstance(caught.value, GrowpruneError) and "\n" not in str(caught.value)


@pytest.mark.parametrize("step", [np.int64(3), np.int32(3), torch.tensor(3)], ids=repr)
def test_integer_step_types_are_loaded_as_int(step: Any) -> None:
    """A state's step (and a history entry's) may be any integer type, as seeds may: numpy's
    from a computed position, a 0-d tensor from a checkpoint; it is stored as a plain int."""
    model, optimizer, sparsifier = build("gmp")
    train(model, optimizer, 3)
    state = sparsifier.state_dict()
    history = [{**event, "step": np.int64(event["step"])} for event in state["history"]]
    _, _, fresh = build("gmp", init=1)
    fresh.load_state_dict({**state, "step": step, "history": history})
    assert fresh.step_count == 3 and type(fresh.step_count) is int
    assert fresh.history == sparsifier.history and all(type(e.step) is int for e in fresh.history)
    assert fresh.state_dict()["history"] == state["history"]


def test_integer_step_arguments_of_any_type() -> None:
    _, _, sparsifier = build("gmp", end_step=np.int64(6), frequency=torch.tensor(2))
    assert sparsifier.end_step == 6 and type(sparsifier.end_step) is int
    assert type(sparsifier.frequency) is int
    for flag in (True, np.bool_(True), torch.tensor(True)):
        with pytest.raises(ValueError, match="frequency must be an integer >= 1"):
            build("gmp", frequency=flag)


@pytest.mark.parametrize("method", ["cgap", "set"])
def test_integer_seed_types_give_the_same_masks(method: str) -> None:
    masks = [build(method, seed=s)[2].masks for s in (3, np.int64(3), torch.tensor(3))]
    for other in masks[1:]:
        assert all(torch.equal(masks[0][n], other[n]) for n in masks[0])


# -- use after remove() ----------------------------------------------------------------------
USES_AFTER_REMOVE: list[tuple[str, str, Callable[[gp.Sparsifier, dict[str, Any]], Any]]] = [
    ("cgap", "step", lambda s, st: s.step()),
    ("cgap", "masks", lambda s, st: s.masks),
    ("gmp", "state_dict", lambda s, st: s.state_dict()),
    ("rigl", "load_state_dict", lambda s, st: s.load_state_dict(st)),
    ("set", "phase", lambda s, st: s.phase),
    ("admm", "done", lambda s, st: s.done),
    ("oneshot", "current_sparsity", lambda s, st: s.current_sparsity()),
    ("gmp", "compute_masks", lambda s, st: s.compute_masks(["0.weight"], {"0.weight": torch.ones(16, 12)})),
    ("cgap", "change_masks", lambda s, st: s.change_masks({}, "x")),
    ("pgap", "finish_merge", lambda s, st: s.finish_merge()),
    ("cgap", "targets", lambda s, st: s.targets),
    ("set", "total_steps", lambda s, st: s.total_steps),
]


@pytest.mark.parametrize(
    ("method", "use", "call"), USES_AFTER_REMOVE, ids=[f"{m}-{u}" for m, u, _ in USES_AFTER_REMOVE]
)
def test_use_after_remove_is_one_clear_error(method: str, use: str, call: Callable[..., Any]) -> None:
    model, optimizer, sparsifier = build(method)
    train(model, optimizer, 1)
    state = sparsifier.state_dict()
    sparsifier.remove()
    with pytest.raises(
        SparsifierRemovedError, match=r"removed with remove\(\).*build a new sparsifier"
    ) as caught:
        call(sparsifier, state)
    assert use in str(caught.value)
    assert isinstance(caught.value, GrowpruneError)
    # an AttributeError too, so the attribute is simply missing to hasattr/getattr with a default
    assert isinstance(caught.value, AttributeError) and caught.value.name == use
    assert not hasattr(sparsifier, use) and getattr(sparsifier, use, "missing") == "missing"
    # still what it was, and harmless to remove again; the optimizer trains without it
    assert (
        isinstance(sparsifier, METHOD_ARGS[method][0])
        and type(sparsifier).__name__ == METHOD_ARGS[method][0].__name__
    )
    assert sparsifier.removed and sparsifier.method == method and "removed" in repr(sparsifier)
    sparsifier.remove()
    train(model, optimizer, 1)


@pytest.mark.parametrize("method", ["gmp", "pgap", "admm"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_removed_sparsifier_round_trips(method: str, how: str) -> None:
    """pickle and copy.deepcopy of a removed sparsifier give a removed sparsifier of the same
    class (the removed class is made at run time, so pickle cannot look it up by name)."""
    model, optimizer, sparsifier = build(method)
    train(model, optimizer, 2)
    history = list(sparsifier.history)
    sparsifier.remove()
    copied = pickle.loads(pickle.dumps(sparsifier)) if how == "pickle" else copy.deepcopy(sparsifier)
    assert type(copied) is type(sparsifier) and isinstance(copied, METHOD_ARGS[method][0])
    assert copied.removed and copied.method == method and repr(copied) == repr(sparsifier)
    assert copied.__dict__["history"] == history and copied.__dict__["step_count"] == 2
    assert copied.__dict__["model"] is not model
    with pytest.raises(SparsifierRemovedError, match=r"step\(\) is no longer available"):
        copied.step()
    assert not hasattr(copied, "phase")
    copied.remove()  # still harmless
