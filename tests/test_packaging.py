"""growprune as a user gets it: a wheel built from this checkout, installed into fresh venvs.

Two venvs, each run from a folder outside the checkout so the source tree cannot be imported:

* "full": the wheel plus the third-party packages this interpreter has (reached through a ``.pth``
  file, not installed again): the bundled recipes ship in the wheel and a smoke training runs.
* "core": the wheel plus only torch, numpy, safetensors and what they need: ``import growprune``
  imports none of the optional dependencies, a plain-loop C-GaP run works, and the command names
  the extra to install instead of failing with a traceback.

No network: the wheel is built with this interpreter's setuptools (``--no-build-isolation``) and
installed ``--no-deps --no-index``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from growprune.version import __version__

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = ("matplotlib", "tensorboard", "tokenizers", "sacrebleu", "pydantic", "tqdm", "yaml")
CORE = ("torch", "numpy", "safetensors")
LOADED_OPTIONAL = f"import growprune, sys; print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
IMPORTABLE_OPTIONAL = f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
PLAIN_LOOP = """
import torch
from torch import nn
import growprune

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
sp = growprune.CGaP(model, opt, sparsity=0.8, partitions=2, steps_per_phase=5)
x = torch.randn(512, 16)
y = x[:, :4].argmax(dim=1)
for step in range(max(30, sp.total_steps)):
    index = torch.randint(0, len(x), (32,))
    loss = nn.functional.cross_entropy(model(x[index]), y[index])
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"phase {sp.phase.name} sparsity {growprune.sparsity_report(model).overall:.4f}")
"""


def clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout or other packages on sys.path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )


def checked(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = run(cmd, cwd, timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy so no build/ or egg-info lands in the tree."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "growprune", src / "growprune", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    build = ["pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out]
    checked([sys.executable, "-m", *build], cwd=out)
    (built,) = out.glob("growprune-*.whl")
    return built


def make_venv(root: Path, wheel: Path, extra_paths: list[Path]) -> Path:
    """A venv (no pip) holding the wheel, seeing `extra_paths` after its own site-packages."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = checked([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root)
    (Path(purelib.stdout.strip()) / "_growprune_test.pth").write_text("".join(f"{p}\n" for p in extra_paths))
    checked(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=root,
    )
    return python


def command(python: Path) -> Path:
    return python.with_name("growprune.exe" if os.name == "nt" else "growprune")


def core_site(folder: Path) -> Path:
    """A folder of links to torch, numpy, safetensors and the distributions they require, only."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    folder.mkdir()
    seen: set[str] = set()
    todo = list(CORE)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:  # e.g. a requirement for another platform
            continue
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            link = folder / top
            if not link.exists():
                link.symlink_to(Path(dist.locate_file(top)))
    return folder


def installed_from_wheel(python: Path, venv_root: Path, cwd: Path) -> None:
    result = checked(
        [
            python,
            "-c",
            "import growprune, importlib.metadata as m; "
            "print(growprune.__file__); print(growprune.__version__, m.version('growprune'))",
        ],
        cwd,
    )
    where, versions = result.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(venv_root.resolve()), where
    assert versions.split() == [__version__, __version__]


def test_wheel_name_carries_the_package_version(wheel: Path) -> None:
    assert wheel.name == f"growprune-{__version__}-py3-none-any.whl"


def test_installed_wheel_has_recipes_and_trains(wheel: Path, tmp_path: Path) -> None:
    site = sorted({Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")})
    python = make_venv(tmp_path / "venv", wheel, site)
    work = tmp_path / "work"
    work.mkdir()
    installed_from_wheel(python, tmp_path / "venv", work)

    listing = checked([command(python), "list"], work)
    assert "fmnist/cgap-quick" in listing.stdout and "translation/cgap-quick" in listing.stdout

    out = tmp_path / "run"
    result = checked(
        [command(python), "train", "fmnist/cgap-quick", "--smoke", "--out", out, "--no-progress"], work
    )
    assert result.stdout.startswith("done: "), result.stdout
    assert (out / "checkpoints" / "final.pt").is_file() and (out / "report" / "report.md").is_file()


def test_core_install_imports_and_trains_without_extras(wheel: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", wheel, [core_site(tmp_path / "core")])
    work = tmp_path / "work"
    work.mkdir()
    installed_from_wheel(python, tmp_path / "venv", work)
    importable = checked([python, "-c", IMPORTABLE_OPTIONAL], work).stdout.strip()
    assert importable == "[]", "the core venv can import optional packages; the test would prove nothing"

    assert checked([python, "-c", LOADED_OPTIONAL], work).stdout.strip() == "[]"
    assert checked([python, "-c", PLAIN_LOOP], work).stdout.strip() == "phase done sparsity 0.8000"
    assert "fmnist/cgap-quick" in checked([command(python), "list"], work).stdout

    result = run([command(python), "train", "fmnist/cgap-quick", "--smoke", "--out", tmp_path / "run"], work)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: growprune train: needs the 'train' extra (missing modules 'yaml', ")
    assert line.endswith(": pip install 'growprune[train]'")
