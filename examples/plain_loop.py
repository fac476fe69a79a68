"""Sparse training in your own loop: C-GaP on a small MLP, synthetic data, about 5 seconds on a CPU.

    python examples/plain_loop.py

The sparsifier works in hooks on the optimizer, so the loop is an ordinary PyTorch loop; nothing
else has to be called per step. Exits non-zero if the model does not end at the target sparsity.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import growprune as gp

SPARSITY = 0.8


def main() -> int:
    torch.set_num_threads(1)  # tiny model: one thread is fastest (and immune to busy cores)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(4096, 32)
    y = (x[:, :4] + 0.5 * x[:, 4:8]).argmax(dim=1)  # a learnable synthetic task
    x_train, y_train, x_test, y_test = x[:3584], y[:3584], x[3584:], y[3584:]

    # 4 partitions (one per Linear layer), 2 rounds of 4 GaP phases of 60 steps, 160 fine-tuning steps.
    sparsifier = gp.CGaP(
        model,
        optimizer,
        sparsity=SPARSITY,
        partitions=4,
        steps_per_phase=60,
        rounds=2,
        finetune_steps=160,
        seed=0,
    )
    batches = torch.Generator().manual_seed(0)
    for step in range(sparsifier.total_steps):
        index = torch.randint(0, len(x_train), (64,), generator=batches)
        loss = nn.functional.cross_entropy(model(x_train[index]), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()  # masks gradients, then weights; advances the schedule
        if step % 80 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}  {sparsifier.phase}")

    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    report = gp.sparsity_report(model)
    print(report)
    print(f"phase: {sparsifier.phase}, test accuracy {accuracy:.3f}")
    if abs(report.overall - SPARSITY) > 1e-3 or sparsifier.phase.name != "done":
        print(f"error: sparsity {report.overall:.4f}, expected {SPARSITY}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
