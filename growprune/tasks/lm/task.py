"""Causal language modelling: next-token cross-entropy, scored by perplexity on held-out books.

Perplexity is lower-is-better while the engine keeps ``best.pt`` by the highest
:attr:`~growprune.tasks.base.Task.primary_metric`, so the task selects on ``valid_neg_log_ppl``
(minus the validation loss in nats per token, the log of the perplexity negated: the same order as
the perplexity, reversed) and reports ``valid_ppl`` / ``test_ppl`` next to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from growprune.data.arguments import check_kwargs
from growprune.data.loader import TensorLoader
from growprune.tasks.base import Batch, TaskRequest, TokenTask
from growprune.tasks.lm.corpus import LMData, load_bible_lm
from growprune.tasks.lm.report import SAMPLES_FILE
from growprune.tasks.lm.settings import LMEvaluation
from growprune.tasks.lm.tokenizer import EOT, ByteBPE

# Fixed prompts of the greedy samples (beginnings of verses in the World English Bible's wording).
PROMPTS: tuple[str, ...] = (
    "In the beginning",
    "Yahweh said to Moses,",
    "Jesus answered them,",
    "Blessed are",
    "The king of Babylon",
)
# Smoke runs keep the recipe's model and schedule but train on a few blocks cut to their first
# SMOKE_CONTEXT tokens (SMOKE_BATCHES batches per epoch: enough steps that a one-epoch schedule with
# updates every few steps, such as lm/rigl-quick's, still fits), score a few held-out blocks and
# generate a few tokens: the point is that every part runs, also for a ~30M-parameter model on a CPU.
SMOKE_BLOCKS = 8
SMOKE_BATCHES = 4
SMOKE_CONTEXT = 32
SMOKE_SAMPLE_TOKENS = 4


def _blocks(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return blocks[:, :-1].contiguous(), blocks[:, 1:].contiguous()


def logits_of(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's next-token logits ``(B, T, V)`` (a ``transformers`` model returns an output object)."""
    out = model(input_ids=inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


class LMTask(TokenTask):
    """Next-token cross-entropy on fixed-length blocks; perplexity of the held-out books."""

    primary_metric = "valid_neg_log_ppl"
    final_metric = "test_ppl"
    progress_text = "valid ppl {valid_ppl:.2f}  loss {valid_loss:.4f}"
    final_text = "  | test ppl {test_ppl:.2f}"
    evaluation_type = LMEvaluation
    data: LMData
    tokenizer: ByteBPE
    evaluation: LMEvaluation

    @classmethod
    def from_request(cls, request: TaskRequest) -> LMTask:
        settings, ev = request.data, request.evaluation
        if settings.random_crop or settings.hflip:
            raise ValueError(
                "random_crop and hflip are image augmentations; remove them for language modelling"
            )
        args = request.dataset_args("cache_dir")
        check_kwargs("dataset", settings.name, load_bible_lm, args)
        data = load_bible_lm(**args)
        if request.smoke:
            width = min(SMOKE_CONTEXT, data.context_length) + 1
            data.train = data.train[: max(SMOKE_BLOCKS, SMOKE_BATCHES * request.batch_size), :width]
            data.valid, data.test = data.valid[:SMOKE_BLOCKS, :width], data.test[:SMOKE_BLOCKS, :width]
            ev = replace(ev, sample_tokens=min(ev.sample_tokens, SMOKE_SAMPLE_TOKENS))
        data.train, data.valid, data.test = (
            b.to(request.device) for b in (data.train, data.valid, data.test)
        )
        return cls(data, **request.loop_sizes(), evaluation=ev)

    def worker_loader(self, seed: int) -> TensorLoader:
        inputs, targets = _blocks(self.data.train)
        return TensorLoader(inputs, targets, self.batch_size, shuffle=True, drop_last=True, seed=seed)

    def model_defaults(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "context_length": self.data.context_length}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        inputs, targets = batch
        logits = logits_of(model, inputs)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), label_smoothing=self.label_smoothing
        )
        correct = (logits.detach().argmax(-1) == targets).sum()
        return loss, correct, targets.numel()

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def split_loss(self, model: nn.Module, blocks: torch.Tensor) -> tuple[float, float]:
        """Mean next-token cross-entropy (nats) and token accuracy over every target of ``blocks``."""
        loss_sum, correct, count = 0.0, 0, 0
        inputs, targets = _blocks(blocks)
        for start in range(0, len(blocks), self.eval_batch_size):
            x, y = inputs[start : start + self.eval_batch_size], targets[start : start + self.eval_batch_size]
            logits = logits_of(model, x)
            loss_sum += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            )
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
        return loss_sum / max(count, 1), correct / max(count, 1)

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            limit = self.evaluation.epoch_blocks
            valid = self.data.valid if final or limit is None else self.data.valid[:limit]
            scores = self._scores("valid", *self.split_loss(model, valid))
            if final and len(self.data.test):
                scores.update(self._scores("test", *self.split_loss(model, self.data.test)))
        finally:
            model.train(was_training)
        return scores

    @staticmethod
    def _scores(prefix: str, loss: float, acc: float) -> dict[str, float]:
        # exp of a diverged loss overflows to inf, which the engine then reports as divergence
        ppl = math.exp(loss) if loss < 700 else math.inf
        return {
            f"{prefix}_loss": loss,
            f"{prefix}_ppl": ppl,
            f"{prefix}_neg_log_ppl": -loss,
            f"{prefix}_acc": acc,
        }

    def collapsed(self, scores: dict[str, float], peak: float) -> str | None:
        """At or above a uniform guess's perplexity (the vocabulary size) after having been below it."""
        chance = math.log(self.tokenizer.vocab_size)
        if -peak < 0.9 * chance and scores["valid_loss"] >= chance:
            return f"validation perplexity {scores['valid_ppl']:.1f} is that of a uniform guess"
        return None

    # -- samples ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, model: nn.Module, prompt: str, tokens: int) -> str:
        """The greedy continuation of ``prompt`` (``tokens`` new tokens, within the context length)."""
        was_training = model.training
        model.eval()
        try:
            device = self.data.valid.device
            ids = torch.tensor([[EOT, *self.tokenizer.encode(prompt)]], dtype=torch.int64, device=device)
            start = ids.shape[1]
            for _ in range(tokens):
                window = ids[:, -self.data.context_length :]
                next_id = logits_of(model, window)[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, next_id], dim=1)
        finally:
            model.train(was_training)
        return self.tokenizer.decode(ids[0, start:].tolist())

    def write_artifacts(self, model: nn.Module, run_dir: Path) -> None:
        """``samples.json``: greedy continuations of the first ``evaluation.samples`` fixed prompts."""
        ev = self.evaluation
        rows = [
            {"prompt": prompt, "continuation": self.generate(model, prompt, ev.sample_tokens)}
            for prompt in PROMPTS[: ev.samples]
        ]
        text = json.dumps({"sample_tokens": ev.sample_tokens, "samples": rows}, ensure_ascii=False, indent=1)
        (Path(run_dir) / SAMPLES_FILE).write_text(text + "\n", encoding="utf-8")
