"""Recipes: one YAML file describes a whole run, validated before any training starts.

Schedules are written in epochs, because that is how papers state them and how people think
about a run; they become optimizer steps only once the loader length is known
(:mod:`growprune.train.schedule`). Validation is strict: an unknown key is far more often a typo
that would silently fall back to a default than a deliberate extra, so it is an error with a
"did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from growprune.bounded import read_bytes
from growprune.errors import UsageError
from growprune.methods import METHODS, Sparsifier, get_method
from growprune.methods.settings import MethodSettings, RunLength
from growprune.sparsity.distribution import NAMED_DISTRIBUTIONS, validate_sparsity
from growprune.sparsity.patterns import parse_pattern
from growprune.tasks.registry import FALLBACK_TASK, TASKS, task_for_dataset, task_named


class RecipeError(UsageError, ValueError):
    """A recipe that cannot be run; the message is one line naming the key and the fix."""


class Section(BaseModel):
    """A recipe section: unknown keys, infinities and NaNs are refused, and so is a yes/no value
    where a number or a name is expected (``partitions: true`` used to become K=1)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation):
                    raise ValueError(
                        f"{key} is {str(value).lower()}, a yes/no value, but it takes {_kind(field)}"
                    )
        return data


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_accepts_bool(arg) for arg in typing.get_args(annotation))


def _kind(field: Any) -> str:
    """What a field takes, in a user's words (for the message refusing a yes/no value)."""
    words = {int: "a whole number", float: "a number", str: "a name", list: "a list", dict: "a mapping"}
    found: list[str] = []

    def visit(annotation: Any) -> None:
        origin = typing.get_origin(annotation)
        word = words.get(annotation) or words.get(origin)  # type: ignore[call-overload]
        if word is not None:
            found.append(word)
        elif origin is not None and origin not in (list, dict, tuple):
            for arg in typing.get_args(annotation):
                visit(arg)
        elif origin is tuple:
            found.append("a list of numbers")

    visit(field.annotation)
    return " or ".join(dict.fromkeys(found)) or str(field.annotation)


class DataConfig(Section):
    name: str = "fashion_mnist"
    data_dir: str | None = None
    root: str | None = Field(
        None, description="a dataset's own folder, read in place (ShapeNet-Part, COCO-format detection)"
    )
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
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    no_decay_norm_bias: bool = True


class ScheduleConfig(Section):
    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    restart_per_phase: bool = False


CORE_KEYS = ("sparsity", "distribution", "pattern", "targets", "exclude", "allow_empty_layers", "storage")


class MethodBase(Section):
    """The keys every method shares; each method's section adds ``name`` and its own settings."""

    name: str

    sparsity: float = 0.8
    distribution: str | dict[str, float] = "uniform"
    pattern: str = "unstructured"
    targets: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    allow_empty_layers: bool = Field(False, description="accept a sparsity that prunes a whole layer")
    storage: Literal["masked", "compact"] = Field(
        "masked", description="compact: pruned layers hold their kept values only (less memory than dense)"
    )

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


def _settings_fields(settings: type[MethodSettings]) -> dict[str, Any]:
    """pydantic field definitions of a method's settings dataclass (bounds from field metadata)."""
    hints = typing.get_type_hints(settings)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(settings):
        if item.default is not dataclasses.MISSING:
            info = Field(item.default, **item.metadata)
        elif item.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=item.default_factory, **item.metadata)
        else:
            info = Field(..., **item.metadata)
        fields[item.name] = (hints[item.name], info)
    return fields


@functools.cache
def method_config(cls: type[Sparsifier]) -> type[MethodBase]:
    """The recipe section of a method: the shared keys, ``name``, and the method's own settings."""
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{cls.__name__}Recipe",
        __base__=MethodBase,
        __doc__=f"Recipe keys of {cls.title}.",
        name=(Literal[cls.method], ...),  # type: ignore[valid-type]
        **_settings_fields(cls.settings),
    )


def method_configs() -> dict[str, type[MethodBase]]:
    """Recipe section of every registered method, by name (registering a method adds one)."""
    return {name: method_config(cls) for name, cls in sorted(METHODS.items())}


def method_settings(config: MethodBase) -> Any:
    """The method's settings dataclass filled from a validated recipe section."""
    settings = get_method(config.name).settings
    return settings(**{f.name: getattr(config, f.name) for f in dataclasses.fields(settings)})


def sparsifier_arguments(config: MethodBase, run: RunLength, seed: int) -> dict[str, Any]:
    """Constructor keyword arguments of a recipe's method: the shared keys, then the method's own."""
    kwargs: dict[str, Any] = {key: getattr(config, key) for key in CORE_KEYS}
    kwargs["exclude"] = kwargs["exclude"] or None
    kwargs["seed"] = seed
    if config.pattern != "unstructured":
        kwargs["sparsity"] = None if "sparsity" not in config.model_fields_set else config.sparsity
    return {**kwargs, **get_method(config.name).arguments_from(method_settings(config), run)}


class TrainingConfig(Section):
    epochs: float | None = Field(None, gt=0, description="GaP derives it from its schedule")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    seed: int = Field(0, ge=0, lt=2**63, description="what torch.manual_seed takes")
    device: str = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    deterministic: bool = False
    log_every: int = Field(50, ge=1)
    threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: forward and loss under bfloat16 autocast (weights, gradients and optimizer "
        "state stay fp32)",
    )
    channels_last: bool = Field(False, description="convolution (4-D) weights in channels-last layout")
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="under torchrun: ddp keeps a whole model on every rank; fsdp shards it (FSDP2: each "
        "rank holds its rows of every weight, gradient, optimizer state and mask)",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not re.fullmatch(r"cuda:\d+", value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N (N a GPU index) or mps, got {value!r}")
        return value


class OutputConfig(Section):
    dir: str | None = None
    checkpoint_every_steps: int | None = Field(None, ge=1)
    checkpoint_every_minutes: float | None = Field(10.0, gt=0)
    keep_last: int = Field(3, ge=1)
    tensorboard: bool = True
    report: bool = True


class Recipe(Section):
    # The name becomes part of the default run directory: one path component, no separators.
    name: str = Field("run", pattern=r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$", max_length=100)
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    method: MethodBase  # validated as the registered method's own section (see recipe_model)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # validated as the recipe's task's own keys (its registry entry's `evaluation`, see recipe_model)
    evaluation: Section = Field(default_factory=Section)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _epochs(self) -> Recipe:
        method = self.method
        derived = get_method(method.name).schedule_epochs(method_settings(method))
        if derived is not None:
            if self.training.epochs is not None and abs(self.training.epochs - derived) > 1e-9:
                raise ValueError(
                    f"training.epochs ({self.training.epochs:g}) != the {method.name} schedule's {derived:g} "
                    "epochs (phases x epochs_per_phase + finetune_epochs); drop training.epochs or fix it"
                )
            self.training.epochs = derived
        elif self.training.epochs is None:
            raise ValueError(f"training.epochs is required for method '{method.name}'")
        return self


def recipe_model(task: str = FALLBACK_TASK) -> type[Recipe]:
    """The validating recipe model for the methods registered now and the recipe's task.

    Built on demand rather than once at import, so a method registered later (by a third party,
    with ``growprune.register_method``) is a valid ``method.name`` in recipes; its
    ``evaluation:`` section takes the keys the task declares (``TaskSpec.evaluation``).
    """
    configs = tuple(method_configs().values())
    return _recipe_model(configs, evaluation_config(task))


def evaluation_config(task: str) -> type[Section]:
    """The ``evaluation:`` section of task `task`: the keys of its evaluation dataclass."""
    spec = task_named(task)
    return _evaluation_config(spec.name, spec.evaluation_settings())


@functools.cache
def _evaluation_config(task: str, settings: type | None) -> type[Section]:
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{task.title()}Evaluation",
        __base__=Section,
        __doc__=f"The {task} task's evaluation keys.",
        **(_settings_fields(settings) if settings is not None else {}),
    )


def evaluation_settings(recipe: Recipe) -> Any:
    """The recipe's evaluation section as its task's own settings dataclass (None if it takes none)."""
    settings = task_for_dataset(recipe.data.name).evaluation_settings()
    if settings is None:
        return None
    return settings(**{f.name: getattr(recipe.evaluation, f.name) for f in dataclasses.fields(settings)})


def _recipe_task(data: dict[str, Any]) -> str:
    """The task a raw recipe trains (by its data.name, before validation: it picks the model)."""
    section = data.get("data")
    name = section.get("name") if isinstance(section, dict) else None
    return task_for_dataset(name if isinstance(name, str) else DataConfig().name).name


def _drop_other_tasks_keys(data: dict[str, Any], task: str) -> None:
    """Evaluation keys another task declares, in a recipe of `task`: recipes and runs written before
    each task declared its own keys had every task's keys; they are ignored, with a warning."""
    section = data.get("evaluation")
    if not isinstance(section, dict):
        return
    own = evaluation_config(task).model_fields
    owners: dict[str, list[str]] = {}
    for spec in TASKS.values():
        for key in evaluation_config(spec.name).model_fields:
            owners.setdefault(key, []).append(spec.name)
    others = sorted(key for key in section if key not in own and key in owners)
    if others:
        named = ", ".join(f"{key} ({', '.join(owners[key])})" for key in others)
        warnings.warn(
            f"evaluation: {named} belong to other tasks' evaluation; a {task} recipe ignores them",
            stacklevel=3,
        )
        for key in others:
            del section[key]


@functools.cache
def _recipe_model(configs: tuple[type[MethodBase], ...], evaluation: type[Section]) -> type[Recipe]:
    union = configs[0] if len(configs) == 1 else typing.Union[configs]  # noqa: UP007
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Recipe",
        __base__=Recipe,
        method=(Annotated[union, Field(discriminator="name")], ...),
        evaluation=(evaluation, Field(default_factory=evaluation)),
    )


# -- loading, overrides, error formatting ----------------------------------------------------
def _allowed_fields(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model else []


def _section_model(loc: tuple[Any, ...], data: dict[str, Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (for did-you-mean suggestions)."""
    configs = method_configs()
    model: type[BaseModel] | None = recipe_model(_recipe_task(data))
    for part in loc[:-1]:
        if model is None:
            return None
        if part == "method":
            name = data.get("method", {}).get("name") if isinstance(data.get("method"), dict) else None
            model = configs.get(str(name))
            continue
        if part in configs:  # discriminator tag in the error location
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
    configs = method_configs()
    loc = tuple(p for p in first["loc"] if (p not in configs or p == "method") and not _is_type_tag(p))
    path = ".".join(str(p) for p in loc) or "recipe"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(_section_model(loc, data))
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key '{path}'{suggestion} (allowed here: {', '.join(allowed)})"
    if kind == "union_tag_invalid" or (kind == "union_tag_not_found" and "method" in loc):
        names = ", ".join(sorted(configs))
        got = data.get("method", {}).get("name") if isinstance(data.get("method"), dict) else None
        hint = difflib.get_close_matches(str(got), list(configs), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"method.name: unknown method {got!r}{suggestion} (allowed: {names})"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict) or kind == "missing" or "got" in message else f" (got {got!r})"
    return f"{path}: {message}{shown}"


class RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader, except that ``2:4`` stays the text it looks like.

    YAML 1.1 reads digits joined by colons as base-60 numbers, so an unquoted ``pattern: 2:4``
    arrived as the integer 124. No recipe key takes a base-60 number; N:M patterns are common.
    """


def _number_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if isinstance(value, str) and ":" in value:
        return value
    if node.tag.endswith(":int"):
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


RecipeLoader.add_constructor("tag:yaml.org,2002:int", _number_or_text)
RecipeLoader.add_constructor("tag:yaml.org,2002:float", _number_or_text)


# No recipe section is more than a few levels deep; a file nested far deeper is not a recipe (and
# 100k levels would exhaust Python's recursion while it is parsed or validated).
MAX_DEPTH = 32


def _check_shape(data: Any, where: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and a seed that is not a whole number, anywhere.

    Seeds (keys ``seed`` or ``*_seed``, in any section) are integers: 1.5 or true used to be
    truncated or read as 1 on the way to the random generators.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RecipeError(
                f"{where} nests more than {MAX_DEPTH} levels deep (at {path or 'the top'}); a recipe is a "
                "mapping of a few sections: check the brackets"
            )
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            child = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
            is_seed = isinstance(key, str) and (key == "seed" or key.endswith("_seed"))
            if is_seed and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                shown = str(value).lower() if isinstance(value, bool) else repr(value)
                raise RecipeError(
                    f"{child} is {shown} in {where}: seeds must be whole numbers (integers), e.g. 0 or 1234"
                )
            if isinstance(value, dict | list):
                stack.append((value, child, depth + 1))


def read_yaml(text: str) -> Any:
    """Parse recipe YAML (a file or a ``--set`` value) with :class:`RecipeLoader`."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - RecipeLoader is a SafeLoader


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {getattr(err, 'problem', None) or err}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.path=value` with the value parsed as YAML (so 0.9, true, [1, 2] keep their types)."""
    if "=" not in text:
        raise RecipeError(f"--set expects key=value (e.g. method.sparsity=0.9), got '{text}'")
    key, _, raw = text.partition("=")
    if not key.strip():
        raise RecipeError(f"--set expects key=value, got '{text}'")
    if not raw.strip():
        return key.strip().split("."), None
    try:
        value = read_yaml(raw)
    except RecursionError:
        raise RecipeError(
            f"--set {key.strip()}=...: the value nests more than {MAX_DEPTH} levels deep; check the brackets"
        ) from None
    except yaml.YAMLError as err:
        raise RecipeError(
            f"--set {text}: the value is not valid YAML{_yaml_problem(err)}; quote it (e.g. --set "
            f"'{key.strip()}=\"...\"') if it is text, or fix the brackets of a list"
        ) from None
    if any(part == "" for part in key.strip().split(".")):
        raise RecipeError(f"--set {text}: '{key.strip()}' is not a key path (e.g. method.sparsity)")
    return key.strip().split("."), value


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


# Far above any recipe (the bundled ones are under 4 kB); a file past it was given by mistake.
MAX_RECIPE_BYTES = 16 * 2**20


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not os.path.lexists(file):
        raise RecipeError(f"recipe file not found: {file} (bundled recipes: growprune list)")
    # A FIFO, a link to /dev/zero, a directory or a 3 GB file given by mistake is named for what
    # it is, before anything is read (and never read whole).
    data = read_bytes(
        file,
        max_bytes=MAX_RECIPE_BYTES,
        fail=lambda where, why: RecipeError(f"recipe {where} {why}"),
        missing="does not exist (bundled recipes: growprune list)",
        what="a recipe",
    )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {file} is not a text file (a recipe is YAML in UTF-8)") from None
    if "\x00" in text:
        raise RecipeError(f"recipe {file} is not a text file (a recipe is YAML in UTF-8)")
    try:
        data = read_yaml(text)
    except RecursionError:
        raise RecipeError(
            f"recipe {file} nests more than {MAX_DEPTH} levels deep; a recipe is a mapping of a few "
            "sections: check the brackets"
        ) from None
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {file} is not valid YAML{_yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {file} must be a YAML mapping with sections data, model, method, ...")
    return data


def validate_recipe(data: dict[str, Any], where: str = "the recipe") -> Recipe:
    _check_shape(data, where)
    task = _recipe_task(data)
    _drop_other_tasks_keys(data, task)
    try:
        return recipe_model(task).model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, data)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`--set a.b=c`) and validate a recipe."""
    return validate_recipe(apply_overrides(read_recipe_file(path), overrides or []), f"recipe {path}")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
