"""The API example of the README, run as written with a tiny model and a small synthetic loader."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import growprune as gp


def test_readme_api_example(capsys: object) -> None:
    torch.manual_seed(0)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        widths = [16, 32, 32, 32]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(32, 4))  # 4 Linear layers: one per partition
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.randn(80 * 8, 16)
        y = (x[:, :4].argmax(dim=1)).long()
        shuffle = torch.Generator().manual_seed(0)
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=shuffle)

        # --- README example (smaller steps_per_phase / finetune_steps, same calls) ---
        sparsifier = gp.CGaP(
            model,
            optimizer,
            sparsity=0.8,
            partitions=4,
            steps_per_phase=5,
            rounds=3,
            finetune_steps=20,
            seed=0,
        )
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # noqa: E702 (as in the README)
            sparsifier.step()
        print(gp.sparsity_report(model))
        # --- end of example ---
    finally:
        torch.set_num_threads(previous_threads)

    assert sparsifier.step_count == len(loader) == 80 == sparsifier.total_steps
    assert sparsifier.phase.name == "done"
    report = gp.sparsity_report(model)
    assert abs(report.overall - 0.8) < 1e-3
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert printed.strip() == str(report)
    assert printed.strip().splitlines()[-1].split()[-1] == f"{report.overall:.4f}"
    assert all(name in printed for name in sparsifier.names)
