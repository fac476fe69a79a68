"""Invariant 6 in a user's own DDP loop: the sparsifier compares mask checksums across ranks
after every mask change, so a rank built differently is an error, never a silent divergence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, torch, torch.distributed as dist, torch.nn.functional as F
import growprune as gp
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
ddp = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
seed = rank if sys.argv[1] == "per-rank-seed" else 0  # the user's mistake, or not
try:
    sparsifier = gp.SET(model, optimizer, sparsity=0.7, end_step=6, update_interval=2, seed=seed)
    for _ in range(6):
        x, y = torch.randn(4, 8), torch.randint(0, 4, (4,))
        optimizer.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        optimizer.step()
    outcome = f"OK {sparsifier.step_count}"
except RuntimeError as err:
    outcome = f"MISMATCH {err}"
with open(f"{sys.argv[2]}/rank{rank}.txt", "w") as out:  # one file per rank: no interleaving
    out.write(outcome)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("case", ["same-seed", "per-rank-seed"])
def test_ranks_with_different_masks_are_an_error(tmp_path: Path, case: str) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    cmd.append(str(script))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*cmd, case, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    if case == "same-seed":
        assert outcomes == ["OK 6", "OK 6"], result.stderr[-2000:]
    else:
        for outcome in outcomes:
            assert outcome.startswith("MISMATCH masks differ across ranks after 'init' at optimizer step 0")
