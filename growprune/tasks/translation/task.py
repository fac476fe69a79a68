"""Sequence-to-sequence translation: the setting of the GaP authors' Transformer experiments.

Scored by corpus BLEU (and chrF) of decoded hypotheses against the detokenized references.
Every epoch decodes the first sentences of the validation books greedily (cheap enough to
watch progress and pick ``best.pt``); the end of a run decodes the whole test split with beam
search, which is the number a results table reports.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from growprune.data.arguments import check_kwargs
from growprune.tasks.base import Batch, TaskRequest, TokenTask
from growprune.tasks.translation.corpus import (
    TranslationData,
    TranslationLoader,
    TranslationSplit,
    load_bible_translation,
)
from growprune.tasks.translation.decode import beam_search, greedy_decode
from growprune.tasks.translation.scores import translation_scores
from growprune.tasks.translation.settings import TranslationEvaluation
from growprune.tasks.translation.subword import BOS, EOS, PAD, SubwordTokenizer

# Smoke runs keep the recipe's model and schedule but train on the shortest pairs, one batch per
# epoch, and decode a handful of sentences: the point is that every part runs.
SMOKE_TRAIN_PAIRS = 64
SMOKE_SENTENCES = 8


class TranslationTask(TokenTask):
    """Label-smoothed cross-entropy with teacher forcing; BLEU on held-out books."""

    primary_metric = "valid_bleu"
    final_metric = "test_bleu"
    progress_text = "valid BLEU {valid_bleu:.2f}  chrF {valid_chrf:.2f}  loss {valid_loss:.4f}"
    evaluation_type = TranslationEvaluation
    default_label_smoothing = 0.1  # the Transformer baseline's
    data: TranslationData
    tokenizer: SubwordTokenizer
    evaluation: TranslationEvaluation

    def __init__(self, data: TranslationData, **sizes: Any) -> None:
        """``sizes``: :class:`~growprune.tasks.base.TokenTask`'s keyword arguments."""
        super().__init__(data, **sizes)
        # the final test decode (hypotheses, sources, references), for write_artifacts and the report
        self.last_final: dict[str, Any] = {}

    @classmethod
    def from_request(cls, request: TaskRequest) -> TranslationTask:
        settings, ev = request.data, request.evaluation
        if settings.random_crop or settings.hflip:
            raise ValueError("random_crop and hflip are image augmentations; remove them for translation")
        args = request.dataset_args("cache_dir")
        check_kwargs("dataset", settings.name, load_bible_translation, args)
        data = load_bible_translation(**args)
        if request.smoke:
            data.train = data.train.shortest(max(SMOKE_TRAIN_PAIRS, request.batch_size))
            data.valid = data.valid.shortest(SMOKE_SENTENCES)
            data.test = data.test.shortest(SMOKE_SENTENCES)
        data.train, data.valid, data.test = (
            s.to(request.device) for s in (data.train, data.valid, data.test)
        )
        return cls(
            data,
            **request.loop_sizes(),
            evaluation=replace(ev, beam_size=min(ev.beam_size, 2)) if request.smoke else ev,
        )

    def worker_loader(self, seed: int) -> TranslationLoader:
        return TranslationLoader(self.data.train, self.batch_size, shuffle=True, drop_last=True, seed=seed)

    def model_defaults(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "pad_id": PAD}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        src, tgt = batch
        logits = model(src, tgt[:, :-1])
        labels = tgt[:, 1:]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=PAD,
            label_smoothing=self.label_smoothing,
        )
        keep = labels != PAD
        correct = ((logits.detach().argmax(-1) == labels) & keep).sum()
        return loss, correct, int(keep.sum())

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            ev = self.evaluation
            scores = self._split_scores(model, self.data.valid, "valid", ev.epoch_sentences, beam=1)
            if final:
                scores.update(self._split_scores(model, self.data.test, "test", None, beam=ev.beam_size))
        finally:
            model.train(was_training)
        return scores

    def _split_scores(
        self, model: nn.Module, split: TranslationSplit, prefix: str, limit: int | None, beam: int
    ) -> dict[str, float]:
        loss, acc = self._teacher_forced(model, split)
        count = len(split) if limit is None else min(limit, len(split))
        hypotheses = self.translate(model, split.subset(count), beam)
        scores = translation_scores(hypotheses, list(split.references[:count]))
        if prefix == "test":
            self.last_final = {
                "hypotheses": hypotheses,
                "sources": list(split.sources[:count]),
                "references": list(split.references[:count]),
                "refs": list(split.refs[:count]),
                "beam_size": beam,
            }
        return {
            f"{prefix}_loss": loss,
            f"{prefix}_acc": acc,
            f"{prefix}_bleu": scores["bleu"],
            f"{prefix}_chrf": scores["chrf"],
        }

    @torch.no_grad()
    def _teacher_forced(self, model: nn.Module, split: TranslationSplit) -> tuple[float, float]:
        """Mean token cross-entropy (no smoothing) and token accuracy over a whole split."""
        loss_sum, correct, count = 0.0, 0, 0
        for src, tgt in TranslationLoader(split, self.eval_batch_size):
            logits = model(src, tgt[:, :-1])
            labels = tgt[:, 1:]
            keep = labels != PAD
            loss_sum += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]),
                    labels.reshape(-1),
                    reduction="sum",
                    ignore_index=PAD,
                )
            )
            correct += int(((logits.argmax(-1) == labels) & keep).sum())
            count += int(keep.sum())
        return loss_sum / max(count, 1), correct / max(count, 1)

    def translate(self, model: nn.Module, split: TranslationSplit, beam: int = 1) -> list[str]:
        """Decoded source sentences of `split`, in its order (batched by length to cut padding)."""
        out: list[str] = [""] * len(split)
        for idx, batch, _ in TranslationLoader(split, self.eval_batch_size).iter_with_indices():
            if beam == 1:
                ids = greedy_decode(model, batch, bos_id=BOS, eos_id=EOS)
            else:
                alpha = self.evaluation.length_penalty
                ids = beam_search(model, batch, beam_size=beam, length_penalty=alpha, bos_id=BOS, eos_id=EOS)
            for row, tokens in zip(idx.tolist(), ids):
                out[row] = self.tokenizer.decode(tokens)
        return out

    @property
    def final_text(self) -> str:  # type: ignore[override]  # the beam width is a setting, not a score
        return f"  | test BLEU {{test_bleu:.2f}} (beam {self.evaluation.beam_size})"

    def write_artifacts(self, model: nn.Module, run_dir: Path) -> None:
        """``translations.tsv`` (every test hypothesis) for inspection and re-scoring."""
        final = self.last_final
        if not final:
            return
        lines = ["ref\tsource\treference\thypothesis"]
        for row in zip(final["refs"], final["sources"], final["references"], final["hypotheses"]):
            lines.append("\t".join(text.replace("\t", " ") for text in row))
        (Path(run_dir) / "translations.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def example_rows(self) -> list[dict[str, str]]:
        """The first few test translations (for the run report)."""
        final = self.last_final
        keys = ("refs", "sources", "references", "hypotheses")
        rows = list(zip(*(final.get(k, []) for k in keys)))[: self.evaluation.examples]
        return [dict(zip(("ref", "source", "reference", "hypothesis"), row)) for row in rows]
