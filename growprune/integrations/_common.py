"""What the framework callbacks share: argument checks at construction, building the sparsifier
when the run's length is known, the export, and a cheap sparsity value for logging."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from growprune.integrations.schedule import check_arguments, schedule_kwargs
from growprune.methods import get_method
from growprune.methods.base import Sparsifier
from growprune.methods.errors import SparsifierError, SparsifierStateError


def check_callback_arguments(method: str, method_args: Mapping[str, Any]) -> None:
    """Everything that can be checked before the model and the run's length are known."""
    check_arguments(method, method_args)
    cls = get_method(method)
    if cls.loop == "rounds" and method_args.get("merger") is None:
        # Workers that merge after every round: one framework trainer process cannot play them all.
        raise ValueError(
            f"{cls.method} trains K workers that merge after every round, which one trainer process cannot "
            f"do alone: pass merger=... (called at each round's end, see growprune.{cls.__name__}), or use "
            "'cgap'"
        )


class SparseCallback:
    """What each framework's callback class shares (a mixin): the method and its arguments, checked
    at construction; the sparsifier, built when training starts and rebuilt when it starts again;
    the logging probe; the one-call export.

    ``trained_by`` names the call after which the model is trained, for the error raised before
    it (the callbacks build their sparsifier only when training starts).
    """

    sparsifier: Sparsifier | None
    trained_by: str = "training"

    def __init__(self, method: str, method_args: Mapping[str, Any]) -> None:
        check_callback_arguments(method, method_args)
        self.method = method
        self.method_args = dict(method_args)
        self.sparsifier = None
        self._probe = SparsityProbe()

    def _build(
        self,
        model: Any,
        optimizer: Any,
        total_steps: Any,
        state: Mapping[str, Any] | None,
        length_source: str,
    ) -> Sparsifier:
        """The sparsifier for a run of `total_steps` optimizer steps (derived from `length_source`),
        resumed from `state` if given. The sparsifier of a previous training call on the same
        callback is removed first (its hooks would otherwise mask twice).

        Masks are not persistent: the framework's model checkpoints then load into fresh models
        (no unexpected ``*_mask`` keys) and ``save_pretrained`` writes only real weights; the masks
        travel in the sparsifier state the callback stores beside the checkpoint.
        """
        if self.sparsifier is not None:
            self.sparsifier.remove()
            self.sparsifier = None
        kwargs = schedule_kwargs(self.method, self.method_args, total_steps)
        cls = get_method(self.method)
        try:
            self.sparsifier = cls(model, optimizer, state=state, persistent_masks=False, **kwargs)
        except SparsifierStateError as error:
            if state is not None and "does not match" in str(error):
                raise SparsifierStateError(
                    f"{error}; the checkpoint was saved by a run with another schedule: the schedule is "
                    f"derived from {length_source} ({total_steps} optimizer steps now) and the callback's "
                    "arguments, so resume with the same ones"
                ) from None
            raise
        return self.sparsifier

    def export(
        self,
        out: str | os.PathLike[str],
        *,
        format: str = "sparse",
        dtype: str | torch.dtype = "fp32",
        model_name: str | None = None,
        model_args: Mapping[str, Any] | None = None,
    ) -> Any:
        """Export the trained model with :func:`growprune.export_model`, sparse by default: the
        pruned weights are stored as the sparsifier's masks plus kept values (the masks are not in
        the model's ``state_dict``, ``persistent_masks=False``, but export reads them from the
        modules). Returns the :class:`~growprune.export.writer.ExportSummary`;
        ``growprune.load(out, model=<a fresh model>)`` reads it back."""
        if self.sparsifier is None:
            raise SparsifierError(
                "SparsityCallback.export: there is no sparsifier yet (the callback builds it when "
                f"training starts); call export(...) after {self.trained_by}"
            )
        from growprune.export import export_model

        options = {"format": format, "dtype": dtype, "model_name": model_name, "model_args": model_args}
        return export_model(self.sparsifier.model, out, **options)


class SparsityProbe:
    """`current_sparsity()` recomputed only when a mask buffer changed (it sums every mask)."""

    def __init__(self) -> None:
        self._key: tuple[tuple[int, int], ...] | None = None
        self._value = 0.0

    def __call__(self, sparsifier: Sparsifier) -> float:
        key = tuple((id(m), m._version) for m in sparsifier.masks.values())
        if key != self._key:
            self._value = sparsifier.current_sparsity()
            self._key = key
        return self._value
