"""Models by name, so configs and the CLI can say ``model: resnet20``.

Keyword arguments are checked against the constructor's signature before building, so a typo
in a config names the bad key (and lists the good ones) instead of failing deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from growprune.models.cnn import SmallCNN
from growprune.models.mlp import MLP
from growprune.models.resnet_cifar import resnet20, resnet32, resnet56
from growprune.models.resnet_imagenet import resnet50
from growprune.models.transformer import Seq2SeqTransformer

__all__ = ["build_model", "list_models", "model_builder"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet50": resnet50,
    "transformer": Seq2SeqTransformer,
}


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
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(list_models())}")
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    allowed = [p for p, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)} for model {name!r}; accepted: {', '.join(allowed)}"
        )
    return builder(**kwargs)
