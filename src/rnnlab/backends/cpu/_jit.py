"""The decorator of every compiled function of the cpu backend: Numba's ``njit``, cached
on disk under a key that covers the whole backend's source.

Numba's own cache checks only the file a function is defined in, but a kernel inlines
and links code from the helper modules (``_math``, ``_blas``, ``_tile``, ``_isa``, ...):
after editing one of them, a kernel loaded from the cache would still run the old
helper. Here each function's cache stamp is Numba's (its file's time and size) together
with a hash of every Python source of this package, so any edit to the backend makes
every cached kernel stale and recompiles it. (Numba's cache key already holds the CPU
and its features; the kernel variant is chosen at run time, see :mod:`._isa`.)

This reaches into two Numba internals (``CacheImpl._locator``, ``Dispatcher._cache``,
as ``Dispatcher.enable_caching`` sets it); tests/backends/test_cpu_backend.py checks
both that a second process loads the kernels and that a source change invalidates them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba import njit
from numba.core.caching import CompileResultCacheImpl, FunctionCache


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


class _StampedLocator:
    """Numba's locator for a function, its source stamp extended by :data:`SOURCE_HASH`."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def get_source_stamp(self):
        return self._inner.get_source_stamp(), SOURCE_HASH


class _CacheImpl(CompileResultCacheImpl):
    def __init__(self, py_func) -> None:
        super().__init__(py_func)
        self._locator = _StampedLocator(self._locator)


class _BackendCache(FunctionCache):
    _impl_class = _CacheImpl


def kernel(**options):
    """``numba.njit(**options)`` with the on-disk cache keyed by the backend's source."""

    def wrap(fn):
        dispatcher = njit(**options)(fn)
        dispatcher._cache = _BackendCache(fn)
        return dispatcher

    return wrap
