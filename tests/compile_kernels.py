"""Compile the cpu backend's kernels into the kernel cache once, before the suite.

``make test`` runs this beside the docs build, so that the suite's two workers find the
kernels in the cache instead of both compiling them (a cold compile is minutes of one
core). Not a test: it asserts nothing (the suite checks the results); a kernel it misses
is compiled by the first test that needs it, as before."""

from __future__ import annotations

import torch

import rnnlab.nn as rnn


def main() -> None:
    for dtype in (torch.float32, torch.float64):
        layers = [
            rnn.RNN(3, 4, bidirectional=True), rnn.RNN(3, 4, nonlinearity="relu"),
            rnn.LSTM(3, 4, bidirectional=True), rnn.LSTM(3, 4, proj_size=2),
            rnn.GRU(3, 4, bidirectional=True), rnn.GRU(3, 4, reset_after=False),
            rnn.LSTM(3, 4, layer_norm=True), rnn.GRU(3, 4, layer_norm=True),
            rnn.LSTM(3, 4, zoneout=0.1, recurrent_dropout=0.1),
            rnn.GRU(3, 4, zoneout=0.1, recurrent_dropout=0.1),
            rnn.MinGRU(3, 4), rnn.MinLSTM(3, 4),
        ]
        for layer in layers:
            layer = layer.to(dtype)
            x = torch.randn(5, 2, 3, dtype=dtype)
            layer(x)[0].sum().backward()
            with torch.no_grad():
                layer(x)


if __name__ == "__main__":
    main()
