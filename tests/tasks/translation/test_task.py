"""The translation task inside the engine: real corpus (smoke subset), tiny Transformer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import growprune
from growprune.export import export_model
from growprune.tasks.translation.corpus import TranslationData, TranslationSplit
from growprune.tasks.translation.model import Seq2SeqTransformer
from growprune.tasks.translation.settings import TranslationEvaluation
from growprune.tasks.translation.subword import BOS, EOS, PAD, SubwordTokenizer
from growprune.tasks.translation.task import TranslationTask
from growprune.train.engine import Trainer
from growprune.train.recipe import validate_recipe
from tests.helpers import check_resumes_exactly, check_smoke_refused

SENTENCES = [
    ("el hombre come pan", "the man eats bread"),
    ("la mujer bebe agua", "the woman drinks water"),
    ("el niño come pan y bebe agua", "the boy eats bread and drinks water"),
    ("la tierra era buena", "the earth was good"),
    ("dios vio la luz", "god saw the light"),
    ("y fue la luz", "and there was light"),
]


@pytest.fixture(scope="module")
def tiny_task() -> TranslationTask:
    tokenizer = SubwordTokenizer.train([s for pair in SENTENCES for s in pair] * 4, vocab_size=120)
    src = [tokenizer.encode(s) for s, _ in SENTENCES]
    tgt = [tokenizer.encode(t) for _, t in SENTENCES]
    refs = [f"Gen 1:{i + 1}" for i in range(len(SENTENCES))]
    split = TranslationSplit.from_ids(src, tgt, [s for s, _ in SENTENCES], [t for _, t in SENTENCES], refs)
    data = TranslationData(tokenizer, split, split, split, "es-en", {})
    evaluation = TranslationEvaluation(beam_size=2)
    return TranslationTask(data, batch_size=3, eval_batch_size=4, seed=0, evaluation=evaluation)


def test_loss_counts_only_real_target_tokens(tiny_task: TranslationTask) -> None:
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        tiny_task.tokenizer.vocab_size, d_model=32, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64
    )
    batch = next(tiny_task.train_loader.iter_from(0))
    loss, correct, count = tiny_task.loss(model, batch)
    src, tgt = batch
    assert count == int((tgt[:, 1:] != PAD).sum())
    assert 0 <= int(correct) <= count
    assert torch.isfinite(loss)


def test_translations_come_back_in_input_order(tiny_task: TranslationTask) -> None:
    """Batches are formed by length; hypotheses must still line up with their sources."""
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        tiny_task.tokenizer.vocab_size,
        d_model=32,
        heads=2,
        encoder_layers=1,
        decoder_layers=1,
        ffn_dim=64,
        dropout=0.0,
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    split = tiny_task.data.train
    for _ in range(300):  # memorise the six pairs so each hypothesis identifies its source
        loss, _, _ = tiny_task.loss(model, (split.src, split.tgt))
        opt.zero_grad()
        loss.backward()
        opt.step()
    together = tiny_task.translate(model, split, beam=2)
    alone = [
        tiny_task.translate(model, split.select(torch.tensor([i])), beam=2)[0] for i in range(len(split))
    ]
    assert together == alone
    assert together == [t for _, t in SENTENCES]
    scores = tiny_task.evaluate(model, final=True)
    assert scores["test_bleu"] == pytest.approx(100.0)
    assert set(scores) == {f"{p}_{k}" for p in ("valid", "test") for k in ("loss", "acc", "bleu", "chrf")}


def _recipe(cache: Path, **method: object) -> dict:
    return {
        "name": "tiny-translation",
        "data": {"name": "bible", "data_dir": str(cache), "args": {"vocab_size": 400, "max_tokens": 64}},
        "model": {
            "name": "transformer",
            "args": {"d_model": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64},
        },
        "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        "method": {
            "name": "cgap",
            "sparsity": 0.8,
            "partitions": [["encoder.*"], ["decoder.*"]],
            "epochs_per_phase": 1,
            "rounds": 1,
            "finetune_epochs": 1,
            **method,
        },
        "training": {"batch_size": 16, "seed": 0, "threads": 1, "label_smoothing": 0.1},
        "evaluation": {"beam_size": 2, "epoch_sentences": 4},
        "output": {"tensorboard": False, "report": False},
    }


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


@pytest.mark.trajectory
def test_engine_trains_translation_and_resumes_exactly(corpus_cache: Path, tmp_path: Path) -> None:
    recipe = validate_recipe(_recipe(corpus_cache))
    straight = Trainer(recipe, tmp_path / "straight", smoke=True, progress=False)
    final = straight.run()
    assert final["score_name"] == "test_bleu" and 0.0 <= final["test_bleu"] <= 100.0
    assert final["sparsity"] == pytest.approx(0.8, abs=1e-3)
    rows = (tmp_path / "straight" / "translations.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t") == ["ref", "source", "reference", "hypothesis"] and len(rows) > 1

    again = check_resumes_exactly(recipe, straight, tmp_path / "resumed")
    assert again["test_bleu"] == final["test_bleu"]
    # the run exports and reloads without naming the vocabulary size: the checkpoint recorded it
    export_model(tmp_path / "straight", tmp_path / "model.safetensors")
    loaded = growprune.load(tmp_path / "model.safetensors")
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, straight.model.state_dict()[name]), name
    epochs = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all("valid_bleu" in r for r in epochs if r["type"] == "epoch")


def test_image_augmentation_on_a_corpus_is_refused(corpus_cache: Path, tmp_path: Path) -> None:
    data = _recipe(corpus_cache)
    data["data"]["hflip"] = True
    check_smoke_refused(data, tmp_path / "run", "hflip")


def test_unknown_corpus_argument_is_named(corpus_cache: Path, tmp_path: Path) -> None:
    data = _recipe(corpus_cache)
    data["data"]["args"]["vocab"] = 100
    check_smoke_refused(data, tmp_path / "run", "vocab")


def test_special_ids_match_the_model_convention() -> None:
    assert (PAD, BOS, EOS) == (0, 1, 2)


def test_classifier_on_a_corpus_is_refused_by_name(corpus_cache: Path, tmp_path: Path) -> None:
    data = _recipe(corpus_cache)
    data["model"] = {"name": "mlp", "args": {}}
    check_smoke_refused(data, tmp_path / "run", "model.name: model 'mlp' is a classifier")
