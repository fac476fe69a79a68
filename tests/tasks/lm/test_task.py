"""The lm task: loss and perplexity, samples and the report section, and a run through the engine."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from growprune.data import bible
from growprune.records import EpochRecord, FinalRecord, read_records
from growprune.report.run import summary_row
from growprune.tasks.lm.corpus import LMData, blocks_of, token_stream
from growprune.tasks.lm.model import build_llama
from growprune.tasks.lm.report import lm_lines
from growprune.tasks.lm.settings import LMEvaluation
from growprune.tasks.lm.task import PROMPTS, LMTask
from growprune.tasks.lm.tokenizer import ByteBPE
from growprune.tasks.registry import task_named
from growprune.train.engine import Trainer
from growprune.train.recipe import validate_recipe
from tests.helpers import check_resumes_exactly, check_smoke_refused

VERSES = [
    "In the beginning, God created the heavens and the earth.",
    "The earth was formless and empty.",
    "God said, Let there be light, and there was light.",
    "God saw the light, and saw that it was good.",
] * 6


@pytest.fixture(scope="module")
def tiny_task() -> LMTask:
    tokenizer = ByteBPE.train(VERSES, vocab_size=300)
    blocks = blocks_of(token_stream(tokenizer, VERSES), 16)
    data = LMData(tokenizer, blocks, blocks[:4], blocks[4:8], 16)
    return LMTask(
        data, batch_size=4, eval_batch_size=3, seed=0, evaluation=LMEvaluation(samples=2, sample_tokens=6)
    )


def _model(task: LMTask) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_llama(task.tokenizer.vocab_size, context_length=16, hidden_size=32, layers=1, heads=2)


def test_loss_is_next_token_cross_entropy_and_perplexity_its_exp(tiny_task: LMTask) -> None:
    model = _model(tiny_task)
    inputs, targets = next(tiny_task.train_loader.iter_from(0))
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the inputs shifted by one
    loss, correct, count = tiny_task.loss(model, (inputs, targets))
    assert count == targets.numel() and 0 <= int(correct) <= count
    assert float(loss.detach()) == pytest.approx(
        math.log(tiny_task.tokenizer.vocab_size), rel=0.1
    )  # untrained
    scores = tiny_task.evaluate(model, final=True)
    assert set(scores) == {
        f"{s}_{k}" for s in ("valid", "test") for k in ("loss", "ppl", "neg_log_ppl", "acc")
    }
    assert scores["valid_ppl"] == pytest.approx(math.exp(scores["valid_loss"]))
    assert scores["valid_neg_log_ppl"] == -scores["valid_loss"]
    # the held-out loss is the mean over every target token, whatever the evaluation batch size
    with torch.no_grad():
        logits = model(input_ids=tiny_task.data.valid[:, :-1]).logits
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tiny_task.data.valid[:, 1:].reshape(-1)
    )
    assert scores["valid_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_training_lowers_perplexity_and_the_selection_key_rises(tiny_task: LMTask) -> None:
    model = _model(tiny_task)
    before = tiny_task.evaluate(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for batch in list(tiny_task.train_loader.iter_from(0)) * 20:
        loss, _, _ = tiny_task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = tiny_task.evaluate(model)
    assert after["valid_ppl"] < before["valid_ppl"] / 4
    assert after[LMTask.primary_metric] > before[LMTask.primary_metric]  # best.pt keeps the highest
    # memorised: the greedy continuation of a training verse's start is the verse
    assert tiny_task.generate(model, "God saw the light,", 6).startswith(" and saw that it")


def test_samples_and_report_section(tiny_task: LMTask, tmp_path: Path) -> None:
    model = _model(tiny_task)
    tiny_task.write_artifacts(model, tmp_path)
    written = json.loads((tmp_path / "samples.json").read_text(encoding="utf-8"))
    assert [row["prompt"] for row in written["samples"]] == list(PROMPTS[:2])
    assert written["sample_tokens"] == 6
    epochs = [EpochRecord.from_dict({"epoch": 1.0, "step": 3, "valid_loss": 2.0, "valid_ppl": math.exp(2.0)})]
    final = FinalRecord.from_dict(
        {"step": 3, "test_ppl": 9.5, "test_loss": math.log(9.5), "valid_ppl": 7.39, "score_name": "test_ppl"}
    )
    lines = lm_lines(tmp_path, epochs, final)
    text = "\n".join(lines)
    assert lines[0] == "## Language modelling"
    assert "perplexity **9.50**" in text and "| 1.00 |  | 2.0000 | 7.39 | n/a |" in text
    assert f"| {PROMPTS[0]} |" in text
    assert (
        lm_lines(tmp_path, [EpochRecord.from_dict({"epoch": 1.0, "step": 3, "valid_bleu": 3.0})], None) == []
    )


def test_registry_line() -> None:
    spec = task_named("lm")
    epochs = [
        EpochRecord.from_dict({"epoch": e, "step": e, "valid_neg_log_ppl": -loss})
        for e, loss in ((1, 3.0), (2, 2.5), (3, 2.75))
    ]
    best = next(s for s in spec.summary if s.of == "best")
    assert summary_row(best, SimpleNamespace(epochs=epochs, final=None), "") == (
        "best validation perplexity (any epoch)",
        f"{math.exp(2.5):.2f}",  # the lowest perplexity, not the highest
    )
    assert (
        spec.describe_scores({"test_ppl": 12.345, "valid_ppl": 10.0}) == "test perplexity 12.35 (valid 10.00)"
    )
    assert (
        spec.load() is LMTask and spec.extra == "lm" and set(spec.modules) == {"transformers", "tokenizers"}
    )
    assert spec.evaluation_settings() is LMEvaluation


def _recipe(cache: Path, **method: object) -> dict:
    return {
        "name": "tiny-lm",
        "data": {
            "name": "bible_en",
            "data_dir": str(cache),
            "args": {"vocab_size": 300, "context_length": 16},
        },
        "model": {"name": "llama", "args": {"hidden_size": 32, "layers": 2, "heads": 2}},
        "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0},
        "method": {
            "name": "cgap",
            "sparsity": 0.5,
            "targets": ["*self_attn.*_proj.weight", "*mlp.*_proj.weight"],
            "partitions": [["model.layers.0.*"], ["model.layers.1.*"]],
            "epochs_per_phase": 1,
            "rounds": 1,
            "finetune_epochs": 1,
            **method,
        },
        "training": {"batch_size": 8, "seed": 0, "threads": 1, "deterministic": True},
        "evaluation": {"samples": 2, "sample_tokens": 5},
        "output": {"tensorboard": False, "report": False},
    }


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("diatheke") is None:
        pytest.skip("needs diatheke and sword-text-web (make data)")
    cache = tmp_path_factory.mktemp("corpus-cache")
    (cache / "bible").mkdir()
    raw = bible.read_raw("en")  # the machine's default cache: diatheke runs once per machine
    (cache / "bible" / f"{bible.MODULES['en']}.osis.txt").write_text(raw, encoding="utf-8")
    return cache


@pytest.mark.trajectory
def test_engine_trains_lm_reports_perplexity_and_resumes_exactly(corpus_cache: Path, tmp_path: Path) -> None:
    recipe = validate_recipe(_recipe(corpus_cache))
    straight = Trainer(recipe, tmp_path / "straight", smoke=True, progress=False)
    final = straight.run()
    assert final["score_name"] == "test_ppl" and 1.0 < final["test_ppl"] < 2 * 300
    assert final["test_ppl"] == pytest.approx(math.exp(final["test_loss"]))
    assert final["sparsity"] == pytest.approx(0.5, abs=1e-3)
    model = straight.model
    assert float((model.model.embed_tokens.weight == 0).float().mean()) == 0.0  # embeddings dense
    assert float((model.model.layers[1].mlp.up_proj.weight == 0).float().mean()) == pytest.approx(
        0.5, abs=0.01
    )
    samples = json.loads((tmp_path / "straight" / "samples.json").read_text(encoding="utf-8"))["samples"]
    assert [row["prompt"] for row in samples] == list(PROMPTS[:2])
    records = read_records(tmp_path / "straight" / "metrics.jsonl").records
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert epochs and all("valid_ppl" in r.scores for r in epochs)

    again = check_resumes_exactly(recipe, straight, tmp_path / "resumed")
    assert again["test_ppl"] == final["test_ppl"]


def test_classifier_on_the_lm_corpus_is_refused_by_name(corpus_cache: Path, tmp_path: Path) -> None:
    data = _recipe(corpus_cache)
    data["model"] = {"name": "transformer", "args": {}}
    check_smoke_refused(data, tmp_path / "run", "model 'transformer' is not a causal language model")


def test_collapse_is_back_at_a_uniform_guess_after_being_below_it(tiny_task: LMTask) -> None:
    chance = math.log(tiny_task.tokenizer.vocab_size)
    back = {"valid_loss": chance + 0.1, "valid_ppl": math.exp(chance + 0.1)}
    assert "uniform guess" in (tiny_task.collapsed(back, peak=-2.0) or "")
    assert tiny_task.collapsed(back, peak=-(chance + 0.2)) is None  # never learned anything yet
    assert tiny_task.collapsed({"valid_loss": 2.5, "valid_ppl": math.exp(2.5)}, peak=-2.0) is None
