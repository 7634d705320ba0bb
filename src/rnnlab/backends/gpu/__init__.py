"""The gpu backend: the serial part of each recurrence as Triton kernels.

As in every backend, the input projection x·W_ihᵀ of all steps and, after the backward
recurrence, dx, dW_ih, dW_hh and the bias gradients are single GEMMs outside the loop;
the kernels run only h·W_hhᵀ plus the cell's pointwise math, step after step, and save
the gates for backward (and for gate recording). State and accumulation are fp32 for
fp32 and bf16 tensors alike.

Two execution paths, chosen per call by the size of the recurrent weights:

persistent   One program per tile of 16 samples loops over all T steps inside the
             kernel. W_hh (and W_hr) are loaded once, before the time loop, and stay on
             chip for the whole sequence; h and c never leave the program. The hidden
             dimension is not split across programs — a program owns every hidden unit
             of its rows — so programs never synchronise: step t+1 only needs what the
             same program computed at step t. Chosen while the padded weights fit
             ``ON_CHIP_ELEMENTS`` (16K values: RNN H ≤ 128, LSTM and GRU H ≤ 64).
             Per step and program: one (16 × P)·(P × G) product on the tensor cores
             (bf16) or FMA units (exact fp32), no weight traffic; the floor is the
             latency of the dependent chain dot → pointwise → next dot (~1 µs expected).
tiled        Per step, the GEMM h·W_hhᵀ (cuBLAS over all SMs, W_hh streamed from L2)
             and one fused pointwise Triton kernel over a (batch, hidden) grid; the LSTM
             projection and the reset-before GRU add one GEMM and one small kernel each.
             No host synchronisation, allocation or data-dependent shape inside the
             loop, so ``RNNLAB_GPU_GRAPHS=1`` can replay it from a CUDA graph. Per step
             the roofline is G·P weight bytes from L2 (LSTM H = 1024, bf16: 8 MiB,
             ≈ 1.5 µs at ~5.5 TB/s) plus two launch latencies.

Time order, variable lengths and reverse are per sample inside the kernels (see
:mod:`._common`); padding steps are never read and written as zeros. The function
signatures and semantics are those of :mod:`rnnlab.backends.portable`.
"""

from rnnlab.backends.gpu.gru import gru_backward, gru_forward
from rnnlab.backends.gpu.lstm import lstm_backward, lstm_forward
from rnnlab.backends.gpu.rnn import rnn_backward, rnn_forward

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
]
