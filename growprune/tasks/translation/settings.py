"""The translation task's ``evaluation:`` keys: how the model is decoded and scored.

A plain dataclass with bounds in field metadata (as a method's settings), imported without torch
or tokenizers so a recipe is validated before the task's extras are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class TranslationEvaluation:
    beam_size: int = field(
        default=4, metadata={"ge": 1, "description": "beam width of the final test evaluation"}
    )
    length_penalty: float = field(default=0.6, metadata={"ge": 0, "description": "GNMT length penalty alpha"})
    epoch_sentences: int | None = field(
        default=500, metadata={"ge": 1, "description": "validation sentences decoded each epoch"}
    )
    examples: int = field(
        default=5, metadata={"ge": 0, "description": "test translations shown in the report"}
    )
