"""The cpu backend: each op's whole sequence (one layer, one direction) in one compiled loop.

Forward, backward and inference of every cell family run their time loop inside
Numba-compiled code: per step one matrix product with the recurrent weight (rnnlab's own
compiled loops and register tiles, see :mod:`._blas`) and one vectorised pass over the
gates (:mod:`._math`). The
input projection for all steps is one large GEMM before the loop; backward
runs in blocks of time steps (:func:`._common.time_blocks`), with one GEMM per block for
each weight gradient, so the pre-activation gradients never exist for the whole sequence
at once. Function signatures and semantics are those documented in
:mod:`rnnlab.backends.contract`; the tests hold both against the NumPy reference.

Runs float32 and float64 CPU tensors. float64 uses libm's exp/tanh (matches the
reference to 1e-10); float32 uses a vectorised exponential (error ~1e-7).

Threads: a call is split by samples into parts that each run the whole loop for their
rows, the caller's thread and a small pool of Python threads running compiled parts that
release the GIL (:mod:`._parallel`): never more threads than ``torch.get_num_threads()``,
no synchronisation per step. No process-wide setting is changed, not even for a call's
duration. Compiled code is cached on disk (:mod:`._jit`: Numba's cache, keyed by the
backend's whole source): a new process loads it instead of compiling. Nothing is looked
up in torch's libraries, so the backend loads on any torch build.

Switches (:mod:`._switches`): ``RNNLAB_CPU_THREADS=1`` (no split across threads),
``RNNLAB_CPU_TILES=0`` (the plain compiled loop instead of the register tiles),
``RNNLAB_CPU_ISA`` (the tiles' variant).

The per-step product's register tiles have one variant per instruction set (avx512,
avx2, portable), chosen at run time by the CPU's features or ``RNNLAB_CPU_ISA``
(:mod:`._isa`).

Inference (the ``*_infer`` functions, behind ``rnnlab::*_infer``) projects the inputs
inside the loop, a cache-sized chunk of steps at a time, and keeps no activations.
"""

from rnnlab.backends.contract import BackendKernels
from rnnlab.backends.cpu.gru import CpuGRU, CpuMaskedGRU
from rnnlab.backends.cpu.lngru import CpuLNGRU
from rnnlab.backends.cpu.lnlstm import CpuLNLSTM
from rnnlab.backends.cpu.lstm import CpuLSTM, CpuMaskedLSTM
from rnnlab.backends.cpu.min import CpuMin
from rnnlab.backends.cpu.rnn import CpuRNN
from rnnlab.backends.cpu.stream import CpuStream

__all__ = ["KERNELS"]

_rnn, _lstm, _gru = CpuRNN(), CpuLSTM(), CpuGRU()
KERNELS = BackendKernels(
    name="cpu", rnn=_rnn, lstm=_lstm, gru=_gru, stream=CpuStream(), lnlstm=CpuLNLSTM(),
    lngru=CpuLNGRU(), masked_lstm=CpuMaskedLSTM(), masked_gru=CpuMaskedGRU(),
    mingru=CpuMin("mingru"), minlstm=CpuMin("minlstm"),
)
