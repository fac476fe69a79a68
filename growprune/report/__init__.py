"""Reporting: what a model's weights and a run's records say, for people.

- :mod:`growprune.report.sparsity`: the sparsity report of a model (zeros counted in the weights).
- :mod:`growprune.report.timeline`: the schedule's phases as step segments, from typed records.
- :mod:`growprune.report.figures`: the figures of ``growprune report`` (matplotlib).
- :mod:`growprune.report.run`: ``growprune report RUN_DIR`` (report.md and the figures).
A task's own section of a run report (translation examples, detection figures) is the task's:
its registry entry names it (:mod:`growprune.tasks.registry`).

Only the sparsity report is imported here: ``import growprune`` imports this package, and the
run report needs matplotlib and yaml, which a user of the sparsifiers need not have.
"""

from __future__ import annotations

from growprune.report.sparsity import LayerSparsity, SparsityReport, sparsity_report

__all__ = ["LayerSparsity", "SparsityReport", "sparsity_report"]
