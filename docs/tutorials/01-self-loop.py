# %% [markdown]
# # 1. The self loop
#
# A recurrent layer applies one small function, the *cell*, at every time step and feeds
# its own output back in. For the plain (Elman) RNN the cell is
#
# $$h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})$$
#
# We compute one step by hand, check it against `rnnlab.reference` (the float64 NumPy
# spec every backend is tested against), then against the layer `rnnlab.nn.RNN`, and
# finally unroll the loop to see that every step uses the same weights.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch

import rnnlab.nn as rnn
from rnnlab import reference

rng = np.random.default_rng(0)
T, B, I, H = 12, 1, 2, 3                 # steps, batch, input size, hidden size
x = rng.standard_normal((T, B, I))       # time-major: x[t] is the input at step t
h0 = np.zeros((B, H))
w_ih, w_hh = rng.standard_normal((H, I)) * 0.5, rng.standard_normal((H, H)) * 0.5
b_ih, b_hh = np.zeros(H), np.full(H, 0.1)

# %% [markdown]
# ## One step by hand

# %%
h1 = np.tanh(x[0] @ w_ih.T + b_ih + h0 @ w_hh.T + b_hh)
y, h_n, cache = reference.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
print("by hand:      ", h1[0])
print("reference, t=0:", y[0, 0])
assert np.allclose(h1, y[0])

# %% [markdown]
# ## The layer computes the same function
#
# `rnnlab.nn.RNN` has torch.nn's parameters, names and layout. Copy our weights in and
# run the whole sequence in float64.

# %%
layer = rnn.RNN(I, H, dtype=torch.float64)
with torch.no_grad():
    for name, value in dict(weight_ih_l0=w_ih, weight_hh_l0=w_hh,
                            bias_ih_l0=b_ih, bias_hh_l0=b_hh).items():
        getattr(layer, name).copy_(torch.from_numpy(value))
out, h_last = layer(torch.from_numpy(x))
print("largest difference to the reference:", np.abs(out.detach().numpy() - y).max())

# %% [markdown]
# ## Unrolling: the same weights at every step
#
# Unrolled over time, the network is a chain of T copies of the cell, and every copy
# holds the *same* weight tensors. A loop over `RNNCell` sharing the layer's parameters
# gives the layer's output; the loss gradient of `weight_hh` is therefore one tensor
# that sums the contributions of all steps.

# %%
cell = rnn.RNNCell(I, H, dtype=torch.float64)
cell.weight_ih, cell.weight_hh = layer.weight_ih_l0, layer.weight_hh_l0   # shared, not copied
cell.bias_ih, cell.bias_hh = layer.bias_ih_l0, layer.bias_hh_l0
h = torch.from_numpy(h0)
steps = []
for x_t in torch.from_numpy(x):
    h = cell(x_t, h)                      # the same cell, the same weights, every step
    steps.append(h)
unrolled = torch.stack(steps)
print("unrolled loop vs layer:", (unrolled - out).abs().max().item())

grad_layer = torch.autograd.grad(out.sum(), layer.weight_hh_l0)[0]
grad_loop = torch.autograd.grad(unrolled.sum(), layer.weight_hh_l0)[0]
print("∂L/∂W_hh, layer vs unrolled loop:", (grad_layer - grad_loop).abs().max().item())

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(out[:, 0].detach().numpy(), marker="o")
ax.set(xlabel="step t", ylabel="$h_t$", title="The three hidden units over time")
plt.show()
