"""The ``layer_norm=True`` option of :class:`rnnlab.nn.LSTM`, :class:`rnnlab.nn.GRU` and their
cells: its parameters, their initialisation and the op call (equations:
:mod:`rnnlab.reference.lnlstm`, :mod:`rnnlab.reference.lngru`).

Parameters per layer and direction (suffix ``_l{k}[_reverse]`` on a layer, none on a
cell), after torch.nn's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``
(G = 4 gate blocks for the LSTM, 3 for the GRU):

    gamma_ih  (G·H,)  gain of LN(W_ih x_t), torch.nn's gate blocks    initialised to 1
    gamma_hh  (G·H,)  gain of LN(W_hh h_{t-1})                        initialised to 1
    gamma_c   (H,)    gain of LN(c_t), LSTM only                      initialised to 1
    beta_c    (H,)    bias of LN(c_t), LSTM with bias=True only       initialised to 0

``bias_ih`` and ``bias_hh`` are the β of the two gate normalisations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab import ops_ln

__all__ = ["is_layer_norm_parameter", "parameter_shapes", "reset", "run"]

_STEMS = ("gamma_ih", "gamma_hh", "gamma_c", "beta_c")
_GATES = {"lstm": 4, "gru": 3}


def parameter_shapes(family: str, hidden_size: int, bias: bool) -> list[tuple[str, tuple]]:
    """(stem, shape) of the normalisations' parameters of one layer and direction."""
    H, G = hidden_size, _GATES[family]
    shapes = [("gamma_ih", (G * H,)), ("gamma_hh", (G * H,))]
    if family == "lstm":
        shapes.append(("gamma_c", (H,)))
        if bias:
            shapes.append(("beta_c", (H,)))
    return shapes


def is_layer_norm_parameter(name: str) -> bool:
    """Whether ``name`` (with or without its layer suffix) is a normalisation parameter."""
    return name.split("_l")[0] in _STEMS if "_l" in name else name in _STEMS


@torch.no_grad()
def reset(module: nn.Module) -> None:
    """Gains to 1 and biases to 0 (Haste's and torch.nn.LayerNorm's initialisation)."""
    for name, parameter in module.named_parameters(recurse=False):
        if is_layer_norm_parameter(name):
            parameter.fill_(1.0 if name.startswith("gamma") else 0.0)


def run(family: str, x, h0, c0, weights: list[Tensor], bias: bool, lengths, probe,
        reverse: bool, infer: bool):
    """One direction of one layer: (y, h_n, c_n or None, {gate name: (T, B, H)}), as the
    layers' ``_run_direction``. ``weights`` is the row w_ih, w_hh, [b_ih, b_hh], then the
    parameters of :func:`parameter_shapes` in order."""
    w_ih, w_hh = weights[0], weights[1]
    b_ih, b_hh = (weights[2], weights[3]) if bias else (None, None)
    ln = weights[4:] if bias else weights[2:]
    H = h0.shape[-1]
    if family == "gru":
        args = (x, h0, w_ih, w_hh, b_ih, b_hh, ln[0], ln[1], lengths)
        if infer:
            y, h = ops_ln.lngru_infer(*args, reverse)
            return y, h, None, {}
        y, h, gates = ops_ln.lngru(*args, probe, reverse)
        r, z, n, _ = gates.split(H, dim=2)
        return y, h, None, {"r": r, "z": z, "n": n}
    beta_c = ln[3] if bias else None
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln[0], ln[1], ln[2], beta_c, lengths)
    if infer:
        y, h, c = ops_ln.lnlstm_infer(*args, reverse)
        return y, h, c, {}
    y, h, c, gates, cells = ops_ln.lnlstm(*args, probe, reverse)
    i, f, g, o = gates.split(H, dim=2)
    return y, h, c, {"i": i, "f": f, "g": g, "o": o, "c": cells}
