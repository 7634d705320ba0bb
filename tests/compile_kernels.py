"""Compile the cpu backend's kernels into the kernel cache once, before the suite.

``make test`` runs this first, so that the suite's two workers and the docs build find
the kernels in the cache instead of each compiling them (a cold compile is minutes of one
core). It runs once per dtype, the two at once (``python tests/compile_kernels.py
float32``). The float64 run takes the layers in the opposite order, so that the two
rarely compile one function's signatures at the same moment: Numba rewrites a function's
index of cached signatures whole, the later writer's copy wins, and a lost entry is
compiled again by the suite. Not a test: it asserts nothing (the suite checks the
results); a kernel it misses is compiled by the first test that needs it."""

from __future__ import annotations

import sys

import torch

import rnnlab.nn as rnn


def main(dtype_names: list[str]) -> None:
    for name in dtype_names or ["float32", "float64"]:
        dtype = getattr(torch, name)
        layers = [
            rnn.RNN(3, 4, bidirectional=True), rnn.RNN(3, 4, nonlinearity="relu"),
            rnn.LSTM(3, 4, bidirectional=True), rnn.LSTM(3, 4, proj_size=2),
            rnn.GRU(3, 4, bidirectional=True), rnn.GRU(3, 4, reset_after=False),
            rnn.LSTM(3, 4, layer_norm=True), rnn.GRU(3, 4, layer_norm=True),
            rnn.LSTM(3, 4, zoneout=0.1, recurrent_dropout=0.1),
            rnn.GRU(3, 4, zoneout=0.1, recurrent_dropout=0.1),
            rnn.MinGRU(3, 4), rnn.MinLSTM(3, 4),
        ]
        for layer in layers if dtype == torch.float32 else reversed(layers):
            layer = layer.to(dtype)
            x = torch.randn(5, 2, 3, dtype=dtype)
            layer(x)[0].sum().backward()
            with torch.no_grad():
                layer(x)


if __name__ == "__main__":
    main(sys.argv[1:])
