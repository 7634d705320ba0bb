"""Backends: interchangeable implementations of the recurrent ops.

A backend is a :class:`rnnlab.backends.contract.BackendKernels`: for each cell family
an object implementing that family's protocol (forward, backward, inference), and a
streaming entry point (:mod:`rnnlab.backends.contract` documents the contract). Every
backend computes the same function; the tests hold each against the NumPy reference in
:mod:`rnnlab.reference`. :func:`register` adds one (a new device, or a test's toy).

Which backend runs is decided per call of an op, from (in this order):

1. the innermost :func:`use_backend` context,
2. the ``RNNLAB_BACKEND`` environment variable,
3. automatic choice by device and dtype.

A backend that is asked for but cannot run the given tensors is an error, never a
silent fallback.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from rnnlab.backends.contract import BackendKernels

__all__ = [
    "ENV_VAR",
    "available_backends",
    "can_run",
    "current_backend_name",
    "register",
    "select",
    "unregister",
    "use_backend",
]

ENV_VAR = "RNNLAB_BACKEND"


@dataclass(frozen=True)
class _Backend:
    name: str
    load: Callable[[], BackendKernels]
    supports: Callable[[torch.device, torch.dtype], bool]
    description: str
    priority: int  # automatic choice: the highest priority that supports the tensors
    requires: tuple[str, ...] = ()  # modules that must be importable for it to exist here

    def installed(self) -> bool:
        return _importable(self.requires)


@functools.cache
def _importable(modules: tuple[str, ...]) -> bool:
    """Whether every module imports here; looked up once per process (ops call this often)."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _load_portable() -> BackendKernels:
    from rnnlab.backends import portable

    return portable.KERNELS


def _load_gpu() -> BackendKernels:
    from rnnlab.backends import gpu

    return gpu.KERNELS


def _gpu_supports(device: torch.device, dtype: torch.dtype) -> bool:
    """CUDA fp32/bf16 with Triton installed; CPU only through Triton's interpreter
    (TRITON_INTERPRET=1) and only when forced, so automatic choice never takes it on CPU."""
    if dtype not in (torch.float32, torch.bfloat16):
        return False
    if device.type == "cuda":
        return True
    interpreted = device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "") == "1"
    return interpreted and current_backend_name() == "gpu"


def _load_cpu() -> BackendKernels:
    from rnnlab.backends import cpu

    return cpu.KERNELS


@functools.cache
def _cpu_loads() -> bool:
    """Whether the cpu backend can run here (Numba installed)."""
    try:
        _load_cpu()
    except ImportError:
        return False
    return True


_REGISTRY: dict[str, _Backend] = {
    "portable": _Backend(
        name="portable",
        load=_load_portable,
        supports=lambda device, dtype: dtype.is_floating_point,
        description="PyTorch tensor ops, one Python step per time step; any device",
        priority=0,
    ),
    "cpu": _Backend(
        name="cpu",
        load=_load_cpu,
        supports=lambda device, dtype: (
            device.type == "cpu" and dtype in (torch.float32, torch.float64) and _cpu_loads()
        ),
        description="fused compiled loop over time (Numba); CPU float32/float64",
        priority=10,
        requires=("numba",),
    ),
    "gpu": _Backend(
        name="gpu",
        load=_load_gpu,
        supports=_gpu_supports,
        description="Triton kernels looping over time on chip; CUDA fp32/bf16 "
        "(CPU through Triton's interpreter when TRITON_INTERPRET=1)",
        priority=20,
        requires=("triton",),
    ),
}

# Automatic choice walks this order on every op call: sorted once, here (and on register).
_BY_PRIORITY = sorted(_REGISTRY.values(), key=lambda b: -b.priority)


def register(
    name: str,
    load: Callable[[], BackendKernels],
    supports: Callable[[torch.device, torch.dtype], bool],
    description: str,
    priority: int = -1,
) -> None:
    """Add backend ``name``: ``load()`` returns its
    :class:`~rnnlab.backends.contract.BackendKernels` (called on each op, so cache it);
    ``supports(device, dtype)`` says which tensors it runs. With the default priority it
    runs only when forced (:func:`use_backend`, ``RNNLAB_BACKEND``) or where no built-in
    backend does. Replacing a name is an error; :func:`unregister` removes one first."""
    global _BY_PRIORITY
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a backend name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"rnnlab backend {name!r} is already registered")
    _REGISTRY[name] = _Backend(name, load, supports, description, priority)
    _BY_PRIORITY = sorted(_REGISTRY.values(), key=lambda b: -b.priority)


def unregister(name: str) -> None:
    """Remove a backend added by :func:`register` (the built-in ones stay)."""
    global _BY_PRIORITY
    if _check_name(name, "given to unregister") in _BUILT_IN:
        raise ValueError(f"rnnlab backend {name!r} is built in and cannot be removed")
    del _REGISTRY[name]
    _BY_PRIORITY = sorted(_REGISTRY.values(), key=lambda b: -b.priority)

_BUILT_IN = frozenset(_REGISTRY)

_forced: ContextVar[str | None] = ContextVar("rnnlab_backend", default=None)


def available_backends() -> dict[str, str]:
    """Names of the backends installed here (their packages import), with a description."""
    return {name: b.description for name, b in _REGISTRY.items() if b.installed()}


def can_run(name: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether backend ``name``, when forced, runs ``dtype`` tensors on ``device`` here."""
    backend = _REGISTRY[_check_name(name, "given to can_run")]
    if not backend.installed():
        return False
    token = _forced.set(name)
    try:
        return backend.supports(torch.device(device), dtype)
    finally:
        _forced.reset(token)


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


def select(device: torch.device, dtype: torch.dtype) -> BackendKernels:
    """Return the backend that runs an op on tensors of ``device`` and ``dtype``."""
    name = current_backend_name()
    if name is not None:
        backend = _REGISTRY[name]
        if not backend.installed():
            raise RuntimeError(
                f"rnnlab backend {name!r} was requested but is not installed here: it needs "
                f"{', '.join(backend.requires)}; unset {ENV_VAR} / use_backend or install it"
            )
        if not backend.supports(device, dtype):
            raise RuntimeError(
                f"rnnlab backend {name!r} was requested but cannot run {dtype} tensors on "
                f"{device}; unset {ENV_VAR} / use_backend or move the tensors"
            )
        return backend.load()
    for backend in _BY_PRIORITY:
        if backend.installed() and backend.supports(device, dtype):
            return backend.load()
    raise RuntimeError(f"no rnnlab backend runs {dtype} tensors on {device}")
