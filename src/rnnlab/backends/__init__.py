"""Backends: interchangeable implementations of the recurrent ops.

A backend is a module exposing, for each cell family, a ``<family>_forward`` and a
``<family>_backward`` function with the signatures documented in
:mod:`rnnlab.backends.portable`. Every backend computes the same function; the tests
hold each against the NumPy reference in :mod:`rnnlab.reference`.

Which backend runs is decided per call of an op, from (in this order):

1. the innermost :func:`use_backend` context,
2. the ``RNNLAB_BACKEND`` environment variable,
3. automatic choice by device and dtype.

A backend that is asked for but cannot run the given tensors is an error, never a
silent fallback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType

import torch

__all__ = ["ENV_VAR", "available_backends", "current_backend_name", "select", "use_backend"]

ENV_VAR = "RNNLAB_BACKEND"


@dataclass(frozen=True)
class _Backend:
    name: str
    load: Callable[[], ModuleType]
    supports: Callable[[torch.device, torch.dtype], bool]
    description: str
    priority: int  # automatic choice: the highest priority that supports the tensors


def _load_portable() -> ModuleType:
    from rnnlab.backends import portable

    return portable


_REGISTRY: dict[str, _Backend] = {
    "portable": _Backend(
        name="portable",
        load=_load_portable,
        supports=lambda device, dtype: dtype.is_floating_point,
        description="PyTorch tensor ops, one Python step per time step; any device",
        priority=0,
    ),
}

_forced: ContextVar[str | None] = ContextVar("rnnlab_backend", default=None)


def available_backends() -> dict[str, str]:
    """Names of the backends this installation can run, with a one-line description."""
    return {name: b.description for name, b in _REGISTRY.items()}


def _check_name(name: object, origin: str) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown rnnlab backend {name!r} ({origin}); "
            f"expected one of: {', '.join(sorted(_REGISTRY))}"
        )
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force every rnnlab op inside the ``with`` block onto backend ``name``.

    >>> with rnnlab.use_backend("portable"):
    ...     out, (h, c) = lstm(x)
    """
    token = _forced.set(_check_name(name, "given to use_backend"))
    try:
        yield
    finally:
        _forced.reset(token)


def current_backend_name() -> str | None:
    """The forced backend name (context first, then environment), or None for automatic."""
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_name(env, f"from the environment variable {ENV_VAR}")
    return None


def select(device: torch.device, dtype: torch.dtype) -> ModuleType:
    """Return the backend module that runs an op on tensors of ``device`` and ``dtype``."""
    name = current_backend_name()
    if name is not None:
        backend = _REGISTRY[name]
        if not backend.supports(device, dtype):
            raise RuntimeError(
                f"rnnlab backend {name!r} was requested but cannot run {dtype} tensors on "
                f"{device}; unset {ENV_VAR} / use_backend or move the tensors"
            )
        return backend.load()
    for backend in sorted(_REGISTRY.values(), key=lambda b: -b.priority):
        if backend.supports(device, dtype):
            return backend.load()
    raise RuntimeError(f"no rnnlab backend runs {dtype} tensors on {device}")
