"""Models by name, so configs and the CLI can say ``model: resnet20``.

Keyword arguments are checked against the constructor's signature before building, so a typo
in a config names the bad key (and lists the good ones) instead of failing deep inside.
:func:`register_model` adds a model of your own: recipes can then name it, and
``growprune.load`` can rebuild an exported file that records it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from growprune.models.cnn import SmallCNN
from growprune.models.mlp import MLP
from growprune.models.pointnet2 import PointNet2PartSeg
from growprune.models.resnet_cifar import resnet20, resnet32, resnet56
from growprune.models.resnet_imagenet import resnet50
from growprune.models.ssd import SSD
from growprune.models.transformer import Seq2SeqTransformer

__all__ = ["build_model", "list_models", "model_builder", "register_model"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet50": resnet50,
    "transformer": Seq2SeqTransformer,
    "ssd": SSD,
    "pointnet2_partseg": PointNet2PartSeg,
}


def register_model(name: str, builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Make ``builder`` (a class or function returning an ``nn.Module``) buildable as ``name``.

    Afterwards ``build_model(name, **kwargs)`` calls ``builder(**kwargs)``, a recipe's
    ``model.name`` may be ``name``, and an export that records ``name`` can be loaded with
    ``growprune.load(path)`` in any process that registered it first. Registering a name again
    replaces its builder. Returns ``builder``.

    Raises:
        ValueError: ``name`` is empty or ``builder`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder for model {name!r} must be callable, got {type(builder).__name__}")
    _BUILDERS[name] = builder
    return builder


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_BUILDERS)


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The constructor behind ``name``, e.g. to read which arguments it accepts."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(list_models())}")
    return _BUILDERS[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names), or an invalid
            value that the constructor rejects.
        TypeError: a keyword the constructor does not take (the message names it).
    """
    builder = model_builder(name)
    params = inspect.signature(builder).parameters
    allowed = [p for p, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)} for model {name!r}; accepted: {', '.join(allowed)}"
        )
    return builder(**kwargs)
