"""P-GaP against C-GaP: wall time for the same number of GaP steps, and bytes on the wire.

Runs, side by side on this machine:
  * C-GaP, K partitions x R rounds (R*K GaP steps), one process using every core;
  * P-GaP, K workers x R rounds (also R*K GaP steps of compute) under torchrun, K processes
    sharing the same cores (one thread each);
and compares the bytes P-GaP's merges exchange with what DDP's all-reduce of the dense gradients
would exchange for the same number of epochs (payload per rank per step; a ring all-reduce sends
about twice that).

    python -m benchmarks.pgap_comm                 # Fashion-MNIST, writes benchmarks/results/pgap.json
    python -m benchmarks.pgap_comm --smoke         # seconds, synthetic data, temp output
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import RESULTS_DIR, git_commit, load_average, machine
from benchmarks.common import ROOT as REPO


def recipe(method: str, args: argparse.Namespace) -> dict:
    data = (
        {"name": "synthetic", "args": {"n_train": 1024, "n_test": 256, "dim": 32}}
        if args.smoke
        else {"name": "fashion_mnist"}
    )
    model = {"name": "mlp", "args": {"hidden": [64, 64]}} if args.smoke else {"name": args.model, "args": {}}
    return {
        "name": f"bench-{method}",
        "data": data,
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.05},
        "method": {
            "name": method,
            "sparsity": 0.8,
            "partitions": args.partitions,
            "epochs_per_phase": args.epochs_per_phase,
            "rounds": args.rounds,
            "finetune_epochs": 0,
        },
        "training": {"batch_size": 128, "seed": 0, "threads": 1 if method == "pgap" else args.cgap_threads},
        "output": {"tensorboard": False, "report": False, "checkpoint_every_minutes": None},
    }


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"benchmark run failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (seconds); temp output")
    parser.add_argument("--partitions", type=int, default=2, help="K: partitions = P-GaP processes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs-per-phase", type=float, default=1.0)
    parser.add_argument("--model", default="mlp")
    parser.add_argument(
        "--cgap-threads",
        type=int,
        default=None,
        help="torch threads of the C-GaP process (default: K, all cores)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pgap.json")
    args = parser.parse_args()
    args.cgap_threads = args.cgap_threads or args.partitions
    work = Path(tempfile.mkdtemp(prefix="growprune-pgap-bench-"))
    out = work / "pgap.json" if args.smoke else args.out
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    walls, runs = {}, {}
    for method in ("cgap", "pgap"):
        path = work / f"{method}.yaml"
        path.write_text(yaml.safe_dump(recipe(method, args)))
        runs[method] = work / method
        launcher = [sys.executable, "-m", "growprune"]
        if method == "pgap":
            launcher = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(args.partitions),
                "-m",
                "growprune",
            ]
        cmd = [*launcher, "train", str(path), "--out", str(runs[method]), "--no-progress"]
        walls[method] = timed_run(
            cmd, {**env, "OMP_NUM_THREADS": "1" if method == "pgap" else str(args.partitions)}
        )

    records = [json.loads(line) for line in (runs["pgap"] / "metrics.jsonl").read_text().splitlines()]
    merges = [r for r in records if r["type"] == "merge"]
    final = next(r for r in records if r["type"] == "final")
    steps_per_worker = final["step"]
    state = torch.load(runs["pgap"] / "checkpoints" / "final.pt", weights_only=True)["model"]
    grad_bytes = sum(
        t.numel() * t.element_size()
        for k, t in state.items()
        if t.is_floating_point() and not k.endswith("_mask") and "running_" not in k
    )
    # DDP over the same epochs of compute: K workers' steps, each all-reducing every dense gradient.
    ddp_bytes = grad_bytes * steps_per_worker * args.partitions
    pgap_bytes = sum(m["bytes_exchanged"] for m in merges)
    result = {
        "partitions": args.partitions,
        "rounds": args.rounds,
        "epochs_per_phase": args.epochs_per_phase,
        "gap_steps": args.rounds * args.partitions,
        "model": "mlp" if args.smoke else args.model,
        "cgap_threads": args.cgap_threads,
        "cgap_wall_seconds": walls["cgap"],
        "pgap_wall_seconds": walls["pgap"],
        "pgap_speedup": walls["cgap"] / walls["pgap"],
        "pgap_bytes": pgap_bytes,
        "ddp_allreduce_bytes_same_epochs": ddp_bytes,
        "bytes_ratio_pgap_to_ddp": pgap_bytes / ddp_bytes,
        "merge_wait_seconds": sum(m["wait_seconds"] for m in merges),
        "merge_seconds": sum(m["merge_seconds"] for m in merges),
        "machine": {**machine(), "load_average_at_end": load_average()},
        "commit": git_commit("growprune", "benchmarks")[0],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"GaP steps: {result['gap_steps']} (K={args.partitions} x {args.rounds} rounds), "
        f"model {result['model']}"
    )
    print(
        f"wall time  C-GaP 1 process: {walls['cgap']:.1f} s   P-GaP {args.partitions} processes: "
        f"{walls['pgap']:.1f} s   ratio {result['pgap_speedup']:.2f}x"
    )
    print(
        f"bytes      P-GaP merges: {pgap_bytes:,}   DDP all-reduce, same epochs: {ddp_bytes:,}   "
        f"ratio {result['bytes_ratio_pgap_to_ddp']:.2e}"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
