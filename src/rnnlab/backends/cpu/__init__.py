"""The cpu backend: each op's whole sequence (one layer, one direction) in one compiled loop.

Forward and backward of every cell family run their time loop inside Numba-compiled
code: per step one matrix product with the recurrent weight (on the MKL that PyTorch
ships, see :mod:`._blas`) and one vectorised pass over the gates (:mod:`._math`). The
input projection for all steps is one large GEMM in PyTorch before the loop; backward
runs in blocks of time steps (:func:`._common.time_blocks`), with one GEMM per block for
each weight gradient, so the pre-activation gradients never exist for the whole sequence
at once. Function signatures and semantics are those documented in
:mod:`rnnlab.backends.portable`; the tests hold both against the NumPy reference.

Runs float32 and float64 CPU tensors. float64 uses libm's exp/tanh (matches the
reference to 1e-10); float32 uses a vectorised exponential (error ~1e-7).

Threads: the kernels themselves are single-threaded; the per-step product uses MKL's
threads — ``torch.get_num_threads()`` of them, the pool PyTorch itself uses — only when
a step is long enough to absorb a synchronisation (:func:`._blas.gemm_threads`), and the
torch operations around a small call run on one thread (:func:`._common.outer_threads`):
never more threads than torch's setting, and no parallel region per step where another
process on the machine could stall it. Compiled code is cached on disk (Numba
``cache=True``): a new process loads it instead of compiling.
"""

from rnnlab.backends.cpu.gru import gru_backward, gru_forward, gru_infer
from rnnlab.backends.cpu.lstm import lstm_backward, lstm_forward, lstm_infer
from rnnlab.backends.cpu.rnn import rnn_backward, rnn_forward, rnn_infer

__all__ = [
    "gru_backward",
    "gru_forward",
    "gru_infer",
    "lstm_backward",
    "lstm_forward",
    "lstm_infer",
    "rnn_backward",
    "rnn_forward",
    "rnn_infer",
]
