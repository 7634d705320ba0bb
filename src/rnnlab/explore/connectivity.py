"""What the prediction at step t remembers: ‖∂ prediction_t / ∂ x_s‖ for the W steps s ≤ t.

The full matrix is T²; the explorer computes it for the first ``steps`` target steps
and a window of ``window`` steps before each. Each target t is one sample of a batch: its
window x_{t−W+1..t} starts from the state the full run had entering step t−W+1 (taken
from the trace, so the forward is the model's own), and autograd through rnnlab's ops
gives the gradient of its prediction with respect to every input vector of the window
(the embedding of a character, or the features of a series step). "The prediction" is
the output the model ranks first (its log-probability) for a model that predicts
classes or characters, and the sum of its outputs for one that predicts values.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnlab.explore.trace import LayerTrace
from rnnlab.tasks import SequenceModel

BATCH = 64


def connectivity(model: SequenceModel, x: torch.Tensor, layers: list[LayerTrace],
                 classes: bool, steps: int, window: int) -> np.ndarray:
    """(N, W) gradient norms: row n is target t = n, column w is s = t − W + 1 + w
    (0 where s < 0). N = min(steps, T)."""
    T = x.shape[1]
    N, W = min(steps, T), window
    out = np.zeros((N, W), np.float32)
    for start in range(0, N, BATCH):
        targets = list(range(start, min(N, start + BATCH)))
        out[start:start + len(targets)] = _batch(model, x, layers, classes, targets, W)
    return out


def _batch(model, x, layers, classes, targets, W) -> np.ndarray:
    B = len(targets)
    begins = [max(0, t - W + 1) for t in targets]
    lengths = [t - b + 1 for t, b in zip(targets, begins, strict=True)]
    win = torch.zeros((B, W, *x.shape[2:]), dtype=x.dtype)
    for k, (b, n) in enumerate(zip(begins, lengths, strict=True)):
        win[k, :n] = x[0, b:b + n]
    state = _initial_state(model, layers, begins)
    with torch.enable_grad():
        z = model.embed(win) if model.embed is not None else win.clone()
        z = z.detach().requires_grad_(True)
        out, _ = model.rnn(z, state, lengths=torch.tensor(lengths))
        last = out[torch.arange(B), torch.tensor(lengths) - 1]  # (B, H): h at each target
        pred = model.head(last)
        score = pred.log_softmax(-1).max(-1).values if classes else pred.sum(-1)
        (grad,) = torch.autograd.grad(score.sum(), z)
    norms = grad.norm(dim=-1).numpy()  # (B, W), window position w is step begin + w
    rows = np.zeros((B, W), np.float32)
    for k, n in enumerate(lengths):
        rows[k, W - n:] = norms[k, :n]  # right-aligned: the last column is s = t
    return rows


def _initial_state(model, layers: list[LayerTrace], begins: list[int]):
    """The state entering each window's first step, per layer (zeros at step 0)."""
    H = model.config.hidden_size
    parts = []
    for which in range(len(layers[0].state)):
        per_layer = []
        for layer in layers:
            s = layer.state[which]
            per_layer.append(np.stack([s[b - 1] if b > 0 else np.zeros(H, np.float32)
                                       for b in begins]))
        parts.append(torch.from_numpy(np.stack(per_layer)))  # (L, B, H)
    return tuple(parts) if len(parts) == 2 else parts[0]
