"""The cpu backend's kernel cache: in the user's cache folder, never in the package, and
keyed by a hash that covers every module a kernel runs code from."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from numba.core import config
from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

from rnnlab.backends.cpu import _jit, rnn
from rnnlab.backends.cpu._math import KERNEL_OPTIONS

PACKAGE = Path(_jit.__file__).parents[2]  # src/rnnlab
CPU = Path(_jit.__file__).parent


def _files(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_a_compiled_kernel_is_cached_in_the_cache_folder_not_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv(_jit.CACHE_ENV, str(tmp_path))
    before = _files(PACKAGE)
    add = _jit.kernel(**KERNEL_OPTIONS)(rnn._add.py_func)  # a fresh dispatcher, cache on
    a = np.zeros(3)
    add(a, np.ones(3))
    assert a.tolist() == [1.0, 1.0, 1.0]
    cached = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert any(name.endswith(".nbi") for name in cached), cached
    assert any(name.endswith(".nbc") for name in cached), cached
    assert (tmp_path / _jit.kernel_folder().name).is_dir()
    assert _files(PACKAGE) == before  # nothing written or touched under src/rnnlab


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(_jit.CACHE_ENV, raising=False)
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _jit.cache_dir() == tmp_path / "xdg" / "rnnlab" / "kernels"
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba"))
    assert _jit.cache_dir() == tmp_path / "numba"
    monkeypatch.setenv(_jit.CACHE_ENV, str(tmp_path / "mine"))
    assert _jit.cache_dir() == tmp_path / "mine"


def _imported_from_outside() -> list[tuple[str, str, object]]:
    """(cpu module, imported name, object) for every name a module of the cpu backend
    imports from an rnnlab module outside its folder."""
    found = []
    for path in sorted(CPU.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if node.module.startswith("rnnlab") and not node.module.startswith(
                "rnnlab.backends.cpu"
            ):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    found.append((path.name, alias.name, getattr(module, alias.name)))
    return found


def test_kernels_run_no_compiled_code_from_outside_the_hashed_folder():
    """The cache key hashes this folder's sources only: a compiled function (or an
    intrinsic a kernel inlines) imported from elsewhere would escape it."""
    outside = _imported_from_outside()
    assert outside  # the check sees the imports (contract, host helpers)
    compiled = [(m, n) for m, n, obj in outside if isinstance(obj, (Dispatcher, _Intrinsic))]
    assert compiled == []
