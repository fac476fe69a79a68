"""Bad arguments fail at construction with a ValueError naming the argument and what is allowed."""

from __future__ import annotations

import pytest
import torch

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import VARIANTS, make_optimizer, make_sparsifier

SPARSE_VARIANTS = [v for v in VARIANTS if v != "dense"]


def build(variant: str, case: str = "mlp", **overrides: object) -> gp.Sparsifier:
    model = zoo.build(case)
    return make_sparsifier(variant, model, make_optimizer("sgd", model), **overrides)


@pytest.mark.parametrize("value", [1.5, -0.1, 1.0, float("nan"), "0.8"])
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_sparsity_out_of_range(variant: str, value: object) -> None:
    with pytest.raises(ValueError, match=r"sparsity must be .*\[0, 1\)"):
        build(variant, sparsity=value)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unknown_distribution_lists_the_allowed(variant: str) -> None:
    with pytest.raises(ValueError, match="distribution must be one of uniform, erk, global"):
        build(variant, distribution="erdos")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unknown_pattern_lists_the_allowed(variant: str) -> None:
    with pytest.raises(ValueError, match=r"pattern must be 'unstructured' or 'N:M'"):
        build(variant, pattern="block4")


@pytest.mark.parametrize("variant", ["oneshot", "admm", "cgap"])
def test_nm_that_does_not_divide_names_layer_and_m(variant: str) -> None:
    # depthwise.weight is 8 x 1 x 3: its fan-in 3 is not a multiple of 4
    with pytest.raises(ValueError, match=r"pattern 2:4 does not fit '(conv|depthwise)\.weight'.*M=4"):
        build(variant, "conv1d_depthwise", pattern="2:4", sparsity=0.5)


@pytest.mark.parametrize("variant", ["oneshot", "admm", "cgap"])
def test_nm_contradictions(variant: str) -> None:
    with pytest.raises(ValueError, match=r"sparsity 0\.8 contradicts pattern 2:4"):
        build(variant, pattern="2:4", sparsity=0.8)
    with pytest.raises(ValueError, match="use distribution='uniform'"):
        build(variant, pattern="2:4", sparsity=None, distribution="erk")
    sparsifier = build(variant, pattern="1:4", sparsity=None)
    assert sparsifier.sparsity == 0.75


@pytest.mark.parametrize("variant", ["gmp", "set", "rigl"])
def test_nm_unsupported_methods_say_so(variant: str) -> None:
    with pytest.raises(ValueError, match=f"method {VARIANTS[variant][0]} does not support N:M"):
        build(variant, pattern="2:4", sparsity=0.5)


def test_missing_sparsity() -> None:
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\)"):
        build("oneshot", sparsity=None)


def test_k_larger_than_targets() -> None:
    with pytest.raises(
        ValueError, match=r"partitions must be between 1 and the number of pruned layers \(3\), got 4"
    ):
        build("cgap", partitions=4)


def test_explicit_distribution_pattern_matching_no_layer() -> None:
    with pytest.raises(ValueError, match=r"distribution pattern 'head\.\*' matches no pruned layer"):
        build("oneshot", distribution={"head.*": 0.5})
    with pytest.raises(ValueError, match=r"distribution\['net\.0\.\*'\] must be in \[0, 1\)"):
        build("oneshot", distribution={"net.0.*": 1.5})


@pytest.mark.parametrize("variant", ["oneshot", "gmp", "cgap"])
def test_negative_or_fractional_steps(variant: str) -> None:
    key = {"oneshot": "prune_step", "gmp": "end_step", "cgap": "steps_per_phase"}[variant]
    for value in (-1, 2.5, True):
        with pytest.raises(ValueError, match=f"{key} must be an integer"):
            build(variant, **{key: value})


def test_optimizer_must_be_an_optimizer() -> None:
    model = zoo.build("mlp")
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        gp.OneShot(model, model.parameters(), sparsity=0.5)  # type: ignore[arg-type]


def test_get_method_lists_methods() -> None:
    assert gp.get_method("cgap") is gp.CGaP
    with pytest.raises(ValueError, match="unknown method 'gap'; choose one of admm, cgap, dense, gmp"):
        gp.get_method("gap")


def test_register_method() -> None:
    class Halfway(gp.OneShot):
        method = "halfway-test"

    try:
        assert gp.register_method(Halfway) is Halfway and gp.get_method("halfway-test") is Halfway
    finally:
        gp.METHODS.pop("halfway-test", None)


def test_dense_never_prunes_and_reports_all_layers() -> None:
    model = zoo.build("cnn_bn")
    optimizer = make_optimizer("sgd", model)
    dense = gp.Dense(model, optimizer)
    assert dense.sparsity == 0.0 and dense.done and dense.phase.name == "dense"
    assert all(m.all() for m in dense.masks.values())
    assert [layer.name for layer in gp.sparsity_report(model).layers] == dense.names


def test_repr_and_config() -> None:
    sparsifier = build("cgap")
    text = repr(sparsifier)
    assert text.startswith("CGaP(sparsity=0.75") and "round 1/2, partition 1/3 dense" in text
    config = sparsifier.config()
    assert config["method"] == "cgap" and config["targets"] == sparsifier.names
    assert torch.is_tensor(next(iter(sparsifier.state_dict()["masks"].values())))


FAILING_CONSTRUCTIONS = {
    "cgap_k_too_large": ("cgap", {"partitions": 4}),
    "cgap_empty_partition": ("cgap", {"partitions": [["*"], []]}),
    "gmp_initial_above_final": ("gmp", {"initial_sparsity": 0.9}),
    "explicit_pattern_unused": ("oneshot", {"distribution": {"head.*": 0.5}}),
    "nm_does_not_divide": ("oneshot", {"pattern": "2:4", "sparsity": 0.5, "targets": "net.[04].weight"}),
}


@pytest.mark.parametrize("failure", list(FAILING_CONSTRUCTIONS))
def test_failed_construction_leaves_model_and_optimizer_untouched(failure: str) -> None:
    """A ValueError at construction must not leave mask buffers, hooks or pruned weights behind:
    otherwise the corrected retry fails with 'another sparsifier owns this model'."""
    variant, overrides = FAILING_CONSTRUCTIONS[failure]
    model = zoo.build("mlp")
    if failure == "nm_does_not_divide":
        model.net[4] = torch.nn.Linear(32, 10)  # fan-in 32 fits 2:4, net.0's fan-in 20 does too ...
        model.net[0] = torch.nn.Linear(18, 48)  # ... but 18 does not
    optimizer = make_optimizer("sgd", model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = len(optimizer._optimizer_step_pre_hooks)
    with pytest.raises(ValueError):
        make_sparsifier(variant, model, optimizer, **overrides)
    assert model.state_dict().keys() == weights.keys(), "mask buffers left behind"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items()), "weights changed"
    assert len(optimizer._optimizer_step_pre_hooks) == hooks, "optimizer hook left behind"
    make_sparsifier(variant, model, optimizer)  # the corrected retry works


@pytest.mark.parametrize(
    ("method", "kwargs", "total", "fact"),
    [
        ("oneshot", {"prune_step": 50}, 10, "oneshot: prune_step=50 is beyond the run's 10 optimizer steps"),
        ("gmp", {"start_step": 6, "end_step": 4}, 10, "gmp: end_step=4 is before start_step=6"),
        ("set", {"end_step": 5, "update_interval": 5}, 10, "set: update_interval=5 >= end_step=5"),
        ("admm", {"pretrain_steps": 5, "admm_steps": 8}, 10, "admm: pretrain_steps + admm_steps = 5 + 8"),
        ("cgap", {"partitions": 4, "rounds": 3}, 10, "cgap: the run's 10 optimizer steps are too few"),
    ],
)
def test_a_schedule_that_does_not_fit_says_what_and_how_apart(
    method: str, kwargs: dict, total: int, fact: str
) -> None:
    """The engine states its own fix (the recipe's epochs) beside the method's fact: the error
    carries them apart (typed), so nothing splits a message at its first ';'."""
    from growprune.methods.settings import ScheduleFitError

    cls = gp.get_method(method)
    with pytest.raises(ScheduleFitError) as raised:
        cls.fit_to_run(dict(kwargs), set(kwargs), total)
    err = raised.value
    assert err.fact.startswith(fact) and err.fix and str(err) == f"{err.fact}; {err.fix}"


def test_schedule_epochs_of_a_recipe_section() -> None:
    """What a recipe builder asks instead of listing methods by name: whose schedule sets the run's
    length (GaP: its phases and fine-tuning) and whose is training.epochs."""
    from growprune.methods import schedule_epochs_of

    gap = {"epochs_per_phase": 2, "rounds": 1, "finetune_epochs": 2, "sparsity": 0.8, "targets": ["*"]}
    assert schedule_epochs_of({"name": "cgap", "partitions": 3, **gap}) == 3 * 2 + 2
    assert schedule_epochs_of({"name": "pgap", "partitions": 3, **gap}) == 2 + 2  # workers in parallel
    for method in ("dense", "oneshot", "gmp", "set", "rigl", "admm"):  # every schedule key defaults
        assert schedule_epochs_of({"name": method, "sparsity": 0.8}) is None, method
