# %% [markdown]
# # 6. Beyond the guide
#
# Four things a guide stops short of: running a trained network online, one input at a
# time; exporting it to ONNX for other runtimes; training on several processes; and the
# fast backends, with the way to check them against the reference.

# %%
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import rnnlab
import rnnlab.nn as rnn
from rnnlab import reference
from rnnlab.export import to_onnx

torch.manual_seed(0)
lstm = rnn.LSTM(8, 32, num_layers=2).eval()
frames = torch.randn(50, 8)                       # 50 steps of 8 features, unbatched

# %% [markdown]
# ## Streaming inference
#
# `Stream` advances the whole stack by one step (or a short chunk) per call and carries
# the state between calls: for audio frames, sensor readings or tokens as they arrive.
# Step by step, it gives what the layer gives over the whole sequence.

# %%
stream = rnn.Stream(lstm)
online = torch.stack([stream.step(frame) for frame in frames])
with torch.no_grad():
    whole, _ = lstm(frames)
print("stream vs whole sequence:", (online - whole).abs().max().item())
h, c = stream.state
print("carried state:", tuple(h.shape), tuple(c.shape))

# %% [markdown]
# ## Export to ONNX
#
# `to_onnx` writes ONNX's native `LSTM` node for each layer (one node per layer, no
# loops), with symbolic batch and time; onnxruntime then runs it anywhere.

# %%
workdir = tempfile.TemporaryDirectory()          # removed when Python exits
folder = Path(workdir.name)
batch = torch.randn(12, 4, 8)                     # (T, B, I) example
to_onnx(lstm, (batch,), folder / "lstm.onnx")
session = onnxruntime.InferenceSession(str(folder / "lstm.onnx"))
longer = torch.randn(30, 3, 8)                    # other length, other batch size
output, h_n, c_n = session.run(None, {"input": longer.numpy()})
with torch.no_grad():
    expected, _ = lstm(longer)
print("onnxruntime vs rnnlab:", np.abs(output - expected.numpy()).max())

# %% [markdown]
# ## Training on several processes
#
# rnnlab trains data-parallel on PyTorch's own engine: the same `rnnlab train` or
# `rnnlab compare` command, launched through `torchrun`. Each process trains on its slice
# of every global batch, and N processes give the model one process gives at the same
# global batch (tested with two processes). For example, two processes on one machine:
#
# ```sh
# torchrun --standalone --nproc-per-node 2 -m rnnlab.cli train --task adding \
#     --cell lstm --batch-size 64 --steps 200 --out runs/adding-2proc
# ```
#
# This page does not run it: starting two processes that each import PyTorch costs more
# than the time this page may take to build. The test suite runs such jobs
# (`tests/test_distributed.py`).
#
# ## The fast backends, checked against the reference
#
# Every backend computes the same function. `available_backends()` lists those usable
# here; `use_backend` forces one for a block. The check the tests make everywhere:
# run the layer in float64 on each backend and compare with `rnnlab.reference`.

# %%
print(rnnlab.available_backends())
layer = rnn.LSTM(5, 16, dtype=torch.float64)
x = torch.randn(40, 3, 5, dtype=torch.float64)
w = [p.detach().numpy() for p in layer.parameters()]
zeros = np.zeros((3, 16))
y_ref, _, _ = reference.lstm_forward(x.numpy(), zeros, zeros, *w)
for backend in ("portable", "cpu"):
    with rnnlab.use_backend(backend), torch.no_grad():
        out, _ = layer(x)
    print(f"{backend:9s} vs reference: {np.abs(out.numpy() - y_ref).max():.1e}")
