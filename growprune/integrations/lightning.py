"""growprune for Lightning: one callback.

    trainer = L.Trainer(max_epochs=10, callbacks=[SparsityCallback("cgap", sparsity=0.8, partitions=4)])

Needs ``pip install growprune[lightning]`` (``lightning``; the older ``pytorch_lightning`` package
is used when ``lightning`` is not installed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.utilities import rank_zero_info
except ImportError:
    try:
        from pytorch_lightning import Callback  # type: ignore[no-redef]
        from pytorch_lightning.utilities import rank_zero_info  # type: ignore[no-redef]
    except ImportError as error:  # exercised by tests/integrations/test_imports.py in a subprocess
        raise ImportError(
            "growprune.integrations.lightning needs Lightning: pip install growprune[lightning]"
        ) from error

from growprune.integrations._common import SparseCallback


class SparsityCallback(Callback, SparseCallback):
    """Sparse training in Lightning's ``Trainer``: ``SparsityCallback("cgap", sparsity=0.8)``.

    `method` is a growprune method name (``"cgap"``, ``"gmp"``, ...) and `method_args` that
    method's arguments; schedule lengths may be optimizer steps (int) or fractions of the run
    (float in [0, 1]) and default to shares of ``trainer.estimated_stepping_batches`` (see
    :mod:`growprune.integrations.schedule`). Unknown names or arguments fail here, before training.

    * **Built in** ``on_train_start``: Lightning restores the model and the callbacks' states
      from ``ckpt_path``, then creates the optimizer, then restores its state and the loops, then
      starts training -- ``on_train_start`` is the first hook after all of that. Then
      ``.sparsifier`` is the :class:`~growprune.Sparsifier`. Nothing runs per step: the sparsifier
      works in hooks on the torch optimizer, so automatic optimization (``optimizer.step(closure)``:
      gradients are masked right after the closure's backward), manual optimization and
      ``accumulate_grad_batches`` all count optimizer steps, and pruned weights are zero after
      every step.
    * **Logs** ``sparsity`` with ``pl_module.log`` (progress bar and logger) every batch, and each
      phase change ("round 1/2, partition 3/4 dense", "finetune", ...) as an info message.
    * **Checkpoints**: :meth:`state_dict` / :meth:`load_state_dict` carry the sparsifier state
      (masks, schedule position, method state) in Lightning's checkpoints, so
      ``Trainer.fit(ckpt_path=...)`` resumes exactly.
    * **Masks are not in the module's state_dict** (``persistent_masks=False``), so a fresh
      ``LightningModule`` loads the checkpoint (strictly, as Lightning does) without "Unexpected
      key(s) ... _mask"; pruned weights are exact zeros in it and the masks travel in this
      callback's state.
    * **Export**: ``callback.export("model.safetensors")`` after ``trainer.fit()`` writes the
      sparse file (masks + kept values) with :func:`growprune.export_model`.
    """

    trained_by = "trainer.fit()"  # export() before it is an error

    def __init__(self, method: str, **method_args: Any) -> None:
        SparseCallback.__init__(self, method, method_args)
        self._saved: Mapping[str, Any] | None = None  # loaded from a checkpoint, used at build
        self._last_phase = ""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(
                "SparsityCallback needs exactly one optimizer, the LightningModule configured "
                f"{len(optimizers)}"
            )
        state = self._saved
        if state is None and self.sparsifier is not None and trainer.global_step > 0:
            state = self.sparsifier.state_dict()  # fit() again on the same model: carry on
        if state is None and trainer.global_step > 0:
            raise ValueError(
                f"resuming at global step {trainer.global_step} from a checkpoint without growprune "
                "sparsifier state: it was saved without SparsityCallback, or with another callback "
                "state_key; resume from a checkpoint saved with this callback"
            )
        self._build(
            pl_module,
            optimizers[0],
            trainer.estimated_stepping_batches,
            state,
            "trainer.estimated_stepping_batches (max_steps / max_epochs, batches, accumulate_grad_batches)",
        )
        self._saved = None
        self._last_phase = ""
        self._report_phase()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.sparsifier is None:
            return
        pl_module.log(
            "sparsity",
            self._probe(self.sparsifier),
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            batch_size=1,
        )
        self._report_phase()

    def _report_phase(self) -> None:
        assert self.sparsifier is not None
        phase = str(self.sparsifier.phase)
        if phase != self._last_phase:
            rank_zero_info(
                f"growprune {self.method}: optimizer step {self.sparsifier.step_count}: {phase}, "
                f"sparsity {self._probe(self.sparsifier):.4f}"
            )
            self._last_phase = phase

    def state_dict(self) -> dict[str, Any]:
        if self.sparsifier is not None:
            return {"sparsifier": self.sparsifier.state_dict()}
        return {"sparsifier": self._saved} if self._saved is not None else {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._saved = state_dict.get("sparsifier")


__all__ = ["SparsityCallback"]
