"""The gpu backend: the serial part of each recurrence as Triton kernels.

As in every backend, the input projection x·W_ihᵀ of all steps and, after the backward
recurrence, dx, dW_ih, dW_hh and the bias gradients are single GEMMs outside the loop;
the kernels run only h·W_hhᵀ plus the cell's pointwise math, step after step, and save
the gates for backward (and for gate recording). State and accumulation are fp32 for
fp32 and bf16 tensors alike.

Three execution paths, chosen per call (``_common.choose_path``; ``RNNLAB_GPU_PATH``
forces one). Until the persistent and cooperative kernels have been measured correct on
a GPU (``_common.HARDWARE_VERIFIED``), CUDA tensors take the tiled path by default and
the size-based choice below ("Chosen ...") is opt-in with ``RNNLAB_GPU_PATH=auto``;
float64 and float16 CUDA tensors run on the portable backend (torch ops):

persistent   One program per tile of 16 samples loops over all T steps inside the
             kernel. W_hh (and W_hr) are loaded once, before the time loop, and stay in
             registers for the whole sequence; h and c never leave the program. The
             hidden dimension is not split — a program owns every unit of its rows — so
             programs never synchronise. Chosen while the padded weights fit
             ``_tuning.ON_CHIP_BYTES`` (32 KiB: bf16 RNN H ≤ 128, LSTM/GRU H ≤ 64). fp32 only
             with TF32-class products allowed (torch's matmul precision "high" or
             "medium": RNN H ≤ 64, LSTM/GRU H ≤ 32); exact fp32 takes the cooperative
             kernel (see ``_common.on_chip_bytes``). Per step: one (16 × P)·(P × G)
             product, no weight traffic; the floor is the dependent chain dot →
             pointwise → next dot.
cooperative  One persistent kernel for larger H (see :mod:`._coop`): each program owns a
             slice of BH hidden units (all gates of them) for a tile of ≤ 64 rows, the
             grid is at most one program per SM, and the programs of a row tile meet at
             a grid barrier (release/acquire counter) after every step, exchanging h (or,
             backward, the gate gradients) through a double-buffered (2, B, ·) buffer
             in L2. Each program holds (small) or rereads only its own W_hh slice
             (LSTM H = 1024 bf16: 64 KiB on each of 128 SMs), so per step the whole
             W_hh is read from the SMs' registers or caches in parallel instead of from
             HBM/L2 by one GEMM. RNN, LSTM
             without projection and the reset-after GRU (torch.nn's). Chosen where the
             persistent kernel does not run, while B ≤ 64.
tiled        Per step, the GEMM h·W_hhᵀ (cuBLAS over all SMs, W_hh streamed from L2)
             and one fused pointwise Triton kernel over a (batch, hidden) grid; the LSTM
             projection and the reset-before GRU add one GEMM and one small kernel each.
             No host synchronisation, allocation or data-dependent shape inside the
             loop, so ``RNNLAB_GPU_GRAPHS=1`` can replay it from a CUDA graph. Used for
             B > 64, LSTM projection and the reset-before GRU above the persistent size;
             the only path of the masked LSTM and GRU (recurrent dropout and zoneout:
             :mod:`.masked_lstm`, :mod:`.masked_gru`) and of the layer-normalised cells,
             whose pointwise kernels own whole rows (a layer norm reduces over a row; see
             :mod:`.lnlstm`), whatever ``RNNLAB_GPU_PATH`` says.

Every kernel is checked to build for sm_90 (H100/H200) without running out of registers
(tests/backends/gpu/test_sm90_build.py, no GPU needed), and runs through Triton's
interpreter in the conformance suite — the cooperative barrier too, with the programs
made threads that run at once. GPU speed has not been measured yet.

The min cells (minGRU, minLSTM: :mod:`.min`) run each direction's recurrence in one
launch, a program per (sample, block of units) composing chunks of steps with
``tl.associative_scan``.

Time order, variable lengths and reverse are per sample inside the kernels (see
:mod:`._common`); padding steps are never read and written as zeros. The function
signatures and semantics are those of :mod:`rnnlab.backends.contract`.
"""

import dataclasses

from rnnlab.backends import portable
from rnnlab.backends.contract import LayerwiseStream
from rnnlab.backends.gpu.gru import GpuGRU
from rnnlab.backends.gpu.lngru import GpuLNGRU
from rnnlab.backends.gpu.lnlstm import GpuLNLSTM
from rnnlab.backends.gpu.lstm import GpuLSTM
from rnnlab.backends.gpu.masked_gru import GpuMaskedGRU
from rnnlab.backends.gpu.masked_lstm import GpuMaskedLSTM
from rnnlab.backends.gpu.min import GpuMin
from rnnlab.backends.gpu.rnn import GpuRNN

__all__ = ["KERNELS"]

_rnn, _lstm, _gru = GpuRNN(), GpuLSTM(), GpuGRU()
# Streaming: one launch of the forward per layer and chunk (no dedicated kernel).
KERNELS = dataclasses.replace(
    portable.KERNELS, name="gpu", rnn=_rnn, lstm=_lstm, gru=_gru, lnlstm=GpuLNLSTM(),
    lngru=GpuLNGRU(), masked_lstm=GpuMaskedLSTM(), masked_gru=GpuMaskedGRU(),
    mingru=GpuMin("mingru"), minlstm=GpuMin("minlstm"), stream=LayerwiseStream(_rnn, _lstm, _gru),
)
