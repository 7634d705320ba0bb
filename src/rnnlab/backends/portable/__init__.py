"""The portable backend: the recurrent ops written with PyTorch tensor ops.

It runs on any device and dtype PyTorch supports, loops over time in Python (one
GEMM plus a few pointwise ops per step) and keeps the two large GEMMs of each
direction — the input projection for all steps and the weight gradients — outside
the loop. It is the fallback for devices without a fused backend and the second
oracle for the fused ones. It implements :mod:`rnnlab.backends.contract` (shapes and
conventions are documented there); inference runs the forward, and streaming runs the
inference on each chunk (:class:`~rnnlab.backends.contract.LayerwiseStream`).
"""

from rnnlab.backends._min import TorchOpsMin
from rnnlab.backends.contract import BackendKernels, LayerwiseStream
from rnnlab.backends.portable.gru import PortableGRU
from rnnlab.backends.portable.lngru import PortableLNGRU
from rnnlab.backends.portable.lnlstm import PortableLNLSTM
from rnnlab.backends.portable.lstm import PortableLSTM
from rnnlab.backends.portable.masked import PortableMaskedGRU, PortableMaskedLSTM
from rnnlab.backends.portable.rnn import PortableRNN

__all__ = ["KERNELS"]

_rnn, _lstm, _gru = PortableRNN(), PortableLSTM(), PortableGRU()
KERNELS = BackendKernels(
    name="portable", rnn=_rnn, lstm=_lstm, gru=_gru, stream=LayerwiseStream(_rnn, _lstm, _gru),
    lnlstm=PortableLNLSTM(), lngru=PortableLNGRU(),
    masked_lstm=PortableMaskedLSTM(), masked_gru=PortableMaskedGRU(),
    mingru=TorchOpsMin("mingru"), minlstm=TorchOpsMin("minlstm"),
)
