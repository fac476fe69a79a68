"""growprune for the Hugging Face ``transformers.Trainer``: one callback.

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[SparsityCallback("cgap", sparsity=0.8, partitions=4)])

Needs ``pip install growprune[hf]`` (transformers and accelerate).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import torch

try:
    from transformers import TrainerCallback
except ImportError as error:  # exercised by tests/integrations/test_imports.py in a subprocess
    raise ImportError(
        "growprune.integrations.huggingface needs transformers and accelerate: pip install growprune[hf]"
    ) from error

from growprune.files import atomic_torch_save
from growprune.integrations._common import SparseCallback

STATE_FILE = "growprune_sparsifier.pt"


class SparsityCallback(TrainerCallback, SparseCallback):
    """Sparse training in a ``transformers.Trainer``: ``SparsityCallback("cgap", sparsity=0.8)``.

    `method` is a growprune method name (``"cgap"``, ``"gmp"``, ...) and `method_args` that
    method's arguments; schedule lengths may be optimizer steps (int) or fractions of the run
    (float in [0, 1]) and default to shares of the Trainer's ``max_steps`` (see
    :mod:`growprune.integrations.schedule`). Unknown names or arguments fail here, before training.

    * **Built in** ``on_train_begin``, from the Trainer's model, its (accelerate-wrapped)
      optimizer and ``state.max_steps`` -- the first moment all three exist, and after the
      Trainer has restored model and optimizer from a checkpoint. Then ``.sparsifier`` is the
      :class:`~growprune.Sparsifier`. Nothing has to run per step: the sparsifier works in hooks on
      the torch optimizer, so it counts optimizer steps (not batches: gradient accumulation is
      fine) and steps that GradScaler skipped are not counted.
    * **Logs** ``sparsity`` and ``sparsity_phase`` with every Trainer log (console,
      ``state.log_history`` and the ``report_to`` integrations, for which this callback moves
      itself to the front of the Trainer's callback list).
    * **Checkpoints**: ``on_save`` writes the sparsifier state (masks, schedule position, method
      state) as ``growprune_sparsifier.pt`` into the checkpoint folder the Trainer has just written,
      ``<output_dir>/checkpoint-<global_step>``. ``trainer.train(resume_from_checkpoint=...)``
      (a path or True) restores it, so the resumed run ends exactly as the uninterrupted one.
      The folder being resumed is read from the Trainer's training loop; if it cannot be found,
      pass it as ``resume_from=``.
    * **Masks are not in the model's state_dict** (``persistent_masks=False``): the Trainer loads
      checkpoints into a fresh model (which has no ``*_mask`` buffers yet) with ``strict=False``
      and would warn about unexpected keys, and ``save_pretrained`` / ``from_pretrained`` would
      carry mask tensors that no model class expects. Pruned weights are exact zeros in every
      saved model, and the masks travel in ``growprune_sparsifier.pt``.
    * **Export**: ``callback.export("model.safetensors")`` after ``trainer.train()`` writes the
      sparse file (masks + kept values) with :func:`growprune.export_model`.
    """

    trained_by = "trainer.train()"  # export() before it is an error

    def __init__(self, method: str, *, resume_from: str | os.PathLike[str] | None = None, **method_args: Any):
        SparseCallback.__init__(self, method, method_args)
        self.resume_from = resume_from
        self._warned_save = False
        self._run_dir: str | None = None  # where the Trainer writes checkpoint-<step> folders

    # -- building ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if model is None or optimizer is None:
            raise RuntimeError("SparsityCallback: the Trainer passed no model or optimizer to on_train_begin")
        trainer, resumed_path, trial = _find_trainer()
        self._run_dir = _run_dir(trainer, trial, args)
        saved = None
        if state.global_step > 0:  # the Trainer restored a checkpoint's TrainerState
            folder = self._resume_folder(args, state.global_step, resumed_path)
            saved = _load_saved_state(folder, state.global_step)
        self._build(model, optimizer, state.max_steps, saved, "the Trainer's max_steps / num_train_epochs")
        if trainer is not None:
            _move_to_front(trainer, self)

    def _resume_folder(self, args: Any, global_step: int, resumed_path: Any) -> str:
        if self.resume_from is not None:
            return os.fspath(self.resume_from)
        if isinstance(resumed_path, (str, os.PathLike)):
            return os.fspath(resumed_path)
        if isinstance(args.resume_from_checkpoint, str):
            return args.resume_from_checkpoint
        return os.path.join(args.output_dir, f"checkpoint-{global_step}")

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sparsifier is None:
            return
        # FSDP2: gathering the masks is a collective, so every rank makes the state; rank 0 saves it
        saved = self.sparsifier.state_dict() if self.sparsifier.sharded else None
        if not args.should_save:
            return
        folder = os.path.join(self._run_dir or args.output_dir, f"checkpoint-{state.global_step}")
        if not os.path.isdir(folder):
            if not self._warned_save:
                warnings.warn(
                    f"SparsityCallback: no checkpoint folder {folder} to store the sparsifier state in; "
                    "resuming from these checkpoints will fail",
                    stacklevel=2,
                )
                self._warned_save = True
            return
        path = os.path.join(folder, STATE_FILE)
        if saved is None:
            saved = self.sparsifier.state_dict()
        payload = {"global_step": state.global_step, "sparsifier": saved}
        atomic_torch_save(payload, path)  # a kill mid-write leaves the old file, never half a new one

    # -- logging -------------------------------------------------------------------------------
    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any
    ):
        if self.sparsifier is None or logs is None:
            return
        extra = {
            "sparsity": round(self._probe(self.sparsifier), 6),
            "sparsity_phase": str(self.sparsifier.phase),
        }
        logs.update(extra)  # type: ignore[attr-defined]  (the Trainer passes a dict)
        if state.log_history:  # Trainer.log appended a copy of `logs` just before calling us
            state.log_history[-1].update(extra)


def _find_trainer() -> tuple[Any, Any, Any]:
    """The Trainer running this callback, the checkpoint it resumes from (None if not resuming)
    and its hyperparameter-search trial (None outside a search).

    Callbacks are given none of them; all are locals of ``Trainer._inner_training_loop``, which
    calls ``on_train_begin`` (``train(resume_from_checkpoint=True)`` is already resolved to a
    folder there). Returns Nones if that frame is not found (a Trainer subclass that replaces the
    loop): then the resumed folder is ``<output_dir>/checkpoint-<global_step>``.
    """
    from transformers import Trainer

    frame = sys._getframe(1)
    try:
        while frame is not None:
            if frame.f_code.co_name == "_inner_training_loop":
                local = frame.f_locals
                if isinstance(local.get("self"), Trainer) and "resume_from_checkpoint" in local:
                    return local["self"], local["resume_from_checkpoint"], local.get("trial")
            frame = frame.f_back
        return None, None, None
    finally:
        del frame


def _run_dir(trainer: Any, trial: Any, args: Any) -> str:
    """The folder the Trainer puts ``checkpoint-<step>`` in: ``output_dir``, or a per-trial
    folder under it in a hyperparameter search (``Trainer._save_checkpoint`` does the same)."""
    try:
        return str(trainer._get_output_dir(trial=trial))
    except Exception:  # no Trainer found, or a version without this method
        return str(args.output_dir)


def _load_saved_state(folder: str, global_step: int) -> dict[str, Any]:
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"resuming at global step {global_step}, but {folder} holds no growprune sparsifier state "
            f"({STATE_FILE}): it was saved without SparsityCallback or is not the folder being resumed; "
            f"pass that folder as SparsityCallback(..., resume_from='<output_dir>/checkpoint-{global_step}')"
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("global_step") != global_step:
        raise ValueError(
            f"{path} holds the sparsifier of global step {payload.get('global_step')}, but the Trainer "
            f"resumed at step {global_step}; pass the folder being resumed as "
            "SparsityCallback(..., resume_from=...)"
        )
    return payload["sparsifier"]


def _move_to_front(trainer: Any, callback: SparsityCallback) -> None:
    """Run before the ``report_to`` integrations (added before user callbacks), so the sparsity
    this callback adds to ``logs`` reaches TensorBoard, W&B, ... A new list, so the loop over the
    old one in progress (this very event) is not disturbed."""
    handler = getattr(trainer, "callback_handler", None)
    callbacks = getattr(handler, "callbacks", None)
    if isinstance(callbacks, list) and any(c is callback for c in callbacks):
        handler.callbacks = [callback, *(c for c in callbacks if c is not callback)]


__all__ = ["STATE_FILE", "SparsityCallback"]
