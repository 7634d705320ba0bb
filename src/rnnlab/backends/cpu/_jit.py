"""The decorator of every compiled function of the cpu backend: Numba's ``njit``, cached
on disk, in the user's cache directory, under a key that covers the whole backend's source.

Where: :func:`cache_dir` — ``$RNNLAB_CACHE_DIR``, else Numba's ``NUMBA_CACHE_DIR`` when
set, else ``$XDG_CACHE_HOME/rnnlab/kernels`` (``~/.cache/rnnlab/kernels``); never the
installed package's folder, which may be read-only (below it, one folder per source
folder, as Numba names them).

Numba's own cache checks only the file a function is defined in, but a kernel inlines
and links code from the helper modules (``_math``, ``_blas``, ``_tile``, ``_isa``, ...):
after editing one of them, a kernel loaded from the cache would still run the old
helper. Here each function's cache stamp is Numba's (its file's time and size) together
with a hash of every Python source of this package, so any edit to the backend makes
every cached kernel stale and recompiles it. (Numba's cache key already holds the CPU
and its features; the kernel variant is chosen at run time, see :mod:`._isa`.)

Every kernel is defined in this folder and links only code defined here (the imports of
other rnnlab modules are host-side Python; tests/backends/test_cpu_jit.py checks that no
compiled function comes from outside), so the folder's hash covers everything a kernel
runs. Numba's own index adds its version and the CPU.

This reaches into Numba internals (``CacheImpl._locator_classes``, the locator classes,
``Dispatcher._cache`` as ``Dispatcher.enable_caching`` sets it);
tests/backends/test_cpu_backend.py checks that a second process loads the kernels and
that a source change invalidates them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from numba import njit
from numba.core import config
from numba.core.caching import CompileResultCacheImpl, FunctionCache, UserProvidedCacheLocator

CACHE_ENV = "RNNLAB_CACHE_DIR"


def cache_dir() -> Path:
    """The folder compiled kernels are cached in (see the module docstring)."""
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    if config.CACHE_DIR:
        return Path(config.CACHE_DIR)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rnnlab" / "kernels"


def source_files(folder: Path = Path(__file__).parent) -> list[Path]:
    """The Python sources of the backend (this package's folder)."""
    return sorted(folder.glob("*.py"))


def source_hash(folder: Path = Path(__file__).parent) -> str:
    """SHA-256 over the names and contents of the Python files in ``folder``."""
    digest = hashlib.sha256()
    for path in source_files(folder):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


SOURCE_HASH = source_hash()


class _KernelLocator(UserProvidedCacheLocator):
    """Numba's locator for a user-provided folder, pointed at :func:`cache_dir`, its
    source stamp extended by :data:`SOURCE_HASH`."""

    def __init__(self, py_func, py_file) -> None:
        super().__init__(py_func, py_file)
        self._cache_path = str(cache_dir() / self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        return super(UserProvidedCacheLocator, cls).from_function(py_func, py_file)

    def get_source_stamp(self):
        return super().get_source_stamp(), SOURCE_HASH


def kernel_folder() -> Path:
    """The folder of this backend's cached kernels (inside :func:`cache_dir`)."""
    return cache_dir() / UserProvidedCacheLocator.get_suitable_cache_subpath(__file__)


class _CacheImpl(CompileResultCacheImpl):
    _locator_classes = (_KernelLocator,)


class _BackendCache(FunctionCache):
    _impl_class = _CacheImpl


def kernel(**options):
    """``numba.njit(**options)`` with the on-disk cache keyed by the backend's source."""

    def wrap(fn):
        dispatcher = njit(**options)(fn)
        dispatcher._cache = _BackendCache(fn)
        return dispatcher

    return wrap
