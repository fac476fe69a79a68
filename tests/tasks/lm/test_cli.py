"""`growprune train lm/...` without the lm extra: one line naming the extra (and the task's own)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from growprune.cli import main


@pytest.mark.parametrize(
    ("recipe", "absent", "extra"),
    [
        ("lm/cgap-quick", "transformers", "lm"),
        ("lm/cgap-quick", "tokenizers", "lm"),  # tokenizers is translation's too: the run's task names it
        ("translation/cgap-quick", "tokenizers", "translation"),
    ],
)
def test_a_missing_module_names_the_tasks_extra(
    recipe: str,
    absent: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == absent else real(name, *a)
    )
    code = main(["train", recipe, "--out", str(tmp_path / "run"), "--no-progress"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert lines == [
        f"error: growprune train: needs the '{extra}' extra (missing module '{absent}'): "
        f"pip install 'growprune[{extra}]'"
    ]
    assert not (tmp_path / "run").exists()
