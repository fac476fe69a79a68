"""The task registry: every kind of problem growprune trains, declared once.

The CLI (which extras a run needs, what ``list`` shows, the ``done:`` line), the engine (which
task a recipe's dataset builds) and the run report (which scores head the summary) ask this
registry; none of them names a task or guesses one from score keys. A run records its task's
name (``StartRecord.task``, ``FinalRecord.task``), so a report knows what it is reading.

Adding a task: its folder ``growprune/tasks/<task>/`` (a :class:`~growprune.tasks.base.Task`
subclass with ``from_request``, its data reader or generator, model, metric, optionally its own
report section, and its bundled recipes under ``recipes/<group>/``) and one :class:`TaskSpec` line
in :data:`TASKS`. A task's modules are imported only when a run of it is built or reported, so
the registry stays cheap to read (it imports neither torch nor any task).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from growprune.records import EpochRecord, FinalRecord
    from growprune.tasks.base import Task


def _resolve(reference: str) -> Any:
    """The object a "module:name" reference names, its module imported now."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class SummaryScore:
    """One row heading a run's summary: a score of the final record or the best over epochs.

    ``of``: ``"final"`` (the finished run's score; an unfinished run shows the last epoch's with
    ``last_logged``, else says it is unfinished), ``"best"`` (the highest over every epoch) or
    ``"best_final_masks"`` (the highest among the epochs at the final masks, naming its epoch).
    ``fmt``: ``"percent"``, ``"perplexity"`` (the score is a negated log-perplexity, higher is
    better as every selected score, shown as the perplexity ``exp(-score)``) or a format spec such
    as ``".2f"``.
    """

    label: str
    key: str
    fmt: str
    of: Literal["final", "best", "best_final_masks"] = "final"
    last_logged: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """A task as the rest of growprune sees it."""

    name: str
    description: str  # what ``growprune list`` says of its datasets
    # datasets: the recipe ``data.name`` values it trains on; () for the fallback task, which takes
    # every dataset of the data registry (growprune.tasks.classification.datasets) no other task names
    datasets: tuple[str, ...]
    task_class: str  # "module:Class" of its Task, imported when a run of it is built
    done_text: str  # the ``done:`` line's scores, a str.format template over the final scores
    summary: tuple[SummaryScore, ...]  # the rows heading a run report's summary
    modules: tuple[str, ...] = ()  # Python modules its runs import beyond the `train` extra
    extra: str | None = None  # the pip extra (pyproject) that installs `modules`
    # its models by the name a recipe's model.name gives: "module:callable" (growprune.models)
    models: Mapping[str, str] = field(default_factory=dict)
    # "module:function" of its own section of a run report, (run_dir, epochs, final) -> Markdown lines
    section: str | None = None
    # "module:Class" of the dataclass of its recipe ``evaluation:`` keys (bounds in field metadata,
    # as a method's settings); None: the task takes none. Kept in a module without torch.
    evaluation: str | None = None

    def load(self) -> type[Task]:
        return _resolve(self.task_class)

    def evaluation_settings(self) -> type | None:
        """The dataclass of the task's ``evaluation:`` keys (None when it takes none)."""
        return None if self.evaluation is None else _resolve(self.evaluation)

    @property
    def folder(self) -> Path:
        """The task's folder: where its Task class's module is (found without importing it).

        Its bundled recipes are ``recipes/<group>/*.yaml`` there, so a task shipped in another
        package carries its recipes the same way.
        """
        found = importlib.util.find_spec(self.task_class.split(":")[0])
        if found is None or found.origin is None:
            raise ValueError(f"task {self.name!r}: its module {self.task_class.split(':')[0]!r} is not found")
        return Path(found.origin).parent

    def report_section(
        self, run_dir: Path, epochs: Sequence[EpochRecord], final: FinalRecord | None
    ) -> list[str]:
        """The task's own section of a run report ([] for a task without one)."""
        return [] if self.section is None else _resolve(self.section)(run_dir, epochs, final)

    def describe_scores(self, scores: Mapping[str, float]) -> str:
        return self.done_text.format(**scores)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="classification",
            description="classification",
            datasets=("fashion_mnist", "synthetic", "synthetic_images"),
            task_class="growprune.tasks.classification.task:ClassificationTask",
            done_text="test accuracy {test_acc:.4f}",
            summary=(
                SummaryScore("final test accuracy", "test_acc", "percent", last_logged=True),
                SummaryScore("best test accuracy", "test_acc", "percent", of="best_final_masks"),
            ),
            models={
                "mlp": "growprune.tasks.classification.mlp:MLP",
                "small_cnn": "growprune.tasks.classification.cnn:SmallCNN",
                "resnet20": "growprune.tasks.classification.resnet_cifar:resnet20",
                "resnet32": "growprune.tasks.classification.resnet_cifar:resnet32",
                "resnet56": "growprune.tasks.classification.resnet_cifar:resnet56",
                "resnet50": "growprune.tasks.classification.resnet_imagenet:resnet50",
            },
        ),
        TaskSpec(
            name="translation",
            description="translation, es<->en",
            datasets=("bible",),
            task_class="growprune.tasks.translation.task:TranslationTask",
            done_text="test BLEU {test_bleu:.2f}, chrF {test_chrf:.2f}",
            summary=(
                SummaryScore("final test BLEU (beam)", "test_bleu", ".2f"),
                SummaryScore("best validation BLEU (greedy, any epoch)", "valid_bleu", ".2f", of="best"),
            ),
            modules=("tokenizers", "sacrebleu"),
            extra="translation",
            models={"transformer": "growprune.tasks.translation.model:Seq2SeqTransformer"},
            section="growprune.tasks.translation.report:translation_lines",
            evaluation="growprune.tasks.translation.settings:TranslationEvaluation",
        ),
        TaskSpec(
            name="lm",
            description="causal language modelling, the English Bible; perplexity",
            datasets=("bible_en",),
            task_class="growprune.tasks.lm.task:LMTask",
            done_text="test perplexity {test_ppl:.2f} (valid {valid_ppl:.2f})",
            summary=(
                SummaryScore("final test perplexity", "test_ppl", ".2f"),
                SummaryScore("final validation perplexity", "valid_ppl", ".2f"),
                SummaryScore(
                    "best validation perplexity (any epoch)", "valid_neg_log_ppl", "perplexity", of="best"
                ),
            ),
            modules=("transformers", "tokenizers"),
            extra="lm",
            models={"llama": "growprune.tasks.lm.model:build_llama"},
            section="growprune.tasks.lm.report:lm_lines",
            evaluation="growprune.tasks.lm.settings:LMEvaluation",
        ),
        TaskSpec(
            name="detection",
            # coco: a COCO-format folder (data.root, else $GROWPRUNE_COCO); coco_shapes: the
            # generated set in that format, unless data.root names a folder to read instead.
            description="detection, COCO format; SSD, COCO mAP",
            datasets=("coco", "coco_shapes"),
            task_class="growprune.tasks.detection.task:DetectionTask",
            done_text="val mAP {val_map:.4f} (AP50 {val_map50:.4f}, AP75 {val_map75:.4f})",
            summary=(
                SummaryScore("final validation mAP@[.5:.95]", "val_map", ".4f"),
                SummaryScore("best validation mAP (any epoch)", "val_map", ".4f", of="best"),
            ),
            modules=("pycocotools", "PIL"),
            extra="detection",
            models={"ssd": "growprune.tasks.detection.model:SSD"},
            section="growprune.tasks.detection.report:detection_lines",
            evaluation="growprune.tasks.detection.settings:DetectionEvaluation",
        ),
        TaskSpec(
            name="partseg",
            description=(
                "3-D part segmentation, ShapeNet-Part layout: data.root, $GROWPRUNE_SHAPENET_PART, "
                "else generated"
            ),
            datasets=("shapenet_part",),
            task_class="growprune.tasks.partseg.task:PartSegTask",
            done_text="test mIoU {test_instance_miou:.4f} (class average {test_class_miou:.4f})",
            summary=(
                SummaryScore("final test mIoU (instance avg.)", "test_instance_miou", "percent"),
                SummaryScore("final test mIoU (class avg.)", "test_class_miou", "percent"),
                SummaryScore(
                    "best validation mIoU (instance avg., any epoch)",
                    "val_instance_miou",
                    "percent",
                    of="best",
                ),
            ),
            models={"pointnet2_partseg": "growprune.tasks.partseg.model:PointNet2PartSeg"},
        ),
    )
}
FALLBACK_TASK = "classification"  # the task of every dataset no other task names (it says "unknown")


def task_named(name: str) -> TaskSpec:
    """The registered task `name`; a ValueError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def task_for_dataset(dataset: str) -> TaskSpec:
    """The task a recipe's ``data.name`` trains."""
    for spec in TASKS.values():
        if dataset in spec.datasets:
            return spec
    return TASKS[FALLBACK_TASK]


def task_models() -> dict[str, Callable[[], Any]]:
    """The built-in models of every task: name -> a function importing and returning its builder."""
    return {
        name: (lambda reference=reference: _resolve(reference))
        for spec in TASKS.values()
        for name, reference in spec.models.items()
    }


def bundled_recipes() -> dict[str, Path]:
    """The bundled recipes by name (``fmnist/cgap-quick``): each task's ``recipes/<group>/*.yaml``.

    Package data of each task's folder, so they ship in the wheel; a name two tasks give is refused.
    """
    found = {}
    for spec in TASKS.values():
        folder = spec.folder / "recipes"
        for path in sorted(folder.glob("**/*.yaml")):
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in found:
                raise ValueError(f"bundled recipe {name!r} is in two task folders: {found[name]} and {path}")
            found[name] = path
    return dict(sorted(found.items()))
