# %% [markdown]
# # 3. The LSTM
#
# The LSTM carries a second state, the *cell state* c_t, along the sequence, and three
# sigmoid gates decide what happens to it at every step:
#
# $$\begin{aligned}
# i_t &= \sigma(W_{ii} x_t + W_{hi} h_{t-1} + b_i) &&\text{input gate: what to write}\\
# f_t &= \sigma(W_{if} x_t + W_{hf} h_{t-1} + b_f) &&\text{forget gate: what to keep}\\
# g_t &= \tanh(W_{ig} x_t + W_{hg} h_{t-1} + b_g) &&\text{candidate values}\\
# o_t &= \sigma(W_{io} x_t + W_{ho} h_{t-1} + b_o) &&\text{output gate: what to show}\\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t)
# \end{aligned}$$
#
# When f_t ≈ 1 and i_t ≈ 0 the cell state passes through unchanged, and so does its
# gradient: that is how an LSTM bridges long gaps. We train a small one on the *adding
# problem* (a sequence of random numbers, two of them marked; the target is the sum of
# the marked two) and watch its gates.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import torch

import rnnlab.nn as rnn

torch.manual_seed(0)
torch.set_num_threads(1)      # a model this small trains fastest on one thread
T, H = 20, 16


def adding_batch(batch: int):
    """Inputs (B, T, 2): a value in [0, 1) and a 0/1 mark; targets: the marked sum."""
    values = torch.rand(batch, T)
    marks = torch.zeros(batch, T)
    first = torch.randint(0, T // 2, (batch,))
    second = torch.randint(T // 2, T, (batch,))
    marks[torch.arange(batch), first] = 1.0
    marks[torch.arange(batch), second] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(dim=1)


class Model(torch.nn.Module):
    def __init__(self, layers: int = 1):
        super().__init__()
        self.lstm = rnn.LSTM(2, H, num_layers=layers, batch_first=True, forget_bias=1.0)
        self.head = torch.nn.Linear(H, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)   # predict from the last step


def fit(model, steps: int = 400) -> list[float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        x, target = adding_batch(64)
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


model = Model()
losses = fit(model)
print(f"MSE: first step {losses[0]:.3f}, last 50 of 400 steps {sum(losses[-50:]) / 50:.4f} "
      "(predicting the mean: 0.167)")

# %% [markdown]
# ## When each gate opens, and what c_t carries
#
# `record` keeps every gate of every step (they are what the backward pass needs
# anyway). We look at one sequence: the input gate should open at the two marked
# steps, and the cell state should step up there and hold the running sum in between.

# %%
x, target = adding_batch(1)
with torch.no_grad(), rnn.record(model) as rec:
    prediction = model(x)
gates = rec.gates["lstm.l0"]                      # each (1, T, H)
marked = torch.nonzero(x[0, :, 1]).flatten().tolist()
print(f"target {target.item():.3f}, prediction {prediction.item():.3f}, marked steps {marked}")

fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for name, label in [("i", "input gate i"), ("f", "forget gate f"), ("o", "output gate o")]:
    axes[0].plot(gates[name][0].mean(dim=-1), label=label)
axes[0].set(ylabel="mean over units", ylim=(0, 1))
axes[0].legend(loc="lower right")
axes[1].plot(gates["c"][0])
axes[1].set(xlabel="step t", ylabel="$c_t$ (each unit)")
for ax in axes:
    for t in marked:
        ax.axvline(t, color="grey", linestyle=":")
fig.suptitle("Gates and cell state over one sequence (dotted: the marked steps)")
plt.show()

# %% [markdown]
# ## Stacked layers
#
# With `num_layers=2` the second LSTM reads the first one's h_t as its input. `record`
# names each layer: `lstm.l0`, `lstm.l1`.

# %%
stacked = Model(layers=2)
with torch.no_grad(), rnn.record(stacked) as rec:
    stacked(x)
for key, layer_gates in rec.gates.items():
    print(key, {name: tuple(t.shape) for name, t in layer_gates.items()})
