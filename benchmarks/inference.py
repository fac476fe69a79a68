"""Sparse inference benchmark: dense vs ``growprune.accelerate`` latency, written to the repo.

    python -m benchmarks.inference                 # -> benchmarks/results/inference.json, RESULTS.md
    python -m benchmarks.inference --threads 1 2   # several CPU thread counts
    python -m benchmarks.inference --quick         # seconds; smoke test (written only with --out)
    python -m benchmarks.inference --from-json benchmarks/results/inference.json   # redo the section
    python -m benchmarks.inference --device cuda --sparsity 2:4 --out benchmarks/results/inference_cuda.json \
        --section inference-cuda          # the GPU's 2:4 rows, in their own section (gpu_suite.py runs this)

For an MLP-heavy model and a Transformer encoder, pruned one-shot by magnitude to 80/90/95%
unstructured and to 2:4, at batch 1 and 64: the dense model (zeros and all) and the converted
one are timed side by side in the same run (interleaved rounds, medians), so the ratio holds
even on a machine that other jobs share. On a CUDA GPU the models run in fp16 and 2:4 is also
measured forced to semi-structured kernels, which is the kernels' own speed-up on that GPU.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import (
    RESULTS_DIR,
    RESULTS_MD,
    git_commit,
    load_average,
    machine,
    markers,
    write_section,
)
from growprune.inference.accelerate import accelerate, relative_error
from growprune.inference.timing import measure

SPARSITIES = ("0.8", "0.9", "0.95", "2:4")
QUICK_SPARSITIES = ("0.9", "2:4")
BATCHES = (1, 64)


class BenchError(ValueError):
    """A benchmark request that cannot run here (e.g. --device cuda without a GPU)."""


SECTION = "inference"
MARK_START, MARK_END = markers(SECTION)


@dataclass(frozen=True)
class BenchModel:
    name: str
    description: str
    build: Callable[[], nn.Module]
    example: Callable[[int], torch.Tensor]  # batch size -> input


def bench_models(quick: bool) -> list[BenchModel]:
    """The MLP-heavy model and the Transformer encoder (tiny versions with ``quick``)."""
    from growprune.tasks.classification.mlp import MLP

    hidden, d_model, ff, layers, seq = (
        ((128, 128), 32, 64, 1, 8) if quick else ((4096, 4096), 256, 1024, 2, 32)
    )

    def encoder() -> nn.Module:
        layer = nn.TransformerEncoderLayer(d_model, 4 if not quick else 2, ff, dropout=0.0, batch_first=True)
        return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    in_features = 64 if quick else 784
    return [
        BenchModel(
            "mlp",
            f"MLP {in_features}-{'-'.join(map(str, hidden))}-10",
            lambda: MLP(in_features, hidden, 10),
            lambda b: torch.randn(b, in_features),
        ),
        BenchModel(
            "transformer",
            f"TransformerEncoder {layers}x(d_model {d_model}, ff {ff}), sequence {seq}",
            encoder,
            lambda b: torch.randn(b, seq, d_model),
        ),
    ]


def prune(model: nn.Module, spec: str, seed: int = 0) -> nn.Module:
    """One-shot magnitude pruning of the default targets; masks removed, zeros stay."""
    from growprune.methods import OneShot

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    if ":" in spec:
        sparsifier = OneShot(model, optimizer, sparsity=None, pattern=spec, seed=seed)
    else:
        sparsifier = OneShot(model, optimizer, sparsity=float(spec), seed=seed)
    sparsifier.remove()
    return model.eval()


def machine_info() -> dict[str, Any]:
    """The machine (see benchmarks.common.machine) and the commit, with the uncommitted flag."""
    commit, dirty = git_commit()
    return {**machine(), "git_commit": commit, "git_dirty": dirty}


def _one(
    model: nn.Module, example: torch.Tensor, device: torch.device, repeats: int, force_semi: bool
) -> dict[str, Any]:
    converted = copy.deepcopy(model)
    report = accelerate(converted, example, repeats=repeats)
    entry: dict[str, Any] = {"layers_converted": len(report.converted), "layers_total": len(report.layers)}
    variants = {"dense": lambda: model(example), "converted": lambda: converted(example)}
    forced = None
    if force_semi:
        forced = copy.deepcopy(model)
        forced_report = accelerate(forced, example, repeats=repeats, methods=("semi_structured",), force=True)
        entry["forced_semi_structured_layers"] = len(forced_report.converted)
        if forced_report.converted:
            variants["forced_semi_structured"] = lambda: forced(example)
    with torch.inference_mode():
        reference = model(example)
        entry["max_relative_error"] = relative_error(reference, converted(example))
        times = measure(variants, repeats=repeats, device=device)
    entry["dense_ms"] = times["dense"].median_ms
    entry["converted_ms"] = times["converted"].median_ms
    entry["speedup"] = entry["dense_ms"] / entry["converted_ms"]
    if "forced_semi_structured" in times:
        entry["forced_semi_structured_ms"] = times["forced_semi_structured"].median_ms
        entry["forced_semi_structured_speedup"] = entry["dense_ms"] / entry["forced_semi_structured_ms"]
    entry["report"] = report.to_dict()
    return entry


def run_benchmark(
    *,
    quick: bool = False,
    threads: list[int] | None = None,
    repeats: int | None = None,
    devices: list[str] | None = None,
    sparsities: tuple[str, ...] | None = None,
    batches: tuple[int, ...] = BATCHES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every (device, threads, model, sparsity, batch) combination; returns the JSON-ready result."""
    repeats = repeats or (3 if quick else 15)
    sparsities = sparsities or (QUICK_SPARSITIES if quick else SPARSITIES)
    if devices is None:
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    threads = threads or [torch.get_num_threads()]
    saved_threads = torch.get_num_threads()
    started = time.time()
    results: list[dict[str, Any]] = []
    info = machine_info()
    try:
        for device_name in devices:
            device = torch.device(device_name)
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            for n_threads in threads if device.type == "cpu" else [saved_threads]:
                torch.set_num_threads(n_threads)
                for spec in bench_models(quick):
                    torch.manual_seed(0)
                    base = spec.build()
                    for sparsity in sparsities:
                        model = prune(copy.deepcopy(base), sparsity).to(device=device, dtype=dtype)
                        for batch in batches:
                            torch.manual_seed(1)
                            example = spec.example(batch).to(device=device, dtype=dtype)
                            entry = _one(
                                model, example, device, repeats, device.type == "cuda" and ":" in sparsity
                            )
                            row = {
                                "device": device_name,
                                "dtype": str(dtype).replace("torch.", ""),
                                "threads": n_threads if device.type == "cpu" else None,
                                "model": spec.name,
                                "model_description": spec.description,
                                "sparsity": sparsity,
                                "batch": batch,
                                **entry,
                            }
                            results.append(row)
                            log(_format_row(row))
    finally:
        torch.set_num_threads(saved_threads)
    info["load_average_at_end"] = load_average()
    return {
        "benchmark": "growprune sparse inference latency",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "repeats": repeats,
        "seconds": round(time.time() - started, 1),
        "machine": info,
        "results": results,
    }


def _format_row(row: dict[str, Any]) -> str:
    threads = f"{row['threads']}t" if row["threads"] else row["dtype"]
    line = (
        f"{row['device']:>4} {threads:>7} {row['model']:<11} {row['sparsity']:>4} batch {row['batch']:>3}: "
        f"dense {row['dense_ms']:9.3f} ms  converted {row['converted_ms']:9.3f} ms  {row['speedup']:5.2f}x  "
        f"({row['layers_converted']}/{row['layers_total']} layers)"
    )
    if "forced_semi_structured_speedup" in row:
        line += f"  2:4 kernels forced: {row['forced_semi_structured_speedup']:.2f}x"
    return line


def results_markdown(data: dict[str, Any], command: str) -> str:
    """The RESULTS.md section for one benchmark run."""
    info = data["machine"]
    gpu = _gpu(info)
    on_gpu_only = bool(data["results"]) and all(r["device"] == "cuda" for r in data["results"])
    lines = [
        f"## Sparse inference latency on {gpu}" if on_gpu_only and gpu else "## Sparse inference latency",
        "",
        f"`{command}` on {data['date']}: {info.get('cpu', info.get('processor'))}, {info['cpu_count']} CPUs, "
        f"torch {info['torch']}{', GPU ' + gpu if gpu else ', no GPU'}; "
        f"commit {str(info.get('git_commit'))[:10]}"
        f"{' (uncommitted changes)' if info.get('git_dirty') else ''}; "
        f"{_load_text(info)}.",
        "Dense = the pruned model run with dense kernels (its zeros multiplied); converted = after "
        "`growprune.accelerate(model, example)` at that batch size. Medians of interleaved runs "
        f"({data['repeats']} rounds), measured side by side in one process.",
        "",
        "| device | threads | model | sparsity | batch | dense ms | converted ms | speed-up "
        "| layers converted |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in data["results"]:
        forced = row.get("forced_semi_structured_speedup")
        speed = f"{row['speedup']:.2f}x" + (f" (2:4 kernels forced: {forced:.2f}x)" if forced else "")
        lines.append(
            f"| {row['device']} ({row['dtype']}) | {row['threads'] or '-'} | {row['model']} "
            f"| {row['sparsity']} | "
            f"{row['batch']} | {row['dense_ms']:.3f} | {row['converted_ms']:.3f} | {speed} | "
            f"{row['layers_converted']}/{row['layers_total']} |"
        )
    models = {r["model"]: r["model_description"] for r in data["results"]}
    lines += ["", "Models: " + "; ".join(f"{k} = {v}" for k, v in models.items()) + "."]
    lines += [
        "Rows with 0 layers converted time the same computation twice: their distance from 1.00x is "
        "this run's measurement noise."
    ]
    lines += ["", *_oversubscribed_note(data), *target_lines(data)]
    return "\n".join(lines)


def _gpu(info: dict[str, Any]) -> str | None:
    return info.get("gpu", info.get("cuda"))  # "cuda": records written before benchmarks.common


def _loads(info: dict[str, Any]) -> tuple[list[float] | None, list[float] | None]:
    """Load averages at start and end (either record layout)."""
    start = info.get("load_average_at_start", info.get("loadavg_start"))
    return start, info.get("load_average_at_end", info.get("loadavg_end"))


def _load_text(info: dict[str, Any]) -> str:
    start, end = _loads(info)
    if not start:
        return "load average unknown"
    text = f"1-minute load average {start[0]:.1f} at start"
    return text + (f", {end[0]:.1f} at end" if end else "")


def _oversubscribed_note(data: dict[str, Any]) -> list[str]:
    """Say so when multi-threaded CPU rows ran on a machine busier than its core count."""
    info = data["machine"]
    loads = [x[0] for x in _loads(info) if x]
    threaded = any(r["device"] == "cpu" and (r["threads"] or 1) > 1 for r in data["results"])
    if not (threaded and loads and info.get("cpu_count") and max(loads) > info["cpu_count"]):
        return []
    return [
        f"The machine was oversubscribed (load average up to {max(loads):.1f} on {info['cpu_count']} CPUs, "
        "other jobs running). Rows with more than one thread are dominated by scheduling stalls: "
        "multi-threaded kernels wait for threads the OS has descheduled, which hit MKL's sparse "
        "routines hardest, so `accelerate` measured CSR slower and kept layers dense. For sparse "
        "inference on a shared machine, run with `torch.set_num_threads(1)`.",
        "",
    ]


def target_lines(data: dict[str, Any]) -> list[str]:
    """The latency goals (>= 2x on CPU for the MLP at 90%, batch 1; 2:4 kernels on a GPU), checked
    against this run's rows."""
    out = []
    for row in data["results"]:
        if (row["device"], row["model"], row["sparsity"], row["batch"]) == ("cpu", "mlp", "0.9", 1):
            verdict = "met" if row["speedup"] >= 2 else "missed"
            out.append(
                f"- Target >= 2x on CPU, MLP, 90%, batch 1 ({row['threads']} thread(s)): "
                f"{row['speedup']:.2f}x with {row['layers_converted']}/{row['layers_total']} layers "
                f"converted, {verdict}."
            )
    gpu = [r for r in data["results"] if r["device"] == "cuda" and r["sparsity"] == "2:4"]
    if gpu:
        for row in gpu:
            forced = row.get("forced_semi_structured_speedup")
            measured = f"{forced:.2f}x" if forced else "not usable (see the per-layer report)"
            out.append(
                f"- 2:4 on {_gpu(data['machine'])}, {row['model']}, batch {row['batch']}: "
                f"semi-structured kernels {measured}; after accelerate {row['speedup']:.2f}x."
            )
    else:
        out.append("- 2:4 on a GPU: not measured, this run had no GPU.")
    return out


def write_results_section(path: Path, section: str, name: str = SECTION) -> None:
    """Replace (or append) section ``name`` of RESULTS.md, leaving other sections alone."""
    write_section(path, name, section)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="tiny models, few repeats: a smoke test in seconds"
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        help="CPU thread counts to measure (default: torch's current setting)",
    )
    parser.add_argument("--repeats", type=int, help="interleaved timing rounds (default 15, quick 3)")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cpu, plus cuda if present"
    )
    parser.add_argument("--sparsity", nargs="+", help=f"default: {' '.join(SPARSITIES)} (quick: 0.9 2:4)")
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--results-md", type=Path, help="write/replace the section in this Markdown file")
    parser.add_argument(
        "--from-json", type=Path, help="do not measure: rewrite the Markdown section from this results file"
    )
    parser.add_argument(
        "--section",
        default=SECTION,
        help=f"name of the RESULTS.md section to write (default {SECTION}; the GPU suite writes "
        "inference-cuda, so the CPU rows stay)",
    )


def describe_command(prefix: str, args: argparse.Namespace) -> str:
    """The command line that reproduces this run, for the results files."""
    parts = [prefix]
    if args.quick:
        parts.append("--quick")
    for flag, value in (("--threads", args.threads), ("--sparsity", args.sparsity), ("--batch", args.batch)):
        if value and (flag != "--batch" or tuple(value) != BATCHES):
            parts.append(f"{flag} {' '.join(map(str, value))}")
    if args.repeats:
        parts.append(f"--repeats {args.repeats}")
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    if getattr(args, "section", SECTION) != SECTION:
        parts.append(f"--section {args.section}")
    return " ".join(parts)


def run_from_args(args: argparse.Namespace, command: str) -> dict[str, Any]:
    if args.from_json:
        if not args.results_md:
            raise BenchError("--from-json needs --results-md (where to write the section)")
        data = json.loads(args.from_json.read_text())
        section = results_markdown(data, data.get("command", command))
        write_results_section(args.results_md, section, args.section)
        print(f"section written: {args.results_md}")
        return data
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: CUDA is not available on this machine")
    devices = None if args.device == "auto" else [args.device]
    data = run_benchmark(
        quick=args.quick,
        threads=args.threads,
        repeats=args.repeats,
        devices=devices,
        sparsities=tuple(args.sparsity) if args.sparsity else None,
        batches=tuple(args.batch),
        log=lambda line: print(line, flush=True),
    )
    data["command"] = command
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        print(f"results: {args.out}")
    if args.results_md:
        write_results_section(args.results_md, results_markdown(data, command), args.section)
        print(f"section written: {args.results_md}")
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.inference``: the repository's result files are the default outputs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.quick:
        args.out = args.out or (None if args.from_json else RESULTS_DIR / "inference.json")
        args.results_md = args.results_md or RESULTS_MD
    try:
        run_from_args(args, describe_command("python -m benchmarks.inference", args))
    except BenchError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
