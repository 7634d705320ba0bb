"""The executable spec: every cell's forward and backpropagation through time in float64 NumPy.

Each family has a forward over a time-major sequence, returning its outputs, final state and
a cache, and a backward that takes the loss gradients of those outputs and final state and
returns the gradient of every input and weight, plus the total ∂L/∂h_t of every step.
Weights use torch.nn's layout and gate order (LSTM i, f, g, o; GRU r, z, n;
minGRU z, h̃; minLSTM f, i, h̃; the layer-normalised LSTM i, f, g, o and GRU r, z,
n). The tests of every backend hold them against these functions. The ``*_masked`` LSTM and
GRU take the masks of recurrent dropout and zoneout as arrays.

Each family's module writes its equations once, in the docstrings of ``<cell>_forward``
and ``<cell>_backward``; what every family shares is written here, and those docstrings
cite it.

**Shape legend.** T time steps · B batch · I input size · H hidden (cell) size · P the
LSTM's output size (its projection size with ``w_hr``, else H; P = H for the others).

**Every forward** runs one direction of one layer over a time-major sequence.
``lengths`` is (B,) integers in [1, T], or None: every sample runs all T steps. Variable
lengths follow torch.nn's PackedSequence: a padding step t ≥ lengths[b] keeps the
state(s) (h_t = h_{t-1}, c_t = c_{t-1}) and outputs y_t = 0. With ``reverse=True`` the
steps run T-1 … 0: each sample's span runs lengths[b]-1 … 0 starting from the initial
state, outputs stay at their own index t, and the final state is the one after step 0.

**Every backward** takes the cache of its forward and the gradients of the loss
L = Σ dy ⊙ y + Σ dh_n ⊙ h_n (+ Σ dc_n ⊙ c_n for the LSTM); a gradient given as None
means that term is absent. It walks the steps in the opposite order to the forward pass,
with "t+1" the step processed after t (t-1 when reverse) and dh_t the total gradient
∂L/∂h_t. A padding step hands the state gradient(s) through unchanged and takes none
itself. It returns a dict of gradients shaped like the inputs (None for an absent bias
or projection), and ``"h"``: the total ∂L/∂h_t of every step, (T, B, P), 0 at padding
steps.
"""

from .gru import GRUCache, gru_backward, gru_forward
from .gru_masked import GRUMaskedCache, gru_masked_backward, gru_masked_forward
from .lngru import LNGRUCache, lngru_backward, lngru_forward
from .lnlstm import LNLSTMCache, lnlstm_backward, lnlstm_forward
from .lstm import LSTMCache, lstm_backward, lstm_forward
from .lstm_masked import LSTMMaskedCache, lstm_masked_backward, lstm_masked_forward
from .mingru import MinGRUCache, mingru_backward, mingru_forward
from .minlstm import MinLSTMCache, minlstm_backward, minlstm_forward
from .rnn import RNNCache, rnn_backward, rnn_forward

__all__ = [
    "GRUCache",
    "GRUMaskedCache",
    "LNGRUCache",
    "LNLSTMCache",
    "LSTMCache",
    "LSTMMaskedCache",
    "MinGRUCache",
    "MinLSTMCache",
    "RNNCache",
    "gru_backward",
    "gru_forward",
    "gru_masked_backward",
    "gru_masked_forward",
    "lngru_backward",
    "lngru_forward",
    "lnlstm_backward",
    "lnlstm_forward",
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
