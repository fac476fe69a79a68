"""Model arguments are checked against the builder's annotations before it runs: a value of the
wrong kind (text or infinity where a whole number is expected) is a ValueError naming the
argument, never a comparison error or an overflow from deep inside the constructor."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from torch import nn

from growprune.models import build_model
from growprune.models.registry import _BUILDERS, check_model_args, register_model

# (model, arguments, fragment of the message; None: builds)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("small_cnn", {"width": math.inf}, "width is inf, not a whole number"),
    ("small_cnn", {"width": "wide"}, "width is 'wide', not a whole number"),
    ("small_cnn", {"width": 2.5}, "width is 2.5, not a whole number"),
    ("small_cnn", {"width": True}, "width is True, not a whole number"),
    ("small_cnn", {"width": 10**12}, "out of range"),
    ("small_cnn", {"channels_last": "yes"}, "channels_last is 'yes', not true or false"),
    ("resnet20", {"width": math.inf}, "width is inf, not a finite number"),
    ("resnet20", {"width": math.nan}, "not a finite number"),
    ("resnet20", {"width": "wide"}, "width is 'wide', not a number"),
    ("resnet20", {"width": 1e300}, "out of range"),
    ("mlp", {"hidden": [32, "wide"]}, "item 1 ('wide') is not a whole number"),
    ("mlp", {"hidden": "wide"}, "hidden is 'wide', not a list"),
    ("mlp", {"hidden": [math.inf]}, "not a whole number"),
    ("small_cnn", {"width": 8}, None),
    ("small_cnn", {"width": np.int64(8)}, None),
    ("resnet20", {"width": 0.25}, None),
    ("resnet20", {"width": 1}, None),
    ("mlp", {"in_features": 4, "hidden": (8,), "num_classes": 2}, None),
]


@pytest.mark.parametrize(("name", "kwargs", "fragment"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_arguments_are_checked_against_the_annotations(name: str, kwargs: dict, fragment: str | None) -> None:
    if fragment is None:
        assert isinstance(build_model(name, **kwargs), nn.Module)
        return
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        build_model(name, **kwargs)


def test_unannotated_or_unknown_annotations_are_not_checked() -> None:
    def builder(size, shape: SomethingUndefined = None) -> nn.Module:  # type: ignore[name-defined]  # noqa: F821
        return nn.Linear(int(size), 1)

    check_model_args(builder, {"size": "3", "shape": object()})
    register_model("unchecked-test-model", builder)
    try:
        assert isinstance(build_model("unchecked-test-model", size=3), nn.Module)
    finally:
        _BUILDERS.pop("unchecked-test-model")
