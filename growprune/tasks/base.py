"""What the training engine needs to know about a kind of problem.

The engine (:mod:`growprune.train.engine`) is the same loop for every task: batches in, loss,
optimizer step, sparsifier step, evaluation at epoch ends, checkpoints. A :class:`Task` supplies
the parts that differ between image classification and translation -- the data, the loss of a
batch, how a model is scored, and which constructor arguments the data implies -- so the loop,
the checkpoints, P-GaP and the resume guarantees are written once.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader(Protocol):
    """A deterministic loader: the batches of epoch ``e`` are a pure function of (seed, e)."""

    batch_size: int

    def __len__(self) -> int: ...

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]: ...


class DataSettings(Protocol):
    """What a task reads of the data settings (a recipe's ``data:`` section)."""

    name: str
    data_dir: str | None
    root: str | None
    random_crop: bool
    crop_padding: int
    hflip: bool
    args: dict[str, Any]


@dataclass(frozen=True)
class TaskRequest:
    """What a run asks of its task: the recipe's data and evaluation settings, where the data goes,
    the loop's batch sizes and seed, and whether this is a smoke run (a tiny slice of the data, to
    check that every part runs)."""

    data: DataSettings
    # the task's own evaluation settings (an instance of its registry entry's `evaluation`
    # dataclass, filled from the recipe's ``evaluation:`` section); None for a task that takes none
    evaluation: Any
    device: torch.device
    batch_size: int
    eval_batch_size: int
    seed: int
    label_smoothing: float = 0.0
    smoke: bool = False

    def dataset_args(self, data_dir_as: str, takes_root: bool = False) -> dict[str, Any]:
        """The dataset's keyword arguments: ``data.args`` plus ``data.data_dir`` under the name the
        dataset's loader takes it (`data_dir_as`) and ``data.root`` where the dataset reads a
        folder of its own (`takes_root`; refused elsewhere, naming ``data.data_dir``)."""
        args: dict[str, Any] = dict(self.data.args)
        if self.data.data_dir is not None:
            args[data_dir_as] = self.data.data_dir
        if getattr(self.data, "root", None) is not None:
            if not takes_root:
                raise ValueError(
                    f"root names a dataset's own folder (ShapeNet-Part or COCO-format detection data), "
                    f"not {self.data.name!r} data; use data.data_dir here"
                )
            args["root"] = self.data.root
        return args

    def loop_sizes(self) -> dict[str, Any]:
        """The constructor arguments every task built from a request shares."""
        return {
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "seed": self.seed,
            "label_smoothing": self.label_smoothing,
        }


class Task(ABC):
    """Data, loss and evaluation of one problem; built once per run by :meth:`from_request`
    (the registry, :mod:`growprune.tasks.registry`, names the class of each task).

    Attributes:
        train_loader: the training batches (shuffled, deterministic).
        primary_metric: key of :meth:`evaluate`'s result that selects ``best.pt`` (higher is better).
        final_metric: key of ``evaluate(final=True)``'s result that a run is reported by.
        progress_text: the progress log's line for :meth:`evaluate`'s result, a ``str.format``
            template over its scores (None: every score, four places).
        final_text: what that line adds once the final scores are in (``final_metric`` among them),
            a template over the same scores.
    """

    train_loader: BatchLoader
    primary_metric: str
    final_metric: str
    progress_text: ClassVar[str | None] = None
    final_text: str = ""

    @classmethod
    @abstractmethod
    def from_request(cls, request: TaskRequest) -> Task:
        """The task a run asks for, its data loaded and on ``request.device``.

        Raises:
            ValueError / TypeError: bad data settings (the engine turns them into a RecipeError).
        """

    @abstractmethod
    def model_defaults(self) -> dict[str, Any]:
        """Constructor arguments the data implies (input size, classes, vocabulary size)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean loss, correct predictions, predictions) of one batch; counts stay on the device."""

    @abstractmethod
    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        """Held-out scores. ``final`` asks for the full, slower evaluation at the end of a run."""

    @abstractmethod
    def worker_loader(self, seed: int) -> BatchLoader:
        """The training batches in another order (each P-GaP worker reads its own)."""

    def collapsed(self, scores: dict[str, float], peak: float) -> str | None:
        """Why ``scores`` look like a model that has collapsed (back at chance while its numbers
        stay finite), or None. ``peak`` is the best primary score under the current masks. The
        engine only warns on it: a finite score cannot tell a collapse from a pruning shock or
        evaluation noise on every machine, so it never stops a run. The default sees none."""
        del scores, peak
        return None

    def describe(self, metrics: dict[str, float]) -> str:
        """A short human summary of :meth:`evaluate`'s result for the progress log: the task declares
        its templates, so the every-epoch part and the final part are put together here once."""
        if self.progress_text is None:
            return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        text = self.progress_text.format(**metrics)
        return text + self.final_text.format(**metrics) if self.final_metric in metrics else text

    def write_artifacts(self, model: nn.Module, run_dir: Any) -> None:  # noqa: B027 - optional hook
        """Write task-specific files (e.g. example translations) at the end of a run."""


class TokenTask(Task):
    """A task over a tokenized corpus whose data object carries its tokenizer (language modelling,
    translation): one constructor for what such tasks keep -- the data, the loop's batch sizes, the
    label smoothing, the task's evaluation settings and the training loader.

    A subclass names its evaluation settings' dataclass (`evaluation_type`, the default when none
    is passed) and the label smoothing a direct construction gets (`default_label_smoothing`; a
    run passes the recipe's), and implements :meth:`worker_loader` over ``self.data.train``.
    """

    evaluation_type: ClassVar[type]
    default_label_smoothing: ClassVar[float] = 0.0

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        label_smoothing: float | None = None,
        evaluation: Any = None,
    ) -> None:
        self.data = data
        self.tokenizer = data.tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.label_smoothing = self.default_label_smoothing if label_smoothing is None else label_smoothing
        self.evaluation = evaluation or self.evaluation_type()
        self.train_loader = self.worker_loader(seed)


def check_model_fits(task: Task, model_name: str, builder: Callable[..., nn.Module]) -> None:
    """A translation model needs token ids and a classifier needs tensors: refuse a mismatch early.

    Without this the first forward pass fails deep inside the model with a shape or dtype error.
    Each kind of model (point-cloud segmenter, causal language model, detector, sequence-to-sequence
    model) is told by its builder and wanted by the data's model arguments; the error names the
    side that has it and the model or data that fits.
    """
    takes = inspect.signature(builder).parameters
    wants = task.model_defaults()
    # (the model is one, the data wants one, the error where only the model is, where only the data wants one)
    kinds = (
        (
            "num_parts" in takes,
            "num_parts" in wants,
            f"model '{model_name}' is a point-cloud part-segmentation model but the data is not "
            "ShapeNet-Part",
            f"model '{model_name}' does not segment point clouds; use model.name: pointnet2_partseg",
        ),
        (
            bool(getattr(builder, "causal_lm", False)),
            "context_length" in wants,
            f"model '{model_name}' is a causal language model but the data is not a language-modelling "
            "corpus; use data.name: bible_en",
            f"model '{model_name}' is not a causal language model but the data is a language-modelling "
            "corpus; use model.name: llama",
        ),
        (
            bool(getattr(builder, "detector", False)),
            "image_size" in wants,
            f"model '{model_name}' is a detector but the data is not a detection set; use data.name coco "
            "or coco_shapes",
            f"model '{model_name}' is not a detector but the data is a detection set; use model.name: ssd",
        ),
        (
            "vocab_size" in takes,
            "vocab_size" in wants,
            f"model '{model_name}' is a sequence-to-sequence model but the data is a classification "
            "set; use a translation corpus (data.name: bible) or a classifier (mlp, small_cnn, resnet20)",
            f"model '{model_name}' is a classifier but the data is a translation corpus; "
            "use model.name: transformer",
        ),
    )
    for model_is, data_wants, model_only, data_only in kinds:
        if model_is != data_wants:
            raise ValueError(model_only if model_is else data_only)


def accepted_defaults(builder: Callable[..., nn.Module], candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of data-implied arguments that the model's constructor takes."""
    accepted = inspect.signature(builder).parameters
    return {k: v for k, v in candidates.items() if k in accepted}
