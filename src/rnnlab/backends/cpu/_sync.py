"""Step flags for kernels whose threads share the work of every step.

When a step's hidden units are split across threads, each thread needs the whole
h_{t-1} before its next product. Thread p publishes "I have finished step s" in its
flag (``flags[p * STRIDE]``, a cache line of its own) and waits until every flag says
at least s: one release store and a poll per step, the least a step can cost here
(a cache line crossing cores: see benchmarks/results/cpu-tuning.md).
Waiting spins briefly, then yields its core at every poll: when another process holds
a core, spinning would burn the very core the partner thread is waiting for.

Every wait is bounded: past ``_tuning.WAIT_BOUND`` cycles (stored in the flags by
:func:`step_flags` when the call starts) the waiting part marks the call abandoned and
stops, and so does every other part at its next wait; the caller then runs the call
again on one thread (:func:`abandoned`). A partner that never arrives (its thread never
scheduled) costs one bound, not a hang.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnlab.backends.cpu import _tuning
from rnnlab.backends.cpu._jit import kernel

STRIDE = 16  # int64 entries between flags: 128 bytes, one cache line each and then some
SPINS = _tuning.SPINS
LONG_WAIT = _tuning.LONG_WAIT

_sched_yield = types.ExternalFunction("sched_yield", types.intc())


@intrinsic
def _load_acquire(typingctx, arr, index):
    """arr[index] read atomically, acquire ordering."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, index), codegen


@intrinsic
def _store_release(typingctx, arr, index, value):
    """arr[index] = value written atomically, release ordering."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.none(arr, index, types.int64), codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (llvm.readcyclecounter): for measuring waits."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(fn, [])

    return types.int64(), codegen


def step_flags(parts: int) -> np.ndarray:
    """The flags of a call split ``parts`` ways: one cache line per part, then one for
    the call (its abandoned mark, and the bound of a wait in cycles, read now from
    ``_tuning.WAIT_BOUND``)."""
    flags = np.zeros((parts + 1) * STRIDE, dtype=np.int64)
    flags[parts * STRIDE + 1] = _tuning.WAIT_BOUND
    return flags


def abandoned(flags: np.ndarray) -> bool:
    """Whether a part of the call gave up waiting (:func:`finish_step` returned
    ``ABANDONED``): its results are incomplete and the call must run again."""
    return bool(flags[-STRIDE])


ABANDONED = -1


@kernel(nogil=True)
def finish_step(flags, part, parts, step):
    """Publish that ``part`` has finished ``step`` (its writes before this call become
    visible to the others) and wait until all ``parts`` have. Returns the cycles waited,
    or ``ABANDONED`` when a wait passed the call's bound (this part then marks the call
    abandoned) or another part has marked it: the part must stop."""
    _store_release(flags, part * STRIDE, step)
    call = parts * STRIDE
    bound = flags[call + 1]
    started = cycles()
    for q in range(parts):
        polls = 0
        while _load_acquire(flags, q * STRIDE) < step:
            if _load_acquire(flags, call) != 0:
                return ABANDONED
            polls += 1
            if polls > SPINS:
                _sched_yield()
                if cycles() - started > bound:
                    _store_release(flags, call, 1)
                    return ABANDONED
    return cycles() - started
