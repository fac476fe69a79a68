"""Use growprune inside other people's training loops.

* :mod:`growprune.integrations.huggingface` -- ``SparsityCallback`` for ``transformers.Trainer``
  (``pip install growprune[hf]``);
* :mod:`growprune.integrations.lightning` -- ``SparsityCallback`` for Lightning's ``Trainer``
  (``pip install growprune[lightning]``);
* :mod:`growprune.integrations.schedule` -- schedule lengths in steps or fractions of the run.

Importing this package imports neither transformers nor Lightning; each submodule imports its
framework when it is imported itself.
"""

from __future__ import annotations

from growprune.integrations.schedule import check_arguments, defaults_table, method_arguments, schedule_kwargs

__all__ = ["check_arguments", "defaults_table", "method_arguments", "schedule_kwargs"]
