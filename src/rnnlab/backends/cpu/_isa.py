"""Which kernel variant of the per-step product runs: chosen by the CPU's features.

The register tiles of :mod:`._tile` come in three variants, each compiled for its own
instruction set (per-function target attributes, not the host's):

- ``avx512``: x86-64 with AVX-512F (32 vector registers of 16 floats);
- ``avx2``: x86-64 with AVX2 and FMA (16 registers of 8 floats);
- ``portable``: no target attributes — generic vector IR that LLVM compiles for whatever
  the host has (SSE, AVX, ARM NEON, ...).

Every compiled kernel holds all the variants this architecture has and picks one at run
time from a process-wide value (the symbol ``rnnlab_cpu_isa``, read by compiled code),
so Numba's disk cache can never serve a kernel built for another variant. The value is
set once, at import, from ``RNNLAB_CPU_ISA`` (``avx512``, ``avx2``, ``portable`` or
``auto``, the default: the widest the CPU runs); forcing a variant the CPU cannot run is
an :class:`IsaError` naming the missing features. The CPU's features come from LLVM
(``llvmlite.binding.get_host_cpu_features``), which also checks that the operating
system saves the vector registers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

ENV_VAR = "RNNLAB_CPU_ISA"


class IsaError(ValueError):
    """A kernel variant was asked for that is unknown or that this CPU cannot run."""


@dataclass(frozen=True)
class Isa:
    """One kernel variant: its code (``index``, what compiled code compares against) and
    the LLVM target features it is compiled with and needs (none: the host's)."""

    name: str
    index: int
    features: tuple[str, ...]


PORTABLE = Isa("portable", 0, ())
AVX2 = Isa("avx2", 1, ("avx", "avx2", "fma"))
AVX512 = Isa("avx512", 2, ("avx", "avx2", "fma", "avx512f"))
BY_NAME = {isa.name: isa for isa in (AVX512, AVX2, PORTABLE)}  # widest first


def is_x86_64() -> bool:
    """Whether LLVM targets x86-64 here (the only architecture with the x86 variants)."""
    return llvm.get_process_triple().split("-")[0] in ("x86_64", "amd64")


# The variants compiled into every kernel on this architecture.
COMPILED = (AVX512, AVX2, PORTABLE) if is_x86_64() else (PORTABLE,)


def _host_features() -> dict[str, bool]:
    """The host CPU's features as LLVM names them; none where LLVM cannot tell (then only
    the portable variant runs)."""
    try:
        return dict(llvm.get_host_cpu_features())
    except RuntimeError:
        return {}


def missing_features(isa: Isa) -> list[str]:
    """The features ``isa`` needs that this CPU lacks (empty: it can run it)."""
    if isa not in COMPILED:
        return [f"an x86-64 CPU (this is {llvm.get_process_triple()})"]
    host = _host_features()
    return [f for f in isa.features if not host.get(f, False)]


def runnable() -> list[Isa]:
    """The variants this CPU can run, widest first."""
    return [isa for isa in COMPILED if not missing_features(isa)]


def resolve(name: str) -> Isa:
    """The variant a value of ``RNNLAB_CPU_ISA`` asks for: ``auto`` is the widest this CPU
    runs; a named one must exist and be runnable here."""
    key = name.strip().lower()
    if key in ("", "auto"):
        return runnable()[0]
    if key not in BY_NAME:
        raise IsaError(f"{ENV_VAR}={name!r} is not a kernel variant; expected one of "
                       f"{', '.join([*BY_NAME, 'auto'])}")
    isa = BY_NAME[key]
    missing = missing_features(isa)
    if missing:
        raise IsaError(f"{ENV_VAR}={key} needs {', '.join(missing)}, which this CPU "
                       f"({llvm.get_host_cpu_name()}) does not have; it can run "
                       f"{', '.join(i.name for i in runnable())}")
    return isa


# The value compiled code reads, and one flag per variant that compiled code sets the
# first time it runs that variant's tiles (for tests; read-mostly, so no cache line
# ping-pong between threads). Registered as process symbols, so kernels loaded from
# Numba's disk cache link to this process's storage.
_SELECTED = ctypes.c_int32(resolve(os.environ.get(ENV_VAR, "auto")).index)
_RAN = (ctypes.c_uint8 * len(BY_NAME))()
_SELECTED_SYMBOL = "rnnlab_cpu_isa"
_RAN_SYMBOL = "rnnlab_cpu_isa_ran"
llvm.add_symbol(_SELECTED_SYMBOL, ctypes.addressof(_SELECTED))
llvm.add_symbol(_RAN_SYMBOL, ctypes.addressof(_RAN))


def active() -> Isa:
    """The variant the kernels run now."""
    return next(isa for isa in BY_NAME.values() if isa.index == _SELECTED.value)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[Isa]:
    """Run the block's kernels with variant ``name`` (checked as ``RNNLAB_CPU_ISA`` is).

    The setting is process-wide (compiled code reads it): for tests and benchmarks, not
    for threads that run kernels concurrently with other settings."""
    isa = resolve(name)
    before = _SELECTED.value
    _SELECTED.value = isa.index
    try:
        yield isa
    finally:
        _SELECTED.value = before


def ran() -> set[str]:
    """Names of the variants whose tiles ran since the last :func:`clear_ran`."""
    return {isa.name for isa in BY_NAME.values() if _RAN[isa.index]}


def clear_ran() -> None:
    for k in range(len(_RAN)):
        _RAN[k] = 0


def external_symbol(module: ir.Module, name: str, typ: ir.Type) -> ir.GlobalVariable:
    """The module's declaration of a process symbol (declared once per module)."""
    if name in module.globals:
        return module.globals[name]
    return ir.GlobalVariable(module, typ, name)


_I32 = ir.IntType(32)
_I8 = ir.IntType(8)


@intrinsic
def selected_isa(typingctx):
    """The index of the variant to run (compiled code)."""

    def codegen(context, builder, signature, args):
        value = external_symbol(builder.module, _SELECTED_SYMBOL, _I32)
        return builder.sext(builder.load_atomic(value, "monotonic", 4), ir.IntType(64))

    return types.intp(), codegen


@intrinsic
def note_ran(typingctx, index):
    """Set variant ``index``'s flag (:func:`ran`) unless it is set: a read, and a write
    only the first time."""

    def codegen(context, builder, signature, args):
        flags = external_symbol(builder.module, _RAN_SYMBOL, ir.ArrayType(_I8, len(BY_NAME)))
        flag = builder.gep(flags, [ir.Constant(_I32, 0), args[0]])
        unset = builder.icmp_unsigned("==", builder.load_atomic(flag, "monotonic", 1),
                                      ir.Constant(_I8, 0))
        with builder.if_then(unset, likely=False):
            builder.store_atomic(ir.Constant(_I8, 1), flag, "monotonic", 1)
        return context.get_dummy_value()

    return types.none(types.intp), codegen
