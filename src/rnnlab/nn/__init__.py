"""torch.nn-compatible recurrent layers and cells running on rnnlab's ops."""

from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.nn.errors import ArgumentError, DtypeError
from rnnlab.nn.min import MinGRU, MinLSTM
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
    "MinGRU",
    "MinLSTM",
    "RNNBase",
    "RNNCell",
    "Recording",
    "Stream",
    "record",
]
