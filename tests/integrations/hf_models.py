"""Tiny transformers models built from configs (nothing downloaded) and random token data."""

from __future__ import annotations

import torch


def gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    )


def bert() -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(
        BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
        )
    )


def llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=100,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    )


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
