"""The `growprune` command: train from a recipe, report on a run, list what is available.

Every failure a user can cause (bad recipe, missing data, corrupt checkpoint, diverged loss, an
optional dependency not installed) ends with one line on stderr naming the problem and the fix,
and a non-zero exit code; tracebacks are for bugs in growprune itself. Results (the final line of
a training, the report path, `list` and `report` output) go to stdout; progress, the run
directory, resume messages and warnings go to stderr.

Only torch, numpy and safetensors are required to import growprune; the command needs the
`train` extra (and `translation` for translation recipes). The modules each extra provides are
listed in EXTRAS, and a missing one is named with the install command that brings it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from growprune.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    GrowpruneError,
    UsageError,
    is_out_of_memory,
)
from growprune.tasks.registry import TASKS, bundled_recipes

# Importable module -> the extra (pyproject [project.optional-dependencies]) that installs it: the
# command's own, then each task's (the task registry declares them).
EXTRAS = {
    "yaml": "train",
    "pydantic": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "tensorboard": "train",
}
for _spec in TASKS.values():  # a module two tasks need (tokenizers) is named by the first task's extra here;
    for _module in _spec.modules:  # a run of a task names its own (task_extras)
        EXTRAS.setdefault(_module, _spec.extra or "train")


def task_extras(spec: object) -> dict[str, str]:
    """Module -> extra as the task `spec` (a registry TaskSpec) declares them, over EXTRAS."""
    return {**EXTRAS, **{m: getattr(spec, "extra", None) or "train" for m in getattr(spec, "modules", ())}}


# What each command imports whatever the recipe says; the rest is checked once the recipe is read.
TRAIN_MODULES = ("yaml", "pydantic", "tqdm")
REPORT_MODULES = ("yaml", "matplotlib")


class MissingExtra(UsageError):
    """An optional dependency a command needs is not installed; the message is the one line to show."""

    def __init__(
        self, command: str, modules: Sequence[str], extra_of: Mapping[str, str] | None = None
    ) -> None:
        extra_of = EXTRAS if extra_of is None else extra_of
        order = ["train", *dict.fromkeys(extra_of.values())]
        extras = sorted({extra_of[m] for m in modules}, key=order.index)
        names = ", ".join(repr(m) for m in modules)
        super().__init__(
            f"growprune {command}: needs the {' and '.join(repr(e) for e in extras)} "
            f"extra{'s' if len(extras) > 1 else ''} (missing module{'s' if len(modules) > 1 else ''} "
            f"{names}): pip install 'growprune[{','.join(extras)}]'"
        )


def require(command: str, modules: Iterable[str], extra_of: Mapping[str, str] | None = None) -> None:
    """Raise MissingExtra naming every module in `modules` that cannot be imported (and the extras,
    by `extra_of`, default EXTRAS, that install them)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(command, missing, extra_of)


def resolve_recipe_path(text: str) -> Path:
    """A file path, or a bundled recipe name such as `fmnist/cgap-quick`."""
    path = Path(text)
    if path.is_file():
        return path
    bundled = bundled_recipes().get(text.removesuffix(".yaml"))
    return bundled if bundled is not None else path


def _default_run_dir(name: str, smoke: bool) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}{'-smoke' if smoke else ''}-{stamp}"


def check_run_dir(run_dir: Path, named_by: str) -> None:
    """Refuse a run directory that cannot be made before anything is built (it used to fail late)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{named_by} {run_dir} is a file, not a directory; name a directory for the run")
    parent = run_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{named_by} {run_dir}: {parent} is a file, so no directory can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{named_by} {run_dir}: {parent} is not writable; name a directory you can write to")


def cmd_train(args: argparse.Namespace) -> int:
    require("train", TRAIN_MODULES)
    with contextlib.ExitStack() as held:
        return _train(args, held)


def _lock(run_dir: Path, action: str, held: contextlib.ExitStack) -> None:
    """Hold the run directory's lock (growprune.train.lock) until the command ends: before anything
    there is read or written. Under torchrun only rank 0, the rank that writes, takes it."""
    from growprune.train.lock import lock_run_dir

    if _is_rank_zero():
        held.enter_context(lock_run_dir(run_dir, action))


def _train(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from growprune.train.distributed import cleanup, launched_distributed
    from growprune.train.engine import Trainer
    from growprune.train.recipe import RecipeError, load_recipe

    overrides = list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise RecipeError(f"--resume {run_dir}: no such run directory")
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise UsageError(
                f"--resume {run_dir} continues that run in its own directory, so --out {args.out} would be "
                "ignored; drop --out (or copy the run directory there and resume the copy)"
            )
        _lock(run_dir, "resume", held)
        recipe_path = resolve_recipe_path(args.recipe) if args.recipe else run_dir / "recipe.yaml"
    else:
        if not args.recipe:
            raise RecipeError(
                "growprune train needs a RECIPE (a .yaml file or a bundled name; see growprune list)"
            )
        recipe_path = resolve_recipe_path(args.recipe)
    recipe = load_recipe(recipe_path, overrides)
    from growprune.tasks.registry import task_for_dataset

    task = task_for_dataset(recipe.data.name)
    require(
        "train",
        [
            *(["matplotlib"] if recipe.output.report else []),
            *(["tensorboard"] if recipe.output.tensorboard else []),
            *task.modules,
        ],
        task_extras(task),
    )
    resume = bool(args.resume)
    if not resume:
        # Under torchrun every rank must agree on the directory, and an elastic restart
        # (TORCHELASTIC_RESTART_COUNT > 0) continues the run it finds there.
        distributed = launched_distributed()
        default = (
            Path("runs") / f"{recipe.name}{'-smoke' if args.smoke else ''}-dist" if distributed else None
        )
        run_dir = Path(args.out or recipe.output.dir or default or _default_run_dir(recipe.name, args.smoke))
        named_by = "--out" if args.out else "output.dir" if recipe.output.dir else "run directory"
        check_run_dir(run_dir, named_by)
        _lock(run_dir, "train", held)
        has_run = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("ckpt-*.pt"))
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
        if has_run and not restarted:
            raise RecipeError(
                f"run directory {run_dir} already holds a run; use --resume {run_dir} or another --out"
            )
        resume = has_run and restarted
    trainer = Trainer(recipe, run_dir, smoke=args.smoke, resume=resume, progress=not args.no_progress)
    if trainer.is_main:
        print(f"run directory: {run_dir}", file=sys.stderr)
    try:
        final = trainer.run()
    finally:
        cleanup()
    if not trainer.is_main:
        return 0
    from growprune.tasks.registry import task_named

    print(
        f"done: {task_named(final['task']).describe_scores(final)}, sparsity {final['sparsity']:.4f}, "
        f"{final['params_kept']}/{final['params_total']} parameters kept, {final['train_seconds']:.0f} s",
        flush=True,
    )
    if recipe.output.report:
        from growprune.report.run import write_report

        print(f"report: {write_report(run_dir)}", flush=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    require("report", REPORT_MODULES)
    from growprune.report.run import write_report

    print(write_report(Path(args.run_dir)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    del args
    from growprune.methods import METHODS
    from growprune.models.registry import list_models

    print("methods:  " + ", ".join(f"{name} ({cls.title})" for name, cls in sorted(METHODS.items())))
    print("models:   " + ", ".join(list_models()))
    for i, spec in enumerate(TASKS.values()):
        print(("datasets: " if i == 0 else " " * 10) + ", ".join(spec.datasets) + f" ({spec.description})")
    print("recipes:")
    for name in bundled_recipes():
        print(f"  {name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from growprune.export import export_model

    model_args = {}
    if args.model_arg:
        require("export", ["yaml"])  # values are read as YAML scalars
        import yaml

        for item in args.model_arg:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--model-arg {item!r}: expected KEY=VALUE")
            try:
                model_args[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise UsageError(f"--model-arg {item!r}: the value is not valid YAML; quote it") from None
    # An export that went ahead differently than asked (final.pt unreadable, best.pt exported)
    # warns, and the warning is one "warning:" line (see _show_warning).
    print(export_model(args.source, args.out, format=args.format, dtype=args.dtype, model_args=model_args))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error (argparse prints the
    whole usage block first); ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="growprune", description=__doc__.splitlines()[0])
    debug_help = "on failure, show the traceback (also GROWPRUNE_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # Accepted after the command too (`growprune train --debug ...`); SUPPRESS keeps the main flag.
    common = OneLineParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model from a recipe", parents=[common])
    train.add_argument("recipe", nargs="?", help="recipe .yaml, or a bundled name such as fmnist/cgap-quick")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. method.sparsity=0.9"
    )
    train.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last good checkpoint"
    )
    train.add_argument(
        "--smoke", action="store_true", help="whole schedule on a tiny data slice, to check a recipe"
    )
    train.add_argument("--data-dir", help="directory with the dataset files (overrides data.data_dir)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)
    report = sub.add_parser("report", help="plots and a Markdown summary of a run", parents=[common])
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    listing = sub.add_parser("list", help="methods, models, datasets and bundled recipes", parents=[common])
    listing.set_defaults(func=cmd_list)
    export = sub.add_parser(
        "export", help="write a trained sparse model to a compressed safetensors file", parents=[common]
    )
    export.add_argument(
        "source", help="run directory (uses final.pt, else best.pt, else the newest) or checkpoint"
    )
    export.add_argument(
        "--out", required=True, help="output file, e.g. model.safetensors (compressed-tensors: a directory)"
    )
    export.add_argument(
        "--format",
        choices=["sparse", "dense", "compressed-tensors"],
        default="sparse",
        help="sparse: bitmask + kept values; compressed-tensors: a transformers model directory "
        "(from a Hugging Face Trainer checkpoint written with SparsityCallback)",
    )
    export.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    export.add_argument(
        "--model-arg", action="append", metavar="KEY=VALUE", help="a model argument the recipe lacks"
    )
    export.set_defaults(func=cmd_export)
    return parser


def _one_line(text: str, limit: int = 600) -> str:
    """A message as one line: whitespace runs (newlines from torch or YAML) become one space."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_failure(err: BaseException, command: str) -> tuple[int, str]:
    """The exit code and the one line shown for an exception that ended a command.

    The single place that turns failures into messages. A GrowpruneError carries its own message
    and code; the rest are the kinds the environment causes (a file system refusing a write, memory
    running out, Ctrl-C before the trainer took over the signals) or, failing those, a bug in
    growprune, which is named as one with the way to see its traceback.
    """
    if isinstance(err, GrowpruneError):
        return err.exit_code, f"{err.prefix}: {_one_line(str(err))}"
    if isinstance(err, KeyboardInterrupt):
        stopped = f"growprune {command}".strip()
        return EXIT_INTERRUPTED, f"interrupted: {stopped} stopped by Ctrl-C before it had anything to save"
    if isinstance(err, ModuleNotFoundError) and (err.name or "").partition(".")[0] in EXTRAS:
        # A lazy import that require() did not foresee still gets the one line naming the extra.
        missing = MissingExtra(command, [(err.name or "").partition(".")[0]])
        return missing.exit_code, str(missing)
    from growprune.files import no_space_message

    no_space = no_space_message(err)
    if no_space is not None:
        return EXIT_FAILURE, f"error: {_one_line(no_space)}"
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return EXIT_FAILURE, f"error: {where}{err.strerror}"
    if is_out_of_memory(err):
        return EXIT_FAILURE, (
            "error: out of memory; lower training.batch_size (or training.eval_batch_size) "
            "or use a smaller model"
        )
    return EXIT_FAILURE, (
        f"error: internal error in growprune ({type(err).__name__}: {_one_line(str(err), 300)}); "
        "rerun with --debug (or GROWPRUNE_DEBUG=1) for the traceback and please report it"
    )


def _debugging(args: argparse.Namespace | None) -> bool:
    flag = os.environ.get("GROWPRUNE_DEBUG", "").strip().lower()
    return bool(args is not None and getattr(args, "debug", False)) or flag not in ("", "0", "false", "no")


def _is_rank_zero() -> bool:
    """Under torchrun every rank fails the same way; only rank 0 speaks, so users read one line."""
    return os.environ.get("RANK", "0") in ("", "0")


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: object
) -> None:
    """Warnings as one line on stderr, like errors (Python's format adds the source line)."""
    del filename, lineno, args
    kind = "" if issubclass(category, UserWarning) else f"({category.__name__}) "
    print(f"warning: {kind}{_one_line(str(message))}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the only place where exceptions become exit codes and messages."""
    with warnings.catch_warnings():  # the one-line format lasts as long as the command
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        from growprune.methods import load_plugins

        try:
            load_plugins()  # third-party methods and models register themselves when imported
        except ImportError as err:
            raise UsageError(str(err)) from None
        return int(args.func(args))
    except BrokenPipeError:  # `growprune list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit:  # argparse's usage errors and --help already printed what they had to
        raise
    except BaseException as err:
        if _debugging(args):
            raise
        code, line = describe_failure(err, getattr(args, "command", None) or "")
        if _is_rank_zero() or not isinstance(err, GrowpruneError):
            rank = "" if _is_rank_zero() else f"rank {os.environ.get('RANK')}: "
            print(f"{rank}{line}", file=sys.stderr, flush=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
