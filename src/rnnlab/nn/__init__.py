"""torch.nn-compatible recurrent layers and cells running on rnnlab's ops."""

from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.nn.modules import GRU, LSTM, RNN, RNNBase
from rnnlab.nn.record import Recording, record
from rnnlab.nn.streaming import Stream

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNBase",
    "RNNCell",
    "Recording",
    "Stream",
    "record",
]
