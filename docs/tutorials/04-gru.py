# %% [markdown]
# # 4. The GRU
#
# The GRU (Cho et al., 2014) keeps one state and two gates. The *update* gate z merges
# the LSTM's forget and input gates; the *reset* gate r decides how much of h_{t-1}
# enters the candidate n:
#
# $$\begin{aligned}
# r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})\\
# z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})\\
# n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
#   &&\text{reset after the product (torch.nn, cuDNN)}\\
# n_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
#   &&\text{reset before it (the paper)}\\
# h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
# \end{aligned}$$

# %%
# %matplotlib inline
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import rnnlab.nn as rnn
from rnnlab import reference

torch.manual_seed(0)
T, B, I, H = 30, 4, 3, 8
x = torch.randn(T, B, I, dtype=torch.float64)

# %% [markdown]
# ## Reset after vs before the recurrent product
#
# Both variants have the same parameters; they compute different functions. Each layer
# matches the reference of its variant to float64 rounding.

# %%
gru_after = rnn.GRU(I, H, dtype=torch.float64)
gru_before = rnn.GRU(I, H, dtype=torch.float64, reset_after=False)
gru_before.load_state_dict(gru_after.state_dict())          # the very same weights
weights = [p.detach().numpy() for p in gru_after.parameters()]
h0 = np.zeros((B, H))
with torch.no_grad():
    for layer in (gru_after, gru_before):
        out, _ = layer(x)
        y, _, _ = reference.gru_forward(x.numpy(), h0, *weights,
                                        reset_after=layer.reset_after)
        print(f"reset_after={layer.reset_after}: vs reference {np.abs(out.numpy() - y).max():.1e}")
    print("after vs before:", (gru_after(x)[0] - gru_before(x)[0]).abs().max().item())

# %% [markdown]
# ## The gates at work
#
# `record` shows r, z and the candidate n at every step.

# %%
with torch.no_grad(), rnn.record(gru_after) as rec:
    gru_after(x)
gates = rec.gates["l0"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, name, title in [(axes[0], "r", "reset gate r"), (axes[1], "z", "update gate z")]:
    image = ax.imshow(gates[name][:, 0].T, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set(xlabel="step t", title=title)
axes[0].set_ylabel("unit")
fig.colorbar(image, ax=axes)
plt.show()

# %% [markdown]
# ## Why it is cheaper
#
# A GRU has three gate blocks where the LSTM has four: at the same width it has 3/4 of
# the parameters and of the multiply-adds per step. Measured when this page was built,
# a forward and backward pass over the same batch (times depend on the machine and its
# load; `benchmarks/cpu_speed.py` in the repository measures carefully):

# %%
def seconds_per_step(layer, x, repeats: int = 5) -> float:
    layer(x)[0].sum().backward()                            # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        layer(x)[0].sum().backward()
    return (time.perf_counter() - start) / repeats


xs = torch.randn(100, 16, 64)
lstm, gru = rnn.LSTM(64, 128), rnn.GRU(64, 128)
for name, layer in [("LSTM", lstm), ("GRU", gru)]:
    params = sum(p.numel() for p in layer.parameters())
    print(f"{name}: {params} parameters, {seconds_per_step(layer, xs) * 1e3:.1f} ms per "
          "forward + backward (T=100, B=16, H=128)")
