"""Sparse inference benchmark: dense vs ``growprune.accelerate`` latency, written to the repo.

    python benchmarks/inference.py                 # -> benchmarks/results/inference.json, RESULTS.md
    python benchmarks/inference.py --threads 1 2   # several CPU thread counts
    python benchmarks/inference.py --quick         # seconds; smoke test (written only with --out)
    python benchmarks/inference.py --from-json benchmarks/results/inference.json   # redo the section

The same as ``growprune bench-infer``, with the repository's result files as default outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from growprune.inference.bench import add_arguments, describe_command, run_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.quick:
        args.out = args.out or (None if args.from_json else HERE / "results" / "inference.json")
        args.results_md = args.results_md or HERE / "RESULTS.md"
    run_from_args(args, describe_command("python benchmarks/inference.py", args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
