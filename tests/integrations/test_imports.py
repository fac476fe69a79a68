"""Integrations are optional: growprune imports without them, and a missing framework says what to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_import_growprune_imports_no_framework() -> None:
    code = (
        "import sys, growprune, growprune.integrations, growprune.integrations.schedule\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'transformers', 'accelerate', 'lightning', 'pytorch_lightning'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("growprune.integrations.huggingface", ["transformers"], "pip install growprune[hf]"),
        (
            "growprune.integrations.lightning",
            ["lightning", "lightning.pytorch", "pytorch_lightning"],
            "pip install growprune[lightning]",
        ),
    ],
)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, blocked: list[str], extra: str
) -> None:
    monkeypatch.delitem(sys.modules, module, raising=False)
    for name in blocked:  # None in sys.modules makes `import name` raise ImportError
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)
