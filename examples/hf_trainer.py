"""Sparse fine-tuning with the Hugging Face Trainer: C-GaP on a tiny GPT-2, with a resume.

    pip install growprune[hf]
    python examples/hf_trainer.py

The model is built from a config (nothing is downloaded) and trained on random token sequences
that repeat a pattern, so the loss goes down. The only growprune line is the callback. The run
saves a checkpoint halfway; a second Trainer with a fresh model resumes from it and must end
with exactly the weights and masks of the uninterrupted run. Exits non-zero if the sparsity is
not the target or the resumed run differs.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import growprune as gp
from growprune.integrations.huggingface import SparsityCallback

SPARSITY = 0.8
MAX_STEPS = 40


class PatternTokens(torch.utils.data.Dataset):
    """Sequences `a, a+k, a+2k, ...` (mod 100): next-token prediction a tiny model can learn."""

    def __init__(self, n: int = 512, length: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        start, stride = torch.randint(0, 100, (n, 1), generator=g), torch.randint(1, 4, (n, 1), generator=g)
        self.tokens = (start + stride * torch.arange(length)) % 100

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[i], "labels": self.tokens[i]}


def train(
    output_dir: str, resume_from_checkpoint: str | None = None
) -> tuple[GPT2LMHeadModel, SparsityCallback]:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=MAX_STEPS,
        per_device_train_batch_size=16,
        gradient_accumulation_steps=2,
        learning_rate=3e-3,
        logging_steps=10,
        save_steps=MAX_STEPS // 2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    # C-GaP over 4 partitions; phase lengths and fine-tuning derive from max_steps.
    callback = SparsityCallback("cgap", sparsity=SPARSITY, partitions=4)
    trainer = Trainer(model=model, args=args, train_dataset=PatternTokens(), callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return model, callback


def main() -> int:
    torch.set_num_threads(1)  # tiny model: one thread is fastest (and immune to busy cores)
    with tempfile.TemporaryDirectory() as tmp:
        model, callback = train(os.path.join(tmp, "run"))
        print(callback.sparsifier.phase, callback.sparsifier.history[-1])
        print(gp.sparsity_report(model))

        # A fresh model and Trainer continue from the checkpoint written halfway through.
        halfway = os.path.join(tmp, "run", f"checkpoint-{MAX_STEPS // 2}")
        resumed, resumed_callback = train(os.path.join(tmp, "resumed"), resume_from_checkpoint=halfway)

    a, b = model.state_dict(), resumed.state_dict()
    same_weights = all(torch.equal(a[k], b[k]) for k in a)
    masks_a, masks_b = callback.sparsifier.masks, resumed_callback.sparsifier.masks
    same_masks = all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)
    overall = gp.sparsity_report(model).overall
    print(
        f"sparsity {overall:.4f}; resumed run equals the uninterrupted one: "
        f"weights {same_weights}, masks {same_masks}"
    )
    if abs(overall - SPARSITY) > 1e-3 or not (same_weights and same_masks):
        print("error: wrong sparsity or the resumed run differs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
