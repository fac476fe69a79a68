"""Quality benchmark: does GaP beat the baselines at an equal training budget?

    python -m benchmarks.quality --tier quick                 # small CNN, 1 seed, ~1 h on 2 CPU cores
    python -m benchmarks.quality --tier quick --seeds 3       # the table's 3 seeds
    python -m benchmarks.quality --tier quick --layers all    # every layer pruned (rows on record)
    python -m benchmarks.quality --tier long                  # LeNet-300-100, 100 epochs, 3 seeds, ~1 h
    python -m benchmarks.quality --tier full                  # ResNet-20, 3 seeds, uniform + ERK (GPU)
    python benchmarks/gpu_suite.py                            # its uniform rows on one GPU in <= 9 min
    python -m benchmarks.quality --tier quick --study gap     # C-GaP ablation (K, partitions, optimizer, lr)
    python -m benchmarks.quality --tier quick --epochs 24     # the same table at another budget
    python -m benchmarks.quality --smoke --out /tmp/q.jsonl   # seconds; what the test suite runs

Every method runs through the same code users run: a recipe dict -> ``validate_recipe`` ->
``Trainer(...).run()``, one run per subprocess (isolation: no state, threads or RNG leak from one
run into the next). The external peer ``rigl-torch`` (PyPI, ``pip install -e .[bench]``) runs in a
short loop of our own over the very same model, data, augmentation, optimizer and lr schedule,
built by the same engine. Results are appended, one JSON row per run, to
``benchmarks/results/quality.jsonl``; runs already there are skipped, so an interrupted
benchmark continues where it stopped. ``python -m benchmarks.make_results`` turns the rows into
``benchmarks/RESULTS.md``.

Budget rule: every method gets the same number of *training epochs of compute* (optimizer
steps x batch). GaP steps and fine-tuning count, as do ADMM's dense/ADMM/fine-tune thirds and
GMP's pruning window. P-GaP trains K workers per round, so its K x rounds x epochs_per_phase +
fine-tune epochs equals the budget (its wall-clock on K machines would be shorter).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    HERE,
    RESULTS_DIR,
    ROOT,
    append_row,
    device_name,
    git_commit,
    machine,
    method_order,
    prunes,
    read_rows,
)
from benchmarks.engine_child import child_environment, run_child_process
from growprune.methods import METHODS as REGISTRY
from growprune.methods import get_method, schedule_epochs_of

RESULTS = RESULTS_DIR / "quality.jsonl"
# Peer libraries benchmarked beside growprune's own methods: row name -> (the growprune method
# it implements, its label). Where a peer appears, growprune's method is labelled "(growprune)".
PEERS = {"rigl-torch": ("rigl", "RigL (rigl-torch 0.5.2)")}
# Every method the benchmark runs, in the method registry's order, each peer after its method.
METHODS = tuple(
    name
    for method in method_order(REGISTRY)
    for name in (method, *(peer for peer, (implemented, _) in PEERS.items() if implemented == method))
)


def implemented(method: str) -> str:
    """The growprune method a row's method is: itself, or the one a peer implements."""
    return PEERS[method][0] if method in PEERS else method


SPARSITIES = (0.8, 0.9)


@dataclass(frozen=True)
class Tier:
    """Model, budget and repetitions of one benchmark tier.

    ``methods`` and ``sparsities`` are the table's (the command line may pick fewer);
    ``gap_partitions`` is K of both C-GaP and P-GaP (None: 4 and 2, the quick tier's); ``augment``
    turns the random crop and flip on; ``precision`` and ``channels_last`` are the recipe's
    ``training`` keys of the same names. ``layers`` is the layer convention every method of the
    tier follows (LAYER_CONVENTIONS): ``first-dense`` keeps the model's first prunable layer dense.
    """

    name: str
    model: str
    model_args: dict[str, Any]
    epochs: float
    seeds: tuple[int, ...]
    distributions: tuple[str, ...]
    dataset: str = "fashion_mnist"
    data_args: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    lr: float = 0.1
    smoke: bool = False
    methods: tuple[str, ...] = METHODS
    sparsities: tuple[float, ...] = SPARSITIES
    augment: bool = True
    gap_partitions: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    layers: str = "all"


# Which layers every method of a tier prunes. `first-dense` is the RigL authors' ImageNet code
# (google-research/rigl, rigl/imagenet_resnet/imagenet_train_eval.py: `first_layer_sparsity`
# defaults to 0, "layer is not pruned or masked"; `last_layer_sparsity` defaults to -1, "default
# sparsity is applied") and rigl-torch's `uniform` distribution (first layer dense). The GaP
# authors' public code (boone891214/GaP) holds only the Transformer, whose profiles prune every
# attention and feed-forward matrix and leave the token embedding (the first layer, tied to the
# output projection) commented out, i.e. dense. Keeping the last Linear dense as well, as
# rigl-torch's `ignore_linear_layers=True` does, would leave 56% of SmallCNN-12's weights dense,
# so the last layer is pruned. The first conv holds 108 of SmallCNN-12's 20,940 weights (0.5%)
# and 432 of ResNet-20's 270k (0.2%): keeping it dense moves the overall sparsity by less than
# that, and it removes the worst shock of the quick tier (pruning a 108-weight conv1 to 10-20%).
LAYER_CONVENTIONS = {
    "all": "every Linear/Conv weight is pruned, the first layer included",
    "first-dense": "the first prunable layer (the first conv) stays dense; every other one, the last "
    "Linear included, is pruned",
}


TIERS: dict[str, Tier] = {
    # Small enough that all 17 runs finish in about an hour on 2 shared CPU cores (2 runs in
    # parallel, 1 thread each): SmallCNN width 12 trains one Fashion-MNIST epoch in ~45 s there.
    # Its rows before 2026-12-01 pruned every layer (variant-free rows with no `layers` field);
    # make_results tables them apart, as "all layers".
    "quick": Tier(
        "quick",
        "small_cnn",
        {"width": 12},
        epochs=6,
        seeds=(0,),
        distributions=("uniform",),
        layers="first-dense",
    ),
    # The long budget on a CPU: LeNet-300-100 (784-300-100-10, the classic pruning benchmark of Han
    # et al. 2015 and Frankle & Carbin 2019). One Fashion-MNIST epoch on one thread, evaluation
    # included (measured on the 2-core dev machine at load ~3): dense 1.05 s, the sparse methods
    # ~1.15 s, rigl-torch 1.35 s, plus ~3 s of process start per run. 100 epochs per run: one seed
    # (19 runs) ~0.65 CPU hours, all 57 runs ~1.9 CPU hours, ~1 h on 2 free cores (--jobs 2).
    # C-GaP and P-GaP: K=3, one layer per partition. No augmentation: random crops and flips cost
    # a dense MLP 2 points at 20 epochs (88.3% vs 90.4%); it has no translation invariance to learn.
    "long": Tier(
        "long",
        "mlp",
        {"hidden": [300, 100]},
        epochs=100,
        seeds=(0, 1, 2),
        distributions=("uniform",),
        methods=("dense", "oneshot", "gmp", "rigl", "rigl-torch", "cgap", "pgap"),
        sparsities=(0.9, 0.95, 0.98),
        augment=False,
        gap_partitions=3,
    ),
    # The tier meant for a GPU (or days of CPU): CIFAR-style ResNet-20, 3 seeds, uniform and ERK
    # (benchmarks/gpu_suite.py runs its uniform rows). Batch 512 (lr 0.4 by the linear scaling rule,
    # Goyal et al. 2017, with the same 1/24 warm-up) because on a GPU shared by concurrent runs the
    # cost of a ResNet-20 step at batch 128 is its ~400 kernel launches, not its arithmetic: 4x
    # fewer steps is what lets 33 runs fit in minutes. bf16 autocast and channels-last layout are
    # what cuDNN's tensor-core convolutions want (on a CPU they are no faster).
    "full": Tier(
        "full",
        "resnet20",
        {},
        epochs=30,
        seeds=(0, 1, 2),
        distributions=("uniform", "erk"),
        batch_size=512,
        lr=0.4,
        precision="bf16",
        channels_last=True,
        layers="first-dense",
    ),
    # The test suite's tier: synthetic images, a 2-epoch budget, seconds per run.
    "smoke": Tier(
        "smoke",
        "small_cnn",
        {"width": 4},
        epochs=2,
        seeds=(0,),
        distributions=("uniform",),
        dataset="synthetic_images",
        data_args={"n_train": 512, "n_test": 256},
        batch_size=64,
        smoke=True,
        layers="first-dense",
    ),
}


@dataclass(frozen=True)
class RunSpec:
    """One training run: a cell of the table (or of the ablation study, with a `variant`)."""

    tier: str
    method: str
    sparsity: float
    distribution: str
    seed: int
    variant: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    layers: str = "all"

    def key(self) -> tuple:
        return (
            self.tier,
            self.method,
            round(self.sparsity, 4),
            self.distribution,
            self.seed,
            self.variant,
            self.layers,
        )


# -- per-method hyperparameters (each paper's defaults, scaled to the epoch budget) -------------
def method_section(
    method: str,
    sparsity: float,
    distribution: str,
    epochs: float,
    steps_per_epoch: int,
    partitions: int | None = None,
) -> dict:
    """The recipe's `method:` section for `method` with an `epochs` budget: the method's published
    schedule scaled to the budget (``Sparsifier.paper_schedule``, declared with its references in
    the method's class; ``paper_settings`` resolves it), at `sparsity` and `distribution` for a
    method that prunes.

    `partitions` sets K of the methods whose schedule has partitions (the GaP methods, on a tier
    whose model has few layers); the rounds and the 2/3 + 1/3 split stay, so each GaP step is
    shorter when K is larger.
    """
    cls = get_method(method)
    core = {"sparsity": sparsity, "distribution": distribution} if prunes(method) else {}
    return {"name": method, **core, **cls.paper_settings(epochs, steps_per_epoch, partitions=partitions)}


def steps_per_epoch(tier: Tier) -> int:
    """Loader length with drop_last; known without loading data (the datasets' fixed sizes)."""
    n_train = tier.data_args.get("n_train", 60000)
    return n_train // tier.batch_size


def build_recipe_dict(spec: RunSpec, tier: Tier, threads: int | None) -> dict[str, Any]:
    """The recipe of one run, as a user would write it."""
    method_name = implemented(spec.method)
    method = method_section(
        method_name, spec.sparsity, spec.distribution, tier.epochs, steps_per_epoch(tier), tier.gap_partitions
    )
    recipe: dict[str, Any] = {
        "name": f"bench-{spec.tier}-{spec.method}-{spec.sparsity:g}-{spec.distribution}-s{spec.seed}",
        "data": {
            "name": tier.dataset,
            "random_crop": tier.augment,
            "crop_padding": 2,
            "hflip": tier.augment,
            "args": dict(tier.data_args),
        },
        "model": {"name": tier.model, "args": dict(tier.model_args)},
        "optimizer": {"name": "sgd", "lr": tier.lr, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": tier.epochs / 24},
        "method": method,
        "training": {
            "batch_size": tier.batch_size,
            "seed": spec.seed,
            "threads": threads,
            "device": "auto",
            "precision": tier.precision,
            "channels_last": tier.channels_last,
        },
        "output": {"tensorboard": False, "report": False, "checkpoint_every_minutes": None, "keep_last": 1},
    }
    if spec.layers == "first-dense" and prunes(method_name):
        recipe["method"]["exclude"] = [first_prunable_layer(tier)]
    if schedule_epochs_of(method) is None:  # the method's schedule fits into training.epochs
        recipe["training"]["epochs"] = tier.epochs
    from growprune.train.recipe import apply_overrides

    return apply_overrides(recipe, [f"{key}={yaml_value(value)}" for key, value in spec.overrides.items()])


def first_prunable_layer(tier: Tier) -> str:
    """Name of the tier's model's first prunable weight, as a user would write it in `exclude`."""
    from growprune.models.registry import build_model
    from growprune.sparsity.targets import find_targets

    return find_targets(build_model(tier.model, **tier.model_args))[0].name


def yaml_value(value: Any) -> str:
    """``value`` as the YAML text ``--set key=value`` parses back to exactly ``value``."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


# -- one run (in a child process) -------------------------------------------------------------
def run_engine(recipe_dict: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    recipe = validate_recipe(recipe_dict)
    final = Trainer(recipe, run_dir, progress=False).run()
    return {
        "top1": final["test_acc"],
        "final_sparsity": final["sparsity"],
        "train_seconds": final["train_seconds"],
        "epochs": round(recipe_epochs_of_compute(recipe), 6),  # 100/9 per GaP step: no 99.99999
        **gpu_memory(),
    }


def gpu_memory() -> dict[str, float]:
    """The CUDA memory this process reserved at most (how many runs share a GPU), if it used CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"gpu_max_memory_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


def recipe_epochs_of_compute(recipe: Any) -> float:
    """Epochs of compute: the schedule's epochs, and for a method trained in rounds of K workers
    (P-GaP) in one process, the other K - 1 workers' phases as well."""
    from growprune.methods import get_method
    from growprune.sparsity.partition import partition_count
    from growprune.train.recipe import method_settings

    epochs = float(recipe.training.epochs)
    cls = get_method(recipe.method.name)
    if cls.loop == "rounds":
        settings = method_settings(recipe.method)
        k = partition_count(settings.partitions)
        epochs += (k - 1) * cls.phases_for(settings.rounds, k) * settings.epochs_per_phase
    return epochs


def import_rigl_torch() -> Any:
    """Import rigl-torch, supplying the stand-in `torchvision` when the real one is absent.

    rigl-torch imports torchvision only for two ``isinstance(p, torchvision.models.resnet.
    Bottleneck / BasicBlock)`` checks whose branches do the same thing as the fallback branch.
    torchvision from PyPI cannot load beside the CPU torch build here, so
    ``benchmarks/rigl_torch_compat/torchvision`` provides just those two (never instantiated)
    classes; with the real torchvision installed, that one is used.
    """
    if importlib.util.find_spec("torchvision") is None:
        # The one sys.path entry the benchmarks add: a top-level `torchvision` import inside
        # rigl-torch can only be answered by a directory on sys.path (see the README there).
        sys.path.insert(0, str(HERE / "rigl_torch_compat"))
    try:
        from rigl_torch.RigL import RigLScheduler
    except ImportError as err:
        raise SystemExit(
            f"rigl-torch is not installed ({err}); install the benchmark extra: pip install -e '.[bench]'"
        ) from None
    return RigLScheduler


def make_rigl_torch_scheduler(
    model: Any, optimizer: Any, sparsity: float, total_steps: int, first_layer_dense: bool = False
) -> Any:
    """rigl-torch's RigLScheduler configured to prune the same layers as growprune.

    Its defaults differ: ``ignore_linear_layers=True`` keeps every Linear dense, and the
    ``uniform`` distribution keeps the first layer dense. We pass ``ignore_linear_layers=False``.
    Under the `first-dense` layer convention its first-layer rule is exactly ours and is kept;
    under `all` (no argument turns the rule off) layer 0 gets the same sparsity as the others
    right after construction (new random mask + its gradient-masking hook, exactly what the
    constructor does for every other layer). Schedule: the RigL paper's (and growprune's)
    delta=100, alpha=0.3 cosine-decayed, T_end = 75% of training.
    """
    rigl_scheduler = import_rigl_torch()
    from rigl_torch.RigL import IndexMaskHook

    pruner = rigl_scheduler(
        model,
        optimizer,
        dense_allocation=1 - sparsity,
        T_end=int(0.75 * total_steps),
        delta=100,
        alpha=0.3,
        ignore_linear_layers=False,
    )
    if not first_layer_dense and pruner.S[0] == 0 and len(pruner.W) > 1:
        import torch

        pruner.S[0] = 1 - pruner.dense_allocation
        weight = pruner.W[0]
        n = pruner.N[0]
        flat = torch.ones(n, device=weight.device)
        flat[torch.randperm(n)[: int(pruner.S[0] * n)]] = 0
        mask = flat.reshape(weight.shape).bool()
        with torch.no_grad():
            weight *= mask
        pruner.backward_masks[0] = mask
        hook = IndexMaskHook(0, pruner)
        pruner.backward_hook_objects[0] = hook
        weight.register_hook(hook)
        weight._has_rigl_backward_hook = True
    return pruner


def run_rigl_torch(recipe_dict: dict[str, Any], run_dir: Path, sparsity: float) -> dict[str, Any]:
    """rigl-torch on the engine's own model, data, optimizer and lr schedule, in rigl-torch's loop.

    The engine builds everything (a `dense` recipe of the same budget), then its no-op dense
    sparsifier is detached and rigl-torch's scheduler is attached as its README says:
    ``if pruner(): optimizer.step()`` (on a RigL update step the optimizer step is skipped).
    """
    import torch

    from growprune.report import sparsity_report
    from growprune.sparsity.targets import find_targets
    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    dense_dict = json.loads(json.dumps(recipe_dict))
    # rigl-torch can keep only its first layer dense: that is the whole `first-dense` convention.
    excluded = dense_dict["method"].get("exclude") or []
    dense_dict["method"] = {
        "name": next(m for m in REGISTRY if not prunes(m))
    }  # the method that prunes nothing
    recipe = validate_recipe(dense_dict)
    trainer = Trainer(recipe, run_dir, progress=False)
    trainer.sparsifier.remove()
    model, optimizer = trainer.model, trainer.optimizer
    # rigl-torch flattens weights and gradients with .view(-1), which a channels-last weight
    # refuses: its runs keep the default layout (the same arithmetic, in another memory order).
    model.to(memory_format=torch.contiguous_format)
    if excluded and excluded != [find_targets(model)[0].name]:
        raise SystemExit(f"rigl-torch can keep only the first layer dense, not {excluded}")
    pruner = make_rigl_torch_scheduler(
        model, optimizer, sparsity, trainer.total_steps, first_layer_dense=bool(excluded)
    )
    step = 0
    start = time.monotonic()
    epoch = 0
    model.train()
    while step < trainer.total_steps:
        for batch in trainer.train_loader.iter_from(epoch):
            for group in optimizer.param_groups:
                group["lr"] = trainer.lr_schedule.lr(step)
            with trainer.autocast():
                loss = trainer.task.loss(model, batch)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if pruner():
                optimizer.step()
            step += 1
            if step >= trainer.total_steps:
                break
        epoch += 1
    seconds = time.monotonic() - start
    top1 = trainer.evaluate()["test_acc"]
    with torch.no_grad():
        # over the layers the convention prunes, as the engine's rows count it
        report = sparsity_report(model, exclude=excluded or None)
    return {
        "top1": top1,
        "final_sparsity": report.overall,
        "train_seconds": seconds,
        "epochs": round(float(recipe.training.epochs), 6),
        "channels_last": False,
        "rigl_updates": pruner.rigl_steps,
        **gpu_memory(),
    }


def child_main(payload: str) -> None:
    """Entry of the per-run subprocess: run, print the result as the last stdout line."""
    job = json.loads(payload)
    threads = job["recipe"]["training"].get("threads")
    import torch

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="gp-quality-") as tmp:
        run_dir = Path(tmp) / "run"
        if job["method"] == "rigl-torch":
            result = run_rigl_torch(job["recipe"], run_dir, job["sparsity"])
        else:
            result = run_engine(job["recipe"], run_dir)
    print(json.dumps(result))


# -- the driver -------------------------------------------------------------------------------
def study_specs(tier: Tier, sparsity: float = 0.8, only: list[str] | None = None) -> list[RunSpec]:
    """The C-GaP ablation: one change at a time from the benchmark's C-GaP setting.

    K: partitions (the SmallCNN has 5 prunable layers, 4 with its first conv dense, so K=8 needs a
    deeper model: K in 2, 4, 5 (2, 3, 4 first-dense) on the quick tier, 2, 4, 8 on ResNet-20,
    2 and 3 on LeNet-300-100); contiguous vs
    random layer partitions; optimizer state reset at every GaP step vs only pruned entries
    zeroed; lr restarted per GaP step (the authors' code) vs one global cosine; epochs per GaP
    step at a fixed GaP budget.
    `base` repeats the table's C-GaP run; `only` picks variants by name (a reduced study).
    """
    e = tier.epochs
    # K <= prunable layers: SmallCNN has 5, 4 with its first conv dense
    small_cnn_ks = (2, 5) if tier.layers == "all" else (2, 3)
    k_values = {"small_cnn": small_cnn_ks, "mlp": (2,)}.get(tier.model, (2, 8))
    variants: dict[str, dict[str, Any]] = {"base": {}}
    for k in k_values:
        # Same GaP budget as the base (2 rounds x 4 steps x e/12 = 2e/3 epochs): only K changes.
        variants[f"K={k}"] = {"method.partitions": k, "method.epochs_per_phase": e / (3 * k)}
    variants["partitions=random"] = {"method.partition_mode": "random"}
    variants["reset_optimizer=changed"] = {"method.reset_optimizer": "changed"}
    variants["init=magnitude"] = {"method.init": "magnitude"}
    # the two single changes that helped at one seed, together
    variants["reset_optimizer=changed,init=magnitude"] = {
        "method.reset_optimizer": "changed",
        "method.init": "magnitude",
    }
    variants["lr=restart-per-step"] = {"schedule.restart_per_phase": True}
    variants["rounds=1,phase=2x"] = {"method.rounds": 1, "method.epochs_per_phase": e / 6}
    variants["rounds=4,phase=0.5x"] = {"method.rounds": 4, "method.epochs_per_phase": e / 24}
    chosen = variants if not only else {k: v for k, v in variants.items() if k in only}
    unknown = set(only or ()) - set(variants)
    if unknown:
        raise SystemExit(f"unknown --variants {sorted(unknown)}; choose from {', '.join(variants)}")
    return [
        RunSpec(
            tier.name,
            "cgap",
            sparsity,
            "uniform",
            seed,
            variant=f"study:{name}",
            overrides=ov,
            layers=tier.layers,
        )
        for name, ov in chosen.items()
        for seed in tier.seeds
    ]


def budget_variant(tier: Tier, epochs: float | None) -> str:
    """Variant name of a run at a budget other than the tier's own (`budget:24`), else "".

    The tier's table compares methods at its own budget; rows at other budgets answer a different
    question (does a method's standing change with more training?) and are tabled apart.
    """
    if epochs is None or epochs == TIERS[tier.name].epochs:
        return ""
    return f"budget:{epochs:g}"


def with_budget(tier: Tier, epochs: float | None) -> Tier:
    """The tier with its epoch budget replaced (every method's schedule scales with it)."""
    if epochs is None:
        return tier
    if not epochs > 0:
        raise SystemExit(f"--epochs must be > 0, got {epochs:g}")
    return Tier(**{**asdict(tier), "epochs": epochs})


def table_specs(tier: Tier, methods: list[str], sparsities: list[float], variant: str = "") -> list[RunSpec]:
    """Dense first, then every method at the first sparsity, then the next: a benchmark cut off
    part-way leaves a whole sparsity level missing rather than whole methods."""
    specs = []
    for seed in tier.seeds:
        for method in methods:
            if not prunes(implemented(method)):
                # dense prunes nothing, so one dense row (its distribution named after it) serves
                # every layer convention
                specs.append(RunSpec(tier.name, method, 0.0, method, seed, variant=variant))
        for sparsity in sparsities:
            for distribution in tier.distributions:
                for method in methods:
                    if not prunes(implemented(method)) or (method in PEERS and distribution != "uniform"):
                        continue  # the peer (rigl-torch) supports only its uniform distribution
                    specs.append(
                        RunSpec(
                            tier.name,
                            method,
                            sparsity,
                            distribution,
                            seed,
                            variant=variant,
                            layers=tier.layers,
                        )
                    )
    return specs


def model_label(tier: Tier) -> str:
    """The model as rows name it: ``small_cnn(width=12)``, ``mlp(hidden=300-100)``, ``resnet20``."""

    def text(value: Any) -> str:
        return "-".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    args = ",".join(f"{key}={text(value)}" for key, value in tier.model_args.items())
    return f"{tier.model}({args})" if args else tier.model


def existing_keys(path: Path) -> set[tuple]:
    """RunSpec.key() of every row in `path` (rows without `layers` predate the conventions: all)."""
    return {
        (
            r["tier"],
            r["method"],
            round(r["sparsity"], 4),
            r["distribution"],
            r["seed"],
            r.get("variant", ""),
            r.get("layers", "all"),
        )
        for r in read_rows(path)
    }


def child_command(
    spec: RunSpec, tier: Tier, threads: int | None
) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """The command line and environment of the subprocess that trains ``spec``, and its recipe."""
    recipe = build_recipe_dict(spec, tier, threads)
    job = {"method": spec.method, "sparsity": spec.sparsity, "recipe": recipe}
    argv = [sys.executable, "-m", "benchmarks.quality", "_child", json.dumps(job)]
    return argv, child_environment(threads), recipe


def child_result(stdout: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """A finished child's result (its last stdout line) with the recipe sections rows record."""
    return with_recipe(json.loads(stdout.strip().splitlines()[-1]), recipe)


def with_recipe(result: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """A child's ``result`` with the recipe sections rows record."""
    result["method_config"] = recipe["method"]
    result["schedule"] = recipe["schedule"]
    return result


def run_name(spec: RunSpec) -> str:
    """File-name-safe name of a run (its log file)."""
    variant = spec.variant.replace(":", "-")
    return f"{spec.method}-{spec.sparsity:g}-{spec.distribution}-s{spec.seed}{variant}"


def run_child(spec: RunSpec, tier: Tier, threads: int | None, log_dir: Path | None) -> dict[str, Any]:
    argv, env, recipe = child_command(spec, tier, threads)
    log = None if log_dir is None else log_dir / f"{run_name(spec)}.log"
    return with_recipe(run_child_process(argv, env, str(spec), log), recipe)


def make_row(
    spec: RunSpec, tier: Tier, result: dict[str, Any], provenance: dict[str, Any], wall_seconds: float
) -> dict[str, Any]:
    """The JSONL row of a finished run. ``provenance``: commit, dirty, device, machine, threads,
    parallel_jobs (and any extra keys a runner adds, e.g. the GPU suite's name)."""
    return {
        "tier": spec.tier,
        "model": model_label(tier),
        "method": spec.method,
        "sparsity": spec.sparsity,
        "distribution": spec.distribution,
        "seed": spec.seed,
        "epochs": result["epochs"],
        "top1": result["top1"],
        "final_sparsity": result["final_sparsity"],
        "train_seconds": result["train_seconds"],
        "device": provenance["device"],
        "commit": provenance["commit"],
        "dirty": provenance["dirty"],
        "variant": spec.variant,
        "layers": spec.layers,
        "threads": provenance["threads"],
        "parallel_jobs": provenance["parallel_jobs"],
        "dataset": tier.dataset,
        "batch_size": tier.batch_size,
        "lr": tier.lr,
        "augment": tier.augment,
        "precision": tier.precision,
        "channels_last": result.get("channels_last", tier.channels_last),
        "method_config": result["method_config"],
        "schedule": result["schedule"],
        "machine": provenance["machine"],
        **{k: v for k, v in provenance.items() if k not in ROW_PROVENANCE},
        "wall_seconds": round(wall_seconds, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


ROW_PROVENANCE = ("device", "commit", "dirty", "threads", "parallel_jobs", "machine")


def provenance(threads: int | None, jobs: int, **extra: Any) -> dict[str, Any]:
    """Where and how the runs of one invocation ran (what make_row puts in every row)."""
    commit, dirty = git_commit("growprune", "benchmarks/quality.py", "benchmarks/common.py")
    return {
        "device": device_name(),
        "commit": commit,
        "dirty": dirty,
        "threads": threads,
        "parallel_jobs": jobs,
        "machine": machine(),
        **extra,
    }


def run_all(
    specs: list[RunSpec], tier: Tier, out: Path, jobs: int, threads: int | None, log_dir: Path | None
) -> list[dict[str, Any]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = existing_keys(out)
    todo = [s for s in specs if s.key() not in done]
    skipped = len(specs) - len(todo)
    print(f"{len(todo)} runs to do ({skipped} already in {out})", flush=True)
    where = provenance(threads, jobs)
    lock = threading.Lock()
    rows: list[dict[str, Any]] = []

    def one(spec: RunSpec) -> None:
        started = time.monotonic()
        result = run_child(spec, tier, threads, log_dir)
        row = make_row(spec, tier, result, where, time.monotonic() - started)
        with lock:
            append_row(out, row)
            rows.append(row)
            print(
                f"{spec.method:<10} {spec.sparsity:<4g} {spec.distribution:<8} seed {spec.seed} "
                f"{spec.variant:<28}"
                f" top1 {row['top1']:.4f}  sparsity {row['final_sparsity']:.4f}  {row['train_seconds']:.0f}s",
                flush=True,
            )

    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, s): s for s in todo}
        for future in concurrent.futures.as_completed(futures):
            err = future.exception()
            if err is not None:
                failures.append(str(err))
                print(f"FAILED: {err}", file=sys.stderr, flush=True)
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed; the others are in {out}")
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        child_main(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("quick", "long", "full"), default="quick")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny synthetic tier in seconds (tests); needs --out"
    )
    parser.add_argument(
        "--study",
        choices=("table", "gap"),
        default="table",
        help="table: every method; gap: the C-GaP ablation",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: the tier's")
    parser.add_argument("--sparsities", nargs="+", type=float, help="default: the tier's")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the tier's)")
    parser.add_argument(
        "--epochs",
        type=float,
        help="epoch budget for every method (default: the tier's); rows at another budget are "
        "recorded as variant budget:E and tabled apart (table study only)",
    )
    parser.add_argument(
        "--layers",
        choices=tuple(LAYER_CONVENTIONS),
        help="layer convention for every method (default: the tier's; `all` re-measures the quick tier's "
        "rows on record from before its first-dense convention)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (subprocesses)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
    parser.add_argument("--out", type=Path, help=f"JSONL to append to (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--log-dir", type=Path, help="keep each run's log here")
    parser.add_argument("--variants", nargs="+", help="with --study gap: only these variants (e.g. K=2 base)")
    args = parser.parse_args(argv)

    tier = TIERS["smoke" if args.smoke else args.tier]
    if args.smoke and args.out is None:
        parser.error("--smoke writes only where --out says (never the committed results)")
    if args.seeds:
        tier = Tier(**{**asdict(tier), "seeds": tuple(range(args.seeds))})
    if args.layers:
        tier = Tier(**{**asdict(tier), "layers": args.layers})
    if args.epochs is not None and args.study != "table":
        parser.error("--epochs applies to the table study only (the ablation keeps the tier's budget)")
    variant = budget_variant(tier, args.epochs)
    tier = with_budget(tier, args.epochs)
    out = args.out or RESULTS
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    methods = args.methods or list(tier.methods)
    sparsities = args.sparsities or list(tier.sparsities)
    specs = (
        table_specs(tier, methods, sparsities, variant)
        if args.study == "table"
        else study_specs(tier, sparsities[0], args.variants)
    )
    run_all(specs, tier, out, args.jobs, args.threads or None, args.log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
