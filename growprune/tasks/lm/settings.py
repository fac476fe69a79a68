"""The language-modelling task's ``evaluation:`` keys (torch-free, validated like a method's settings)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class LMEvaluation:
    epoch_blocks: int | None = field(
        default=None,
        metadata={"ge": 1, "description": "validation blocks scored each epoch (all when unset)"},
    )
    samples: int = field(
        default=3, metadata={"ge": 0, "description": "greedy samples from fixed prompts in the report"}
    )
    sample_tokens: int = field(default=32, metadata={"ge": 1, "description": "tokens generated per sample"})
