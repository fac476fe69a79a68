"""Recipes: one YAML file describes a whole run, validated before any training starts.

Schedules are written in epochs, because that is how papers state them and how people think
about a run; they become optimizer steps only once the loader length is known
(:mod:`growprune.train.schedule`). Validation is strict: an unknown key is far more often a typo
that would silently fall back to a default than a deliberate extra, so it is an error with a
"did you mean" hint.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from growprune.sparsity.distribution import NAMED_DISTRIBUTIONS, validate_sparsity
from growprune.sparsity.patterns import parse_pattern


class RecipeError(ValueError):
    """A recipe that cannot be run; the message is one line naming the key and the fix."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(Section):
    name: str = "fashion_mnist"
    data_dir: str | None = None
    random_crop: bool = False
    crop_padding: int = Field(2, ge=0, le=16)
    hflip: bool = False
    args: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(Section):
    name: str = "small_cnn"
    args: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    no_decay_norm_bias: bool = True


class ScheduleConfig(Section):
    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    restart_per_phase: bool = False


class MethodBase(Section):
    sparsity: float = 0.8
    distribution: str | dict[str, float] = "uniform"
    pattern: str = "unstructured"
    targets: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, value: float) -> float:
        return validate_sparsity(value)

    @field_validator("distribution")
    @classmethod
    def _distribution(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, str) and value not in NAMED_DISTRIBUTIONS:
            raise ValueError(f"must be one of {', '.join(NAMED_DISTRIBUTIONS)} or a mapping")
        if isinstance(value, dict):
            for key, layer in value.items():
                validate_sparsity(layer, key)
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        parse_pattern(value)
        return value


class DenseMethod(MethodBase):
    name: Literal["dense"]
    sparsity: float = 0.0


class OneShotMethod(MethodBase):
    name: Literal["oneshot"]
    prune_epoch: float = Field(0.0, ge=0)


class GMPMethod(MethodBase):
    name: Literal["gmp"]
    start_epoch: float = Field(0.0, ge=0)
    end_epoch: float = Field(..., ge=0)
    prune_every_epochs: float = Field(0.25, gt=0)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)


class SETMethod(MethodBase):
    name: Literal["set"]
    end_epoch: float | None = Field(None, gt=0, description="default: 75% of training")
    update_every_epochs: float = Field(0.25, gt=0)
    drop_fraction: float = Field(0.3, gt=0, le=1)
    decay: Literal["cosine", "constant"] = "cosine"


class RigLMethod(SETMethod):
    name: Literal["rigl"]  # type: ignore[assignment]


class ADMMMethod(MethodBase):
    name: Literal["admm"]
    pretrain_epochs: float = Field(0.0, ge=0)
    admm_epochs: float = Field(..., gt=0)
    rho: float = Field(1e-3, gt=0)
    update_every_epochs: float = Field(1.0, gt=0)


class GaPMethod(MethodBase):
    partitions: int | list[str | list[str]] = 4
    partition_mode: Literal["contiguous", "random"] = "contiguous"
    epochs_per_phase: float = Field(..., gt=0)
    rounds: int = Field(1, ge=1)
    finetune_epochs: float = Field(0.0, ge=0)
    reset_optimizer: Literal["all", "changed"] = "all"
    init: Literal["random", "magnitude"] = "random"

    @property
    def num_partitions(self) -> int:
        return self.partitions if isinstance(self.partitions, int) else len(self.partitions)

    @property
    def gap_phases(self) -> int:
        """Phases of `epochs_per_phase` one worker trains before fine-tuning."""
        return self.rounds * self.num_partitions

    @property
    def total_epochs(self) -> float:
        return self.gap_phases * self.epochs_per_phase + self.finetune_epochs


class CGaPMethod(GaPMethod):
    name: Literal["cgap"]


class PGaPMethod(GaPMethod):
    """Each round is one phase per worker: K workers train their partition in parallel."""

    name: Literal["pgap"]
    merge_non_partition: Literal["average", "group0"] = "average"
    reset_optimizer: Literal["all"] = "all"

    @property
    def gap_phases(self) -> int:
        return self.rounds


MethodConfig = Annotated[
    DenseMethod | OneShotMethod | GMPMethod | SETMethod | RigLMethod | ADMMMethod | CGaPMethod | PGaPMethod,
    Field(discriminator="name"),
]


class TrainingConfig(Section):
    epochs: float | None = Field(None, gt=0, description="GaP derives it from its schedule")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    deterministic: bool = False
    log_every: int = Field(50, ge=1)
    threads: int | None = Field(None, ge=1)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "mps") and not value.startswith("cuda"):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value


class EvaluationConfig(Section):
    """How a translation model is decoded and scored (classification ignores this section)."""

    beam_size: int = Field(4, ge=1, description="beam width of the final test evaluation")
    length_penalty: float = Field(0.6, ge=0, description="GNMT length penalty alpha")
    epoch_sentences: int | None = Field(500, ge=1, description="validation sentences decoded each epoch")
    examples: int = Field(5, ge=0, description="test translations shown in the report")


class OutputConfig(Section):
    dir: str | None = None
    checkpoint_every_steps: int | None = Field(None, ge=1)
    checkpoint_every_minutes: float | None = Field(10.0, gt=0)
    keep_last: int = Field(3, ge=1)
    tensorboard: bool = True
    report: bool = True


class Recipe(Section):
    name: str = "run"
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    method: MethodConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _epochs(self) -> Recipe:
        method = self.method
        if isinstance(method, GaPMethod):
            derived = method.total_epochs
            if self.training.epochs is not None and abs(self.training.epochs - derived) > 1e-9:
                raise ValueError(
                    f"training.epochs ({self.training.epochs:g}) != the GaP schedule's {derived:g} epochs "
                    "(phases x epochs_per_phase + finetune_epochs); drop training.epochs or fix it"
                )
            self.training.epochs = derived
        elif self.training.epochs is None:
            raise ValueError(f"training.epochs is required for method '{method.name}'")
        return self


# -- loading, overrides, error formatting ----------------------------------------------------
def _allowed_fields(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model else []


def _section_model(loc: tuple[Any, ...], data: dict[str, Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (for did-you-mean suggestions)."""
    model: type[BaseModel] | None = Recipe
    for part in loc[:-1]:
        if model is None:
            return None
        if part == "method":
            name = data.get("method", {}).get("name") if isinstance(data.get("method"), dict) else None
            model = METHOD_CONFIGS.get(str(name))
            continue
        if part in METHOD_CONFIGS:  # discriminator tag in the error location
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _is_type_tag(part: object) -> bool:
    """pydantic puts union member names (`int`, `list[str]`) in error locations; users never wrote them."""
    return isinstance(part, str) and (part in {"int", "str", "float", "bool"} or "[" in part)


def format_validation_error(error: ValidationError, data: dict[str, Any]) -> str:
    """One line: the first problem, its key path, and what is allowed."""
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if (p not in METHOD_CONFIGS or p == "method") and not _is_type_tag(p))
    path = ".".join(str(p) for p in loc) or "recipe"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(_section_model(loc, data))
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key '{path}'{suggestion} (allowed here: {', '.join(allowed)})"
    if kind == "union_tag_invalid" or (kind == "union_tag_not_found" and "method" in loc):
        names = ", ".join(sorted(METHOD_CONFIGS))
        got = data.get("method", {}).get("name") if isinstance(data.get("method"), dict) else None
        hint = difflib.get_close_matches(str(got), list(METHOD_CONFIGS), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"method.name: unknown method {got!r}{suggestion} (allowed: {names})"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict) or kind == "missing" or "got" in message else f" (got {got!r})"
    return f"{path}: {message}{shown}"


METHOD_CONFIGS: dict[str, type[MethodBase]] = {
    "dense": DenseMethod,
    "oneshot": OneShotMethod,
    "gmp": GMPMethod,
    "set": SETMethod,
    "rigl": RigLMethod,
    "admm": ADMMMethod,
    "cgap": CGaPMethod,
    "pgap": PGaPMethod,
}


def register_method_config(name: str, config: type[MethodBase]) -> None:
    """Let a method defined outside the core (e.g. P-GaP) be used in recipes."""
    METHOD_CONFIGS[name] = config


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.path=value` with the value parsed as YAML (so 0.9, true, [1, 2] keep their types)."""
    if "=" not in text:
        raise RecipeError(f"--set expects key=value (e.g. method.sparsity=0.9), got '{text}'")
    key, _, raw = text.partition("=")
    if not key.strip():
        raise RecipeError(f"--set expects key=value, got '{text}'")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {text}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise RecipeError(f"recipe file not found: {file} (bundled recipes: growprune list)")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe {file} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {file} must be a YAML mapping with sections data, model, method, ...")
    return data


def validate_recipe(data: dict[str, Any]) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, data)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`--set a.b=c`) and validate a recipe."""
    return validate_recipe(apply_overrides(read_recipe_file(path), overrides or []))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
