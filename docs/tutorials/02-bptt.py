# %% [markdown]
# # 2. Backpropagation through time
#
# Training a recurrent network means differentiating the loss through the unrolled
# chain of steps: *backpropagation through time* (BPTT). Walking back from the last
# step, the gradient reaching h_{t-1} is the one at h_t multiplied by the step's
# Jacobian,
#
# $$\frac{\partial L}{\partial h_{t-1}} = W_{hh}^\top \left(\frac{\partial L}{\partial h_t}
# \odot \tanh'(a_t)\right) + \text{(the loss at step } t-1\text{)}$$
#
# so over k steps it is multiplied k times by W_hh and tanh'. `rnnlab.reference` writes
# this loop out by hand; here it is next to PyTorch's autograd, and then we watch the
# gradient shrink or grow over time with `rnnlab.nn.record`.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch

import rnnlab.nn as rnn
from rnnlab import reference

torch.manual_seed(0)
T, B, I, H = 40, 8, 4, 16
layer = rnn.RNN(I, H, dtype=torch.float64)
x = torch.randn(T, B, I, dtype=torch.float64)

# %% [markdown]
# ## The hand-derived BPTT next to autograd
#
# The loss is the sum of the last step's outputs. Autograd differentiates the layer;
# `reference.rnn_backward` runs the loop above in NumPy.

# %%
out, _ = layer(x)
out[-1].sum().backward()

weights = [p.detach().numpy() for p in (layer.weight_ih_l0, layer.weight_hh_l0,
                                        layer.bias_ih_l0, layer.bias_hh_l0)]
y, h_n, cache = reference.rnn_forward(x.numpy(), np.zeros((B, H)), *weights)
dy = np.zeros_like(y)
dy[-1] = 1.0                                      # ∂L/∂y_t: only the last step counts
grads = reference.rnn_backward(dy, np.zeros_like(h_n), cache)
for name, param in [("w_ih", layer.weight_ih_l0), ("w_hh", layer.weight_hh_l0)]:
    print(f"{name}: largest difference, hand BPTT vs autograd:",
          np.abs(grads[name] - param.grad.numpy()).max())

# %% [markdown]
# ## ‖∂L/∂h_t‖ over t: vanishing and exploding
#
# `record` stores the total gradient reaching every h_t during backward. We scale the
# recurrent weights: small ones shrink the gradient at every step back (it *vanishes*),
# large ones can make it grow (it *explodes*).

# %%
def gradient_through_time(scale: float) -> torch.Tensor:
    layer = rnn.RNN(I, H, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_hh_l0.copy_(torch.linalg.qr(torch.randn(H, H, dtype=torch.float64))[0])
        layer.weight_hh_l0.mul_(scale)             # an orthogonal matrix times `scale`
    with rnn.record(layer) as rec:
        out, _ = layer(x * 0.1)
        out[-1].sum().backward()
    return rec.hidden_grad_norms("l0")


fig, ax = plt.subplots(figsize=(7, 3.5))
for scale in (0.5, 1.0, 1.5, 3.0):
    norms = gradient_through_time(scale)
    print(f"scale {scale}: ‖∂L/∂h_0‖ / ‖∂L/∂h_T-1‖ = {(norms[0] / norms[-1]).item():.3g}")
    ax.semilogy(norms.numpy(), label=f"W_hh = {scale} × orthogonal")
ax.set(xlabel="step t", ylabel="‖∂L/∂h_t‖", title="Gradient of the last step's loss")
ax.legend()
plt.show()

# %% [markdown]
# With small weights the gradient reaching the first steps is many orders of magnitude
# smaller than at the last: those steps barely learn. With large weights and small
# inputs (tanh near its linear part) it grows step after step.
#
# ## What clipping does
#
# Gradient clipping rescales the whole gradient when its norm exceeds a threshold: the
# direction is kept, the step size is bounded. It tames exploding gradients; it cannot
# bring back vanished ones.

# %%
layer = rnn.RNN(I, H, dtype=torch.float64)
with torch.no_grad():
    layer.weight_hh_l0.mul_(8.0)
out, _ = layer(x * 0.1)
out[-1].sum().backward()
before = [p.grad.clone() for p in layer.parameters()]
norm = torch.nn.utils.clip_grad_norm_(layer.parameters(), max_norm=1.0)
after = torch.cat([p.grad.flatten() for p in layer.parameters()])
direction = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in before]),
                                                  after, dim=0)
print(f"gradient norm before clipping: {norm.item():.3g}, after: {after.norm().item():.3g}")
print(f"cosine between the two: {direction.item():.6f}")
