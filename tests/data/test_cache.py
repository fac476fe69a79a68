"""The one cache folder every task keeps its generated and derived files in."""

from __future__ import annotations

from pathlib import Path

import pytest

from growprune.data.cache import CACHE_ENV_VAR, cache_root


def test_cache_root_prefers_argument_then_env_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "growprune"
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
