"""Memory benchmark: peak memory of a plain training loop, dense and every method, in a fresh process each.

    python -m benchmarks.memory                    # MLP + Transformer LM, all methods -> results, RESULTS.md
    python -m benchmarks.memory --models lm --methods dense cgap rigl --steps 12
    python -m benchmarks.memory --smoke --out /tmp/m.json   # tiny models, seconds; what the tests run
    python -m benchmarks.memory --from-json benchmarks/results/memory.json   # redo the RESULTS.md section
    python -m benchmarks.memory --device cuda        # on a GPU: torch.cuda.max_memory_allocated

What it measures: the CPU peak resident set size (``VmHWM``, else ``ru_maxrss``) of a training
loop -- build the model, an Adam optimizer and the sparsifier, then N steps of forward, backward,
``optimizer.step()``, ``sparsifier.step()`` -- above the peak RSS of the same process right after
``import torch, growprune``. The peak cannot be reset, so every configuration runs in a
fresh Python process with one torch thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).
Each method's schedule is squeezed into the N measured steps so that its memory-heavy moments
happen in them: one-shot and GMP prune, SET and RigL update their masks, ADMM updates Z and U
and prunes, C-GaP changes phase (one partition dense) three times and prunes the last one, and
P-GaP ends two rounds.

P-GaP cannot run as one plain loop: it is K workers exchanging weights. Its row is one worker
(worker 0: partition 0 dense, the others sparse) in a plain loop whose merge exchanges nothing
(a no-op merger, then the worker's own prune back to the target), i.e. the memory of one of the K
worker processes, not of the merge that gathers K state dicts.

Storage: every method runs in masked storage (a dense weight times its mask, growprune's
default) and in compact storage (``storage="compact"``: a pruned layer holds its kept values,
their int32 positions and their optimizer state only); compact rows also give their ratio to the
masked row of the same method and sparsity. ``--sparsities 0.8 0.9`` measures both levels.

Beside each method the table prints the *ideal weight fraction* of the GaP formula -- the
fraction of the prunable weights compact storage needs to hold at the method's peak: 1 - r for a
static sparse method, (1 - r) + r / K for C-GaP / P-GaP (equal partitions), 1 then 1 - r for the
dense-to-sparse methods (one-shot, GMP, ADMM train dense before pruning) -- and the fraction
the masks actually kept at their densest step.

Step times are medians over the steps after the first, in one process at a time: on a machine
other jobs share they move with the load, which every row records (load average at its start and
end); peak RSS does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import growprune as gp
from benchmarks.common import (
    RESULTS_DIR,
    RESULTS_MD,
    ROOT,
    git_commit,
    load_average,
    machine,
    method_order,
    prunes,
    sets_own_length,
    write_section,
)

RESULTS = RESULTS_DIR / "memory.json"
SECTION = "memory"
SPARSITY = 0.8  # the default level; --sparsities picks others
PARTITIONS = 4
MIB = 2**20
METHODS = tuple(method_order(gp.METHODS))
# the method every ratio is to: the one that prunes nothing (dense)
REFERENCE = next(m for m in METHODS if not prunes(m))
MODELS = ("mlp", "lm")
STORAGES = ("masked", "compact")  # names the benchmark knows; a sparsifier must accept the others
DEFAULT_STEPS = {"mlp": 16, "lm": 16}
SMOKE_STEPS = 3
CHILD_TIMEOUT_S = 3600

# Model sizes: (full, smoke).
# The MLP of issue 25's targets: 4 x Linear(4096, 4096) and a head (67M weights), batch 64.
MLP_SIZES = {"full": (4096, (4096, 4096, 4096, 4096), 10, 64), "smoke": (64, (128, 128, 128), 10, 4)}
# vocab, d_model, heads, ffn, layers, sequence, batch
LM_SIZES = {"full": (8192, 512, 8, 2048, 6, 128, 8), "smoke": (256, 32, 2, 64, 2, 16, 2)}


# -- the models -------------------------------------------------------------------------------
class Block(nn.Module):
    """A pre-norm decoder block: causal self-attention with its q/k/v/o projections as plain
    ``nn.Linear`` layers (as Llama-style models write them, so every projection is a default
    pruning target that compact storage can hold), then a GELU feed-forward."""

    def __init__(self, d_model: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.up, self.down = nn.Linear(d_model, ffn), nn.Linear(ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        h = self.norm1(x)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(attn.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TinyLM(nn.Module):
    """A decoder-only Transformer language model from torch.nn modules.

    Token and position embeddings (dense: the default targets leave embeddings alone), pre-norm
    :class:`Block` layers, a final LayerNorm and an untied Linear head over the vocabulary (a
    default target, like the attention and FFN projections).
    """

    def __init__(self, vocab: int, d_model: int, heads: int, ffn: int, layers: int, seq: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens) + self.pos(torch.arange(length, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(name: str, smoke: bool, device: str = "cpu") -> tuple[nn.Module, Any, str]:
    """The model, a function returning (loss) for one step on a fixed random batch, a description."""
    size = "smoke" if smoke else "full"
    gen = torch.Generator().manual_seed(0)
    if name == "mlp":
        from growprune.tasks.classification.mlp import MLP

        in_features, hidden, classes, batch = MLP_SIZES[size]
        model = MLP(in_features=in_features, hidden=hidden, num_classes=classes).to(device)
        x = torch.randn(batch, in_features, generator=gen).to(device)
        y = torch.randint(0, classes, (batch,), generator=gen).to(device)
        describe = f"MLP {in_features}-{'-'.join(map(str, hidden))}-{classes}, ReLU, batch {batch}"
        return model, lambda: F.cross_entropy(model(x), y), describe
    if name == "lm":
        vocab, d_model, heads, ffn, layers, seq, batch = LM_SIZES[size]
        model = TinyLM(vocab, d_model, heads, ffn, layers, seq).to(device)
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=gen).to(device)
        inputs, labels = tokens[:, :-1], tokens[:, 1:]

        def loss() -> torch.Tensor:
            return F.cross_entropy(model(inputs).reshape(-1, vocab), labels.reshape(-1))

        describe = (
            f"decoder-only Transformer LM: {layers} layers, d_model {d_model}, {heads} heads, FFN {ffn}, "
            f"vocab {vocab}, sequence {seq}, batch {batch}"
        )
        return model, loss, describe
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


# -- the methods, their schedules squeezed into N steps ----------------------------------------
def schedule(method: str, steps: int) -> dict[str, Any]:
    """Constructor arguments that put ``method``'s memory-heavy moments inside ``steps`` steps: the
    method's own short schedule (``Sparsifier.short_schedule``, declared by its ``short_run``). A
    method trained in rounds of K workers (``loop == "rounds"``) runs as one worker whose merge
    exchanges nothing (see the module docstring)."""
    cls = gp.methods.get_method(method)
    kwargs = cls.short_schedule(steps)
    if cls.loop == "rounds":
        kwargs["merger"] = _no_exchange
    return kwargs


def _no_exchange(sparsifier: Any) -> None:
    """P-GaP's merge in a one-worker loop: the weights stay this worker's own (see the docstring)."""
    del sparsifier


NOTES = {
    "pgap": "one worker's process (worker 0) in a plain loop; the merge exchanges nothing (no-op merger), "
    "so the K state dicts a real merge gathers are not in this row",
    "rigl": "dense gradients captured at each update step",
}


def ideal_fraction(method: str, sparsity: float = SPARSITY) -> tuple[float, float]:
    """(at the peak, in the sparse phase): the fraction of the prunable weights compact storage
    must hold, by the GaP paper's formula (equal partitions)."""
    kept = 1.0 - sparsity
    if not prunes(method):
        return 1.0, 1.0
    if sets_own_length(method):  # grow-and-prune: one partition dense at a time
        return kept + sparsity / PARTITIONS, kept
    if trains_dense_first(method):
        return 1.0, kept
    return kept, kept  # a regrowing method (SET, RigL): sparse from the start


def trains_dense_first(method: str) -> bool:
    """Whether ``method`` trains dense and prunes later (one-shot, GMP, ADMM): a pruning method
    that never regrows (registry: ``regrows``) and keeps no partition dense on its own schedule."""
    return prunes(method) and not sets_own_length(method) and not gp.METHODS[method].regrows


def format_ideal(method: str, sparsity: float = SPARSITY) -> str:
    peak, sparse = ideal_fraction(method, sparsity)
    if not prunes(method):
        return "1"
    if trains_dense_first(method):
        return f"1 then {sparse:.2f}"
    return f"{peak:.2f}"


def build_sparsifier(
    method: str, model: nn.Module, optimizer: torch.optim.Optimizer, storage: str, steps: int, sparsity: float
) -> Any:
    """The method's sparsifier (None for dense) at `sparsity`, in `storage`."""
    if not prunes(method):
        return None
    kwargs = schedule(method, steps)
    cls = gp.methods.get_method(method)
    return cls(model, optimizer, sparsity=sparsity, seed=0, storage=storage, **kwargs)


# -- one configuration, in a fresh process ------------------------------------------------------
def peak_rss() -> int:
    """This process's peak RSS in bytes: the engine's own reading (growprune.train.memory), so a
    benchmark row and a run report measure the same thing (VmHWM on Linux: ``ru_maxrss`` would
    carry the parent's size across ``exec``)."""
    from growprune.train.memory import process_peak_rss

    peak = process_peak_rss()
    if peak is None:
        raise SystemExit("error: this OS reports no peak resident memory; the benchmark needs it")
    return peak


def current_rss() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def kept_fraction(sparsifier: Any) -> float:
    """Fraction of the prunable weights the masks keep now (1.0 without a sparsifier)."""
    if sparsifier is None:
        return 1.0
    masks = sparsifier.mask_set
    kept = sum(int(masks.mask(n).count_nonzero()) for n in sparsifier.names)
    return kept / sum(sparsifier.numels.values())


def step_of_peak(running_peaks_mib: list[float], final_peak_mib: float) -> int:
    """The first step (1-based) whose running peak reached the final peak. The peak is a
    process high-water mark, so it can still rise after the last step's reading (Python's own
    bookkeeping): then the peak is put at the last step rather than failing the row."""
    for step, value in enumerate(running_peaks_mib, start=1):
        if value >= final_peak_mib - 1e-9:
            return step
    return len(running_peaks_mib)


class Meter:
    """Peak and current memory of one configuration: the process's resident set on the CPU, torch's
    allocator (``max_memory_allocated``: tensors, not the allocator's cache) on a CUDA device."""

    def __init__(self, device: str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.measure = "torch.cuda.max_memory_allocated" if self.cuda else "peak RSS (VmHWM)"

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else peak_rss()

    def current(self) -> int | None:
        return torch.cuda.memory_allocated() if self.cuda else current_rss()

    def reset_peak(self) -> bool:
        """Start a new peak from the memory now (Linux: ``clear_refs`` 5 resets VmHWM), so the
        training steps' own peak can be read apart from building the model and the sparsifier.
        False where it cannot be reset."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return True
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


@dataclass(frozen=True)
class Config:
    """One measured configuration: what the parent sends its child process, as JSON."""

    model: str
    method: str
    storage: str
    steps: int
    smoke: bool
    sparsity: float = SPARSITY
    device: str = "cpu"


def run_config(config: Config) -> dict[str, Any]:
    """Build and train one configuration here; the caller is a fresh process (see child_main)."""
    model_name, method, storage, steps = config.model, config.method, config.storage, config.steps
    smoke, sparsity, device = config.smoke, config.sparsity, config.device
    torch.set_num_threads(1)
    meter = Meter(device)
    baseline = meter.peak()
    load_start = load_average()
    # torch's one-time allocations (thread pools, kernel caches, autograd engine) happen at the
    # first training step of any model: one step of the smoke-sized model shows how much of the
    # peak they are, so that the part that grows with the model can be read apart.
    warm_model, warm_loss, _ = build_model(model_name, smoke=True, device=device)
    warm_opt = torch.optim.Adam(warm_model.parameters(), lr=1e-4)
    warm_loss().backward()
    warm_opt.step()
    del warm_model, warm_loss, warm_opt
    warmed = meter.peak()
    torch.manual_seed(0)
    model, loss_fn, describe = build_model(model_name, smoke, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    sparsifier = build_sparsifier(method, model, optimizer, storage, steps, sparsity)
    after_build = meter.peak()
    steps_apart = meter.reset_peak()
    trace, times, kept = [], [], [kept_fraction(sparsifier)]
    for _ in range(steps):
        start = time.perf_counter()
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sparsifier is not None:
            sparsifier.step()
        meter.sync()
        times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{model_name}/{method}: loss {loss.item()} is not finite")
        kept.append(kept_fraction(sparsifier))  # before the reading: counting masks allocates too
        rss = meter.current()
        trace.append(
            {  # after each step: the running peak and the memory now, both above the baseline
                "peak_mib": (meter.peak() - baseline) / MIB,
                "rss_mib": None if rss is None else (rss - baseline) / MIB,
            }
        )
    steps_peak = meter.peak()  # the steps' own peak when it was reset after building
    peak = max(steps_peak, after_build) if steps_apart else steps_peak
    peak_step = step_of_peak([t["peak_mib"] for t in trace], (steps_peak - baseline) / MIB)
    targets = sparsifier.names if sparsifier is not None else []
    prunable = sum(sparsifier.numels.values()) if sparsifier is not None else None
    row: dict[str, Any] = {
        "model": model_name,
        "model_description": describe,
        "params": sum(p.numel() for p in model.parameters()),
        "prunable_params": prunable,
        "targets": len(targets),
        "method": method,
        "storage": storage,
        "sparsity": sparsity if prunes(method) else 0.0,
        "schedule": {k: v for k, v in schedule(method, steps).items() if k != "merger"},
        "steps": steps,
        "optimizer": "Adam",
        "threads": torch.get_num_threads(),
        "device": str(device),
        "measure": meter.measure,
        "baseline_rss_mib": baseline / MIB,
        "peak_above_baseline_mib": (peak - baseline) / MIB,
        "steps_peak_above_baseline_mib": (steps_peak - baseline) / MIB if steps_apart else None,
        "build_above_baseline_mib": (after_build - baseline) / MIB,
        "warmup_above_baseline_mib": (warmed - baseline) / MIB,
        "peak_above_warmup_mib": (peak - warmed) / MIB,
        "peak_step": peak_step,
        "trace": trace,
        "step_ms": 1000 * statistics.median(times[1:] if len(times) > 1 else times),
        "step_ms_all": [1000 * t for t in times],
        "max_kept_fraction": max(kept),
        "final_kept_fraction": kept[-1],
        "ideal_peak_fraction": ideal_fraction(method, sparsity)[0],
        "ideal_sparse_fraction": ideal_fraction(method, sparsity)[1],
        "load_average_at_start": load_start,
        "load_average_at_end": load_average(),
    }
    if sets_own_length(method) and sparsifier is not None:
        total = sum(sparsifier.numels.values())
        fractions = [sum(sparsifier.numels[n] for n in part) / total for part in sparsifier.partitions]
        row["partition_fractions"] = fractions
        # the formula with these (unequal) partitions: the largest one dense, the rest at 1 - r
        row["ideal_peak_fraction_these_partitions"] = (1 - sparsity) + sparsity * max(fractions)
    if method in NOTES:
        row["note"] = NOTES[method]
    return row


def child_main(payload: str) -> None:
    row = run_config(Config(**json.loads(payload)))
    row["machine"] = machine()
    print("MEMORY-ROW " + json.dumps(row), flush=True)


def run_child(config: Config) -> dict[str, Any]:
    """One configuration in a fresh interpreter; its row, or a row saying why it failed."""
    job = json.dumps(dataclasses.asdict(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", job],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("MEMORY-ROW "):
            row = json.loads(line[len("MEMORY-ROW ") :])
            row["seconds"] = time.time() - started
            return row
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return {
        "model": config.model,
        "method": config.method,
        "storage": config.storage,
        "sparsity": config.sparsity if prunes(config.method) else 0.0,
        "steps": config.steps,
        "error": lines[-1] if lines else f"exit code {proc.returncode}",
        "returncode": proc.returncode,
    }


# -- the record -------------------------------------------------------------------------------
def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Peak and step time as ratios to the dense row of the same model."""
    dense = {r["model"]: r for r in rows if not prunes(r["method"]) and "error" not in r}
    for row in rows:
        base = dense.get(row["model"])
        if base is None or "error" in row:
            continue
        row["peak_ratio_to_dense"] = row["peak_above_baseline_mib"] / base["peak_above_baseline_mib"]
        if row.get("steps_peak_above_baseline_mib") and base.get("steps_peak_above_baseline_mib"):
            row["steps_peak_ratio_to_dense"] = (
                row["steps_peak_above_baseline_mib"] / base["steps_peak_above_baseline_mib"]
            )
        warm_base = base["peak_above_warmup_mib"]
        if warm_base > 0:
            row["peak_above_warmup_ratio_to_dense"] = row["peak_above_warmup_mib"] / warm_base
        row["step_ratio_to_dense"] = row["step_ms"] / base["step_ms"]
    masked = {
        (r["model"], r["method"], r.get("sparsity")): r
        for r in rows
        if r["storage"] == "masked" and "error" not in r
    }
    for row in rows:
        twin = masked.get((row["model"], row["method"], row.get("sparsity")))
        if row["storage"] == "masked" or twin is None or "error" in row:
            continue
        row["peak_ratio_to_masked"] = row["peak_above_baseline_mib"] / twin["peak_above_baseline_mib"]
        row["step_ratio_to_masked"] = row["step_ms"] / twin["step_ms"]


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row_name(method: str, sparsity: float) -> str:
    if not prunes(method):
        return method
    name = f"{method} {round(sparsity * 100)}%"
    return name + (f" K={PARTITIONS}" if sets_own_length(method) else "")


def table_lines(data: dict[str, Any], model: str) -> list[str]:
    rows = [r for r in data["rows"] if r["model"] == model]
    if not rows:
        return []
    first = next((r for r in rows if "error" not in r), rows[0])
    head = [f"**{model}**: {first.get('model_description', model)}"]
    if "params" in first:
        head[0] += (
            f"; {first['params'] / 1e6:.1f}M parameters"
            + (f", {first['prunable_params'] / 1e6:.1f}M prunable" if first.get("prunable_params") else "")
            + f"; Adam; {first['steps']} steps; 1 thread."
        )
    out = [
        *head,
        "",
        "| config | storage | peak MiB above baseline | x dense | x masked | steps only | x dense "
        "| above warm-up | x dense | step ms | x dense | x masked | ideal weight fraction "
        "| kept at densest step | steps' peak at step | load (start) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sparsity = r.get("sparsity", SPARSITY)
        name = row_name(r["method"], sparsity)
        if "error" in r:
            out.append(f"| {name} | {r['storage']} | failed: {r['error']} |" + " |" * 13)
            continue
        load = r.get("load_average_at_start")
        ideal = format_ideal(r["method"], sparsity)
        if "ideal_peak_fraction_these_partitions" in r:
            ideal += f" ({r['ideal_peak_fraction_these_partitions']:.2f} for these partitions)"
        cells = [
            name,
            r["storage"],
            f"{r['peak_above_baseline_mib']:,.0f}",
            _ratio(r.get("peak_ratio_to_dense")),
            _ratio(r.get("peak_ratio_to_masked")),
            "-"
            if r.get("steps_peak_above_baseline_mib") is None
            else f"{r['steps_peak_above_baseline_mib']:,.0f}",
            _ratio(r.get("steps_peak_ratio_to_dense")),
            f"{r['peak_above_warmup_mib']:,.0f}",
            _ratio(r.get("peak_above_warmup_ratio_to_dense")),
            f"{r['step_ms']:,.0f}",
            _ratio(r.get("step_ratio_to_dense")),
            _ratio(r.get("step_ratio_to_masked")),
            ideal,
            f"{r['max_kept_fraction']:.2f}",
            f"{r['peak_step']}/{r['steps']}",
            f"{load[0]:.1f}" if load else "-",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def results_markdown(data: dict[str, Any]) -> str:
    info = data["machine"]
    loads = [r["load_average_at_start"][0] for r in data["rows"] if r.get("load_average_at_start")]
    cuda = data.get("device") == "cuda"
    lines = [
        f"## Peak memory of training ({'CUDA' if cuda else 'CPU'})",
        "",
        ("Peak `torch.cuda.max_memory_allocated`" if cuda else "Peak resident memory (`VmHWM`)")
        + " of a plain training loop -- model, Adam, sparsifier, "
        "forward, backward, `optimizer.step()`, `sparsifier.step()` -- above the peak right after "
        "`import torch, growprune`, every configuration in a fresh process with 1 torch thread. "
        "Each method's schedule is squeezed into the measured steps so that its prunes, "
        "mask updates or phase changes happen in them. *Ideal weight fraction*: the fraction of the "
        "prunable weights compact storage would hold at the method's peak (GaP formula: 1 - r static "
        "sparse, (1 - r) + r/K for C-GaP / P-GaP; one-shot, GMP and ADMM train dense, then prune). "
        "*Kept at densest step*: what the masks kept there. *Masked* storage holds dense weights, "
        "gradients and Adam state plus masks, so no masked row can go below dense; *compact* storage "
        '(`storage="compact"`) holds a pruned layer\'s kept values, int32 positions and their Adam '
        "state only. *x masked*: a compact row over the masked row of the same method and sparsity. "
        "Every run starts from the user's dense model (the model is built dense, then the "
        "sparsifier), so the dense weights are part of every peak; *steps only* is the peak of the "
        "training steps alone (the peak reset once the sparsifier is built), what compact storage "
        "holds once the dense model is gone.",
        "",
    ]
    for model in data["models"]:
        lines += [*table_lines(data, model), ""]
    for method, note in NOTES.items():
        if any(r["method"] == method for r in data["rows"]):
            lines.append(f"- {method}: {note}.")
    lines += [
        "",
        f"Command: `{data['command']}`",
        "",
        f"Machine: {info['cpu']} ({info['cpu_count']} CPUs), CPU kernels {info['cpu_kernels']}, "
        f"torch {info['torch']}, 1 thread per run; load average at the rows' starts "
        + (f"{min(loads):.1f}-{max(loads):.1f}" if loads else "unknown")
        + " (a shared machine: step times move with the load, peak RSS does not). "
        f"Commit {data['commit'][:10]}{' (dirty tree)' if data.get('dirty') else ''}, {data['date']}.",
    ]
    return "\n".join(lines)


def print_rows(data: dict[str, Any]) -> None:
    for model in data["models"]:
        rows = [r for r in data["rows"] if r["model"] == model]
        print(f"\n{model}")
        print(
            f"{'config':<15} {'storage':<8} {'peak MiB':>9} {'x dense':>8} {'x masked':>9} {'step ms':>9} "
            f"{'x dense':>8} {'x masked':>9} {'ideal weight fraction':>22} {'kept max':>9} {'load':>5}"
        )
        for r in rows:
            sparsity = r.get("sparsity", SPARSITY)
            name = row_name(r["method"], sparsity)
            if "error" in r:
                print(f"{name:<15} {r['storage']:<8} FAILED: {r['error']}")
                continue
            print(
                f"{name:<15} {r['storage']:<8} {r['peak_above_baseline_mib']:9.0f} "
                f"{r.get('peak_ratio_to_dense', float('nan')):8.2f} "
                f"{_ratio(r.get('peak_ratio_to_masked')):>9} "
                f"{r['step_ms']:9.1f} {r.get('step_ratio_to_dense', float('nan')):8.2f} "
                f"{_ratio(r.get('step_ratio_to_masked')):>9} {format_ideal(r['method'], sparsity):>22} "
                f"{r['max_kept_fraction']:9.2f} {(r.get('load_average_at_start') or [0])[0]:5.1f}"
            )
    for method, note in NOTES.items():
        if any(r["method"] == method for r in data["rows"]):
            print(f"note {method}: {note}")


def describe_command(args: argparse.Namespace) -> str:
    parts = ["python -m benchmarks.memory"]
    if args.smoke:
        parts.append("--smoke")
    if tuple(args.models) != MODELS:
        parts.append("--models " + " ".join(args.models))
    if tuple(args.methods) != METHODS:
        parts.append("--methods " + " ".join(args.methods))
    if args.storage != list(STORAGES):
        parts.append("--storage " + " ".join(args.storage))
    if args.sparsities != [SPARSITY]:
        parts.append("--sparsities " + " ".join(f"{s:g}" for s in args.sparsities))
    if args.steps:
        parts.append(f"--steps {args.steps}")
    if args.device != "cpu":
        parts.append(f"--device {args.device}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, 3 steps (tests); needs --out")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--storage",
        nargs="+",
        choices=STORAGES,
        default=list(STORAGES),
        help="how pruned layers are stored (default: both, side by side)",
    )
    parser.add_argument(
        "--sparsities", nargs="+", type=float, default=[SPARSITY], help="sparsity levels (default 0.8)"
    )
    parser.add_argument("--steps", type=int, help=f"training steps per run (default {DEFAULT_STEPS})")
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="cpu: peak RSS of the process; cuda: torch.cuda.max_memory_allocated on the GPU",
    )
    parser.add_argument("--out", type=Path, help=f"JSON to write (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--results-md", type=Path, help=f"Markdown to update (default {RESULTS_MD.name})")
    parser.add_argument("--from-json", type=Path, help="do not measure: rewrite the section from this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        section = f"{SECTION}-cuda" if data.get("device") == "cuda" else SECTION
        write_section(args.results_md or RESULTS_MD, section, results_markdown(data))
        print(f"section written: {args.results_md or RESULTS_MD}")
        return 0
    if args.smoke and args.out is None:
        parser.error("--smoke writes only where --out says (never the committed results)")
    for level in args.sparsities:
        if not 0 < level < 1:
            parser.error(f"--sparsities: {level:g} is not in (0, 1)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda needs a CUDA build of torch and a GPU; none here", file=sys.stderr)
        return 2
    if REFERENCE not in args.methods:
        args.methods = [REFERENCE, *args.methods]  # the ratios need it
    started = time.time()
    commit, dirty = git_commit("growprune", "benchmarks")
    data: dict[str, Any] = {
        "commit": commit,
        "dirty": dirty,
        "sparsities": list(args.sparsities),
        "partitions": PARTITIONS,
        "smoke": args.smoke,
        "models": list(args.models),
        "command": describe_command(args),
        "machine": machine(),
        "rows": [],
    }
    cuda = args.device == "cuda"
    data["device"] = args.device
    out = args.out or (RESULTS_DIR / "memory_cuda.json" if cuda else RESULTS)
    section = f"{SECTION}-cuda" if cuda else SECTION
    out.parent.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        steps = args.steps or (SMOKE_STEPS if args.smoke else DEFAULT_STEPS[model])
        configs = [(REFERENCE, "masked", 0.0)]  # one dense row
        configs += [
            (method, storage, level)
            for level in args.sparsities
            for method in args.methods
            if prunes(method)
            for storage in args.storage
        ]
        for method, storage, level in configs:
            row = run_child(Config(model, method, storage, steps, args.smoke, level or SPARSITY, args.device))
            data["rows"].append(row)
            shown = (
                f"FAILED: {row['error']}"
                if "error" in row
                else f"peak {row['peak_above_baseline_mib']:.0f} MiB at step {row['peak_step']}, "
                f"{row['step_ms']:.0f} ms/step, load {(row['load_average_at_start'] or [0])[0]:.1f}"
            )
            print(f"{model} {row_name(method, level)} {storage}: {shown}", flush=True)
            out.write_text(json.dumps({**data, "partial": True}, indent=1) + "\n")  # kept if stopped
    add_ratios(data["rows"])
    data["seconds"] = time.time() - started
    data["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out.write_text(json.dumps(data, indent=1) + "\n")
    print_rows(data)
    print(f"\nwrote {out}")
    if not args.smoke or args.results_md:
        md = args.results_md or RESULTS_MD
        write_section(md, section, results_markdown(data))
        print(f"section written: {md}")
    failed = [r for r in data["rows"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
