"""The portable backend: the recurrent ops written with PyTorch tensor ops.

It runs on any device and dtype PyTorch supports, loops over time in Python (one
GEMM plus a few pointwise ops per step) and keeps the two large GEMMs of each
direction — the input projection for all steps and the weight gradients — outside
the loop. It is the fallback for devices without a fused backend and the second
oracle for the fused ones.

Shared conventions of every backend function (time-major):

    x        (T, B, I)    input sequence
    h0       (B, P)       initial hidden state (P = H unless LSTM projection)
    c0       (B, H)       initial LSTM cell state
    lengths  (B,) int64   valid steps per sample, or None for all T
    h_probe  (T, B, P)    zero-valued perturbation added to h_t (its gradient is the
                          total dL/dh_t), or None
    reverse  bool         process each sample's valid span from its end to t = 0
"""

from rnnlab.backends.portable.gru import gru_backward, gru_forward
from rnnlab.backends.portable.lstm import lstm_backward, lstm_forward
from rnnlab.backends.portable.rnn import rnn_backward, rnn_forward

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
]
