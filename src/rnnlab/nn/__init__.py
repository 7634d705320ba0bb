"""torch.nn-compatible recurrent layers and cells running on rnnlab's ops."""

from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.nn.errors import ArgumentError, DtypeError
from rnnlab.nn.modules import GRU, LSTM, RNN, RNNBase
from rnnlab.nn.record import Recording, record
from rnnlab.nn.streaming import Stream

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "ArgumentError",
    "DtypeError",
    "GRUCell",
    "LSTMCell",
    "RNNBase",
    "RNNCell",
    "Recording",
    "Stream",
    "record",
]
