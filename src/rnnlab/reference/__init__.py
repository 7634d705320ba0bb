"""The executable spec: every cell's forward and backpropagation through time in float64 NumPy.

Each family has a forward over a time-major sequence, returning its outputs, final state and
a cache, and a backward that takes the loss gradients of those outputs and final state and
returns the gradient of every input and weight, plus the total ∂L/∂h_t of every step.
Weights use torch.nn's layout and gate order (LSTM i, f, g, o; GRU r, z, n;
minGRU z, h̃; minLSTM f, i, h̃). Variable
lengths follow torch.nn's PackedSequence: padding steps output 0 and leave the state alone.
The tests of every backend hold them against these functions. The ``*_masked`` LSTM and
GRU take the masks of recurrent dropout and zoneout as arrays.
"""

from .gru import GRUCache, gru_backward, gru_forward
from .gru_masked import GRUMaskedCache, gru_masked_backward, gru_masked_forward
from .lstm import LSTMCache, lstm_backward, lstm_forward
from .lstm_masked import LSTMMaskedCache, lstm_masked_backward, lstm_masked_forward
from .mingru import MinGRUCache, mingru_backward, mingru_forward
from .minlstm import MinLSTMCache, minlstm_backward, minlstm_forward
from .rnn import RNNCache, rnn_backward, rnn_forward

__all__ = [
    "GRUCache",
    "GRUMaskedCache",
    "LSTMCache",
    "LSTMMaskedCache",
    "MinGRUCache",
    "MinLSTMCache",
    "RNNCache",
    "gru_backward",
    "gru_forward",
    "gru_masked_backward",
    "gru_masked_forward",
    "lstm_backward",
    "lstm_forward",
    "lstm_masked_backward",
    "lstm_masked_forward",
    "mingru_backward",
    "mingru_forward",
    "minlstm_backward",
    "minlstm_forward",
    "rnn_backward",
    "rnn_forward",
]
