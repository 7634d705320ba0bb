"""The ``layer_norm=True`` option of :class:`rnnlab.nn.LSTM` and :class:`rnnlab.nn.LSTMCell`:
its parameters, their initialisation and the op call (equations:
:mod:`rnnlab.reference.lnlstm`).

Parameters per layer and direction (suffix ``_l{k}[_reverse]`` on a layer, none on a
cell), after torch.nn's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``:

    gamma_ih  (4H,)  gain of LN(W_ih x_t), gate blocks i, f, g, o     initialised to 1
    gamma_hh  (4H,)  gain of LN(W_hh h_{t-1})                         initialised to 1
    gamma_c   (H,)   gain of LN(c_t)                                  initialised to 1
    beta_c    (H,)   bias of LN(c_t), only with bias=True             initialised to 0

``bias_ih`` and ``bias_hh`` are the β of the two gate normalisations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab import ops_ln

__all__ = ["is_layer_norm_parameter", "parameter_shapes", "reset", "run"]

_STEMS = ("gamma_ih", "gamma_hh", "gamma_c", "beta_c")


def parameter_shapes(hidden_size: int, bias: bool) -> list[tuple[str, tuple[int, ...]]]:
    """(stem, shape) of the normalisations' parameters of one layer and direction."""
    H = hidden_size
    shapes = [("gamma_ih", (4 * H,)), ("gamma_hh", (4 * H,)), ("gamma_c", (H,))]
    return [*shapes, ("beta_c", (H,))] if bias else shapes


def is_layer_norm_parameter(name: str) -> bool:
    """Whether ``name`` (with or without its layer suffix) is a normalisation parameter."""
    return name.split("_l")[0] in _STEMS if "_l" in name else name in _STEMS


@torch.no_grad()
def reset(module: nn.Module) -> None:
    """Gains to 1 and biases to 0 (Haste's and torch.nn.LayerNorm's initialisation)."""
    for name, parameter in module.named_parameters(recurse=False):
        if is_layer_norm_parameter(name):
            parameter.fill_(1.0 if name.startswith("gamma") else 0.0)


def run(x, h0, c0, weights: list[Tensor], bias: bool, lengths, probe, reverse: bool, infer: bool):
    """One direction of one layer: (y, h_n, c_n, {gate name: (T, B, H)}), as the LSTM's
    ``_run_direction``. ``weights`` is the row w_ih, w_hh, [b_ih, b_hh], γ_ih, γ_hh, γ_c,
    [β_c]."""
    w_ih, w_hh = weights[0], weights[1]
    b_ih, b_hh = (weights[2], weights[3]) if bias else (None, None)
    ln = weights[4:] if bias else weights[2:]
    gamma_ih, gamma_hh, gamma_c = ln[:3]
    beta_c = ln[3] if bias else None
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, gamma_ih, gamma_hh, gamma_c, beta_c, lengths)
    if infer:
        y, h, c = ops_ln.lnlstm_infer(*args, reverse)
        return y, h, c, {}
    y, h, c, gates, cells = ops_ln.lnlstm(*args, probe, reverse)
    i, f, g, o = gates.split(c0.shape[-1], dim=2)
    return y, h, c, {"i": i, "f": f, "g": g, "o": o, "c": cells}
