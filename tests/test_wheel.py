"""The release: ``python -m build`` makes a wheel and an sdist, and the wheel works once
installed somewhere else, read-only.

The wheel goes into a fresh virtual environment that sees the development environment's
packages (torch, numba, onnx, ...) through a ``.pth`` line placed after its own
site-packages, so nothing is downloaded or reinstalled; the development environment's
editable rnnlab is not active there (a path line in a ``.pth`` file adds a folder, it does
not run the ``.pth`` files inside it), and every command runs from an empty folder with
no ``PYTHONPATH``, so the ``rnnlab`` imported is the wheel's, which the test checks.

The build runs without isolation: the build requirements (setuptools, wheel, build) are
in the ``dev`` extra, so it needs no network and no fresh build environment each time.
``python -m build`` builds the sdist first and the wheel from the unpacked sdist, so a
file missing from the sdist is missing from the wheel too.
"""

import os
import stat
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import rnnlab

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "src" / "rnnlab"

pytestmark = pytest.mark.slow

# Run by the wheel's python, from an empty folder: the import, streaming inference (the cpu
# backend's compiled kernels, the one JIT compilation of the test) against the layer on the
# portable backend, and an ONNX export checked in onnxruntime.
USE = """
import sys
import numpy as np, onnxruntime, torch
import rnnlab, rnnlab.nn as rnn
from rnnlab.export import to_onnx

assert rnnlab.__file__.startswith(sys.argv[1]), rnnlab.__file__
torch.manual_seed(0)
gru = rnn.GRU(3, 8).eval()
x = torch.randn(5, 3)
stream = rnn.Stream(gru)
with torch.no_grad(), rnnlab.use_backend("portable"):
    whole, _ = gru(x)
with torch.no_grad():
    stepped = torch.stack([stream.step(frame) for frame in x])
assert torch.allclose(stepped, whole, atol=1e-5), (stepped - whole).abs().max()
batch = torch.stack([x, -x], dim=1)                 # (T, B, I): export needs T, B >= 2
to_onnx(gru, (batch,), "gru.onnx")
(y, _) = onnxruntime.InferenceSession("gru.onnx").run(None, {"input": batch.numpy()})
assert np.allclose(y[:, 0], whole.numpy(), atol=1e-5)
print(rnnlab.__version__)
"""


def _package_files() -> set[str]:
    """Every file under src/rnnlab that belongs to the source (not caches)."""
    return {
        str(path.relative_to(SOURCE.parent))
        for path in SOURCE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_the_wheel_installs_and_runs_from_a_read_only_folder(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    (wheel,) = dist.glob("rnnlab-*.whl")
    (sdist,) = dist.glob("rnnlab-*.tar.gz")
    version = rnnlab.__version__
    assert wheel.name == f"rnnlab-{version}-py3-none-any.whl"

    # Every source file (package data included) and the licence ship in both.
    wheel_files = set(zipfile.ZipFile(wheel).namelist())
    assert _package_files() <= wheel_files, _package_files() - wheel_files
    assert f"rnnlab-{version}.dist-info/licenses/LICENSE" in wheel_files
    assert not [name for name in wheel_files if "__pycache__" in name]
    prefix = f"rnnlab-{version}/"
    sdist_files = {name.removeprefix(prefix) for name in tarfile.open(sdist).getnames()}
    assert {f"src/{name}" for name in _package_files()} | {"LICENSE"} <= sdist_files

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=tmp_path, env={}).strip())
    (site / "zz_dev_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})

    installed = site / "rnnlab"
    _read_only(installed)
    before = _snapshot(installed)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "RNNLAB_BACKEND", "NUMBA_CACHE_DIR")
    }
    env |= {"MPLBACKEND": "Agg", "RNNLAB_CACHE_DIR": str(tmp_path / "kernels")}
    command = str(env_dir / "bin" / "rnnlab")

    assert _run([command, "--version"], cwd=work, env=env).strip() == f"rnnlab, version {version}"
    # The portable backend: the cpu backend's training kernels would add a minute of JIT.
    _run([command, "compare", "--cells", "gru", "--hidden", "8", "-o", "length=10", "--steps",
          "2", "--out", "cmp", "--progress", "none"],
         cwd=work, env={**env, "RNNLAB_BACKEND": "portable"})
    assert (work / "cmp" / "report.html").is_file()
    assert _run([python, "-c", USE, str(installed)], cwd=work, env=env).strip() == version

    after = _snapshot(installed)
    changed = sorted(set(after) ^ set(before) | {k for k in after if after[k] != before.get(k)})
    assert not changed, f"running the installed rnnlab changed files in its folder: {changed[:10]}"
