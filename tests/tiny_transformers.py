"""Tiny transformers models built from configs (nothing downloaded) and random token data.

One home for the GPT-2 / BERT / Llama test models of the targets, export and integration tests.
`seed` seeds their initialization; config fields can be overridden by keyword.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _seeded(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def gpt2(seed: int | None = None, **config: Any) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    _seeded(seed)
    fields = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 100, "n_positions": 32}
    return GPT2LMHeadModel(GPT2Config(**{**fields, "bos_token_id": 0, "eos_token_id": 0, **config}))


def bert(masked_lm: bool = False, seed: int | None = None, **config: Any) -> torch.nn.Module:
    """BERT with a sequence-classification head, or the masked-LM head tied to the word embeddings."""
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    _seeded(seed)
    fields = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    cls = BertForMaskedLM if masked_lm else BertForSequenceClassification
    return cls(BertConfig(**{**fields, "vocab_size": 100, **config}))


def llama(seed: int | None = None, **config: Any) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    _seeded(seed)
    fields = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": 100,
    }
    return LlamaForCausalLM(
        LlamaConfig(**{**fields, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, **config})
    )


def cpu_training_args(output_dir: Path, **settings: Any) -> Any:
    """transformers.TrainingArguments for a seeded CPU run of a tiny model (batch 4, lr 1e-2, no
    reporting, no progress bar); `settings` add to or override those."""
    from transformers import TrainingArguments

    defaults = {"per_device_train_batch_size": 4, "learning_rate": 1e-2, "report_to": [], "seed": 0}
    defaults |= {"use_cpu": True, "disable_tqdm": True}
    return TrainingArguments(output_dir=str(output_dir), **{**defaults, **settings})


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; labels are the tokens (causal LM) or a class (`classes` > 0)."""

    def __init__(self, n: int = 64, length: int = 16, classes: int = 0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(1, 100, (n, length), generator=g)
        self.classes = classes
        self.labels = self.tokens[:, 0] % classes if classes else self.tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[i], "labels": self.labels[i]}
