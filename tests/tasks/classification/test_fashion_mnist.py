"""Fashion-MNIST discovery, verification, error messages, and the real files when installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from growprune.tasks.classification import fashion_mnist as fm
from growprune.tasks.classification.idx import write_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_REAL = all((REAL_DIR / n).is_file() for n in fm.FILE_NAMES)
needs_real = pytest.mark.skipif(
    not HAVE_REAL,
    reason=f"Fashion-MNIST not installed in {REAL_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env var, and a system directory that is empty, unless a test opts back in."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "system-empty")


def _write_tiny(d: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(d / fm.FILES[key].name, arr)


def test_missing_files_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given"
    env = tmp_path / "env"
    monkeypatch.setenv(fm.ENV_VAR, str(env))
    with pytest.raises(fm.DatasetNotFoundError) as err:
        fm.load_fashion_mnist(given)
    assert str(env) not in str(err.value)  # an explicit directory is the only one searched
    with pytest.raises(fm.DatasetNotFoundError) as err:
        fm.load_fashion_mnist()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "--data-dir" in msg and "$GROWPRUNE_DATA" in msg
    for name in fm.FILE_NAMES:
        assert name in msg
    # Every searched directory is listed, in search order.
    positions = [msg.index(str(d)) for d in (env, fm.DEFAULT_DIR)]
    assert positions == sorted(positions)


def test_partial_directory_names_missing_files(tmp_path: Path) -> None:
    _write_tiny(tmp_path / "d")
    (tmp_path / "d" / fm.FILES["test_labels"].name).unlink()
    with pytest.raises(fm.DatasetNotFoundError, match="lacks t10k-labels-idx1-ubyte.gz"):
        fm.find_data_dir(tmp_path / "d")


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("explicit", "env/fashion-mnist", "system"):
        _write_tiny(tmp_path / d)
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "system")
    assert fm.find_data_dir() == tmp_path / "system"
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "env"))
    assert fm.find_data_dir() == tmp_path / "env" / "fashion-mnist"  # dataset subdir of root
    assert fm.find_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    # An explicit directory without the files is an error, not a fall-through to other data.
    with pytest.raises(fm.DatasetNotFoundError, match="nowhere"):
        fm.find_data_dir(tmp_path / "nowhere")


def test_checksum_mismatch_is_reported_as_corrupt(tmp_path: Path) -> None:
    _write_tiny(tmp_path / "d")
    with pytest.raises(fm.DatasetCorruptError) as err:
        fm.load_fashion_mnist(tmp_path / "d")
    msg = str(err.value)
    assert "corrupt" in msg and "SHA-256" in msg
    assert "train-images-idx3-ubyte.gz" in msg
    assert "apt-get install --reinstall dataset-fashion-mnist" in msg


def test_unverified_tiny_files_load(tmp_path: Path) -> None:
    _write_tiny(tmp_path / "d", n_train=6, n_test=4)
    train, test = fm.load_fashion_mnist(tmp_path / "d", verify=False, normalize=False)
    assert train.x.shape == (6, 1, 28, 28) and test.x.shape == (4, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0
    assert train.classes == fm.CLASSES


def test_unverified_still_checks_magic_and_counts(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _write_tiny(d)
    # Labels written as a 2-D array -> wrong magic for a label file.
    write_idx(d / fm.FILES["train_labels"].name, np.zeros((6, 1), np.uint8))
    with pytest.raises(fm.DatasetCorruptError, match="magic"):
        fm.load_fashion_mnist(d, verify=False)
    write_idx(d / fm.FILES["train_labels"].name, np.zeros(5, np.uint8))
    with pytest.raises(fm.DatasetCorruptError, match="5 labels for 6 images"):
        fm.load_fashion_mnist(d, verify=False)


def test_truncated_gzip_is_corrupt(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _write_tiny(d)
    f = d / fm.FILES["test_images"].name
    f.write_bytes(f.read_bytes()[:-20])
    with pytest.raises(fm.DatasetCorruptError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        fm.load_fashion_mnist(d, verify=False)


@needs_real
def test_recompressed_copy_verifies_but_modified_copy_does_not(tmp_path: Path) -> None:
    """The content digest accepts a re-gzipped file (upstream .gz differs from Debian's)."""
    spec = fm.FILES["train_labels"]
    raw = gzip.decompress((REAL_DIR / spec.name).read_bytes())
    f = tmp_path / spec.name
    f.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
    assert fm._load_file(f, spec, verify=True).shape == (60000,)
    f.write_bytes(gzip.compress(raw[:-1] + bytes([(raw[-1] + 1) % 10]), mtime=0))
    with pytest.raises(fm.DatasetCorruptError, match="SHA-256 mismatch"):
        fm._load_file(f, spec, verify=True)


@needs_real
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "DEFAULT_DIR", REAL_DIR)
    train, test = fm.load_fashion_mnist()
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert torch.equal(torch.bincount(train.y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))
    assert abs(train.x.mean().item()) < 1e-3 and abs(train.x.std().item() - 1) < 1e-3
    assert train.pad_value == pytest.approx(train.x.min().item(), abs=1e-6)
    # The decode is cached: a second call reuses the uint8 tensors but returns fresh floats.
    raw1 = fm.load_fashion_mnist_raw()
    assert fm.load_fashion_mnist_raw() is raw1
    train2, _ = fm.load_fashion_mnist()
    assert train2.x is not train.x and torch.equal(train2.x[:10], train.x[:10])


@needs_real
def test_real_fashion_mnist_via_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$GROWPRUNE_DATA may point at a root holding a fashion-mnist/ folder."""
    sub = tmp_path / "fashion-mnist"
    sub.mkdir()
    for name in fm.FILE_NAMES:
        (sub / name).symlink_to(REAL_DIR / name)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    assert fm.find_data_dir() == sub
    raw = fm.load_fashion_mnist_raw()
    assert raw["test_images"].shape == (10000, 28, 28)
    fm.clear_cache()
