"""ADMM: dense, then the penalty rho/2 ||W - Z + U||^2 on the gradient, then a hard prune."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer, params_by_name


def test_penalty_projection_and_prune() -> None:
    model = zoo.build("mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rho = 0.5
    admm = gp.ADMM(
        model, optimizer, sparsity=0.75, pretrain_steps=2, admm_steps=6, update_interval=2, rho=rho
    )
    params = params_by_name(admm)
    phases = []
    for step, (x, y) in enumerate(zoo.batches("mlp", 10), start=1):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        loss_grads = {n: p.grad.clone() for n, p in params.items()}
        z = {n: t.clone() for n, t in admm.z.items()}
        u = {n: t.clone() for n, t in admm.u.items()}
        weights = {n: p.detach().clone() for n, p in params.items()}
        optimizer.step()  # the pre-hook adds the penalty to .grad in place
        for n, p in params.items():
            if 2 < step <= 8:
                expected = loss_grads[n] + rho * (weights[n] - z[n] + u[n])
                assert torch.allclose(p.grad, expected, atol=1e-6), f"step {step} {n}: no ADMM penalty"
            else:
                expected = loss_grads[n] * admm.masks[n]  # after the prune, gradients are masked
                assert torch.equal(p.grad, expected), f"step {step} {n}: penalty outside the ADMM phase"
        admm.step()
        phases.append(admm.phase.name)
        if step in (2, 4, 6):  # Z is the sparse projection of W + U, refreshed every update_interval
            for n, p in params.items():
                assert int((admm.z[n] != 0).sum()) <= admm.keep_counts[n]
                u_old = u.get(n, torch.zeros_like(p))
                source = p.detach() + u_old
                kept = admm.z[n] != 0
                assert torch.equal(admm.z[n][kept], source[kept])  # Z keeps values of W + U ...
                assert source.abs()[kept].min() >= source.abs()[~kept].max()  # ... of largest magnitude
                assert torch.allclose(admm.u[n], u_old + p.detach() - admm.z[n])
        if step == 8:
            assert admm.z == {} and admm.u == {}
            for n in admm.names:
                assert int(admm.masks[n].sum()) == admm.keep_counts[n]
    assert phases[:2] == ["dense", "admm"]  # after step 2 the ADMM phase has begun
    assert phases[-1] == "finetune" and admm.done


def test_admm_starts_right_away_without_pretraining() -> None:
    model = zoo.build("mlp")
    admm = gp.ADMM(model, make_optimizer("sgd", model), sparsity=0.5, admm_steps=3)
    assert set(admm.z) == set(admm.names) and admm.phase.name == "admm"
    assert admm.current_sparsity() == 0.0  # masks only change at the hard prune


def test_admm_supports_nm() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    admm = gp.ADMM(model, optimizer, sparsity=None, pattern="2:4", admm_steps=2, update_interval=1)
    for x, y in zoo.batches("mlp", 3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        admm.step()
    for mask in admm.masks.values():
        assert (mask.reshape(-1, 4).sum(dim=1) == 2).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rho": 0.0}, "rho must be > 0"),
        ({"admm_steps": 0}, "admm_steps must be an integer >= 1"),
        ({"pretrain_steps": -1}, "pretrain_steps must be an integer >= 0"),
        ({"update_interval": 0}, "update_interval must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=message):
        gp.ADMM(model, make_optimizer("sgd", model), **{"sparsity": 0.8, "admm_steps": 4, **kwargs})
